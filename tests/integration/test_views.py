"""The ops views of a real worker (and of two sharing the partitions), against the real broker:
what each answers, who may ask, and that the figures are the ones the stream made."""
from __future__ import annotations

import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections import Counter

from cjo.clock import Clock
from cjo.web_client import call, get_json
from tests.conftest import ADMIN_TOKEN, ARTIFACTS, READ_TOKEN
from tests.integration.harness import send_events, send_raw, table, wait_processed
from tests.integration.test_journeys import JOURNEYS, START, _events
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics

VISITOR, MEMBER = "visitor-9", "member-9"


def _until_ready(settings, worker, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, _, body = call(settings, "/ready", token="")
            if status == 200:
                return json.loads(body)
        except OSError:
            pass
        assert worker.running(), worker.log_tail()
        time.sleep(0.3)
    raise AssertionError("never ready:\n" + worker.log_tail())


def _start(settings, workers, tmp_path, name="worker"):
    clock = Clock(str(tmp_path / "clock"))
    clock.set(START)
    return workers(settings, name=name, extra_env={"CJO_CLOCK_FILE": clock.path})


def _workload(settings) -> list:
    log = _events(random.Random(5), [f"w{i:03d}" for i in range(120)], 0, START + 1000)
    t = START + 10_000_000
    log += [(VISITOR.encode(), {"event_id": f"vv{i}", "name": "view", "visitor_id": VISITOR,
                                "user_id": None, "time": t + i, "request_id": None,
                                "values": {}}) for i in range(3)]
    log.append((VISITOR.encode(), {"event_id": "vid", "name": "identify",
                                   "visitor_id": VISITOR, "user_id": MEMBER, "time": t + 10,
                                   "request_id": None, "values": {}}))
    return log


def _cli(settings, *args) -> str:
    done = subprocess.run([sys.executable, "-m", "cjo", *args], capture_output=True, text=True,
                          env={**os.environ, **settings.to_env()}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _raw(settings, request: str) -> bytes:
    """The whole answer of the worker to one request written by hand."""
    with socket.create_connection(("127.0.0.1", settings.web_port), timeout=10) as conn:
        conn.sendall(request.encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def _metric(text: str, name: str, **labels) -> float:
    """The value of one sample of the scrape (labels in any order)."""
    want = {k: str(v) for k, v in labels.items()}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name and \
                dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or "")) == want:
            return float(match.group(3))
    raise AssertionError(f"{name} {labels} not in the scrape:\n" + "\n".join(
        line for line in text.splitlines() if line.startswith(name)))


def test_each_view_answers_what_the_stream_made_to_whom_may_ask(settings, workers, tmp_path):
    settings = settings.with_(commit_interval=0.5, max_body_bytes=4096, malloc_trim_interval=1)
    ensure_topics(settings)
    asyncio.run(apply_definitions(settings, JOURNEYS.read_text()))
    worker = _start(settings, workers, tmp_path)
    log = _workload(settings)
    send_events(settings, log)
    send_raw(settings, [(b"bad", b"not avro at all")])
    wait_processed(settings, worker)
    ready = _until_ready(settings, worker)
    assert ready["ready"] and ready["partitions"] == list(range(settings.partitions))
    assert call(settings, "/health", token="")[0] == 200

    # Who may ask: no token, an unknown one, a read one, an admin one.
    assert call(settings, f"/profiles/{MEMBER}", token="")[0] == 401
    assert call(settings, f"/profiles/{MEMBER}", token="x" * 20)[0] == 401
    assert call(settings, f"/profiles/{MEMBER}", token=READ_TOKEN)[0] == 200
    for dump in ("/table/profiles", "/router", "/graph"):  # Faust's own views are off
        assert call(settings, dump, token=ADMIN_TOKEN)[0] == 404, dump

    # Profiles: the state, the journey positions, a pointer for a merged visitor, 404.
    states = table(settings, "profiles", "profile")
    member = get_json(settings, f"/profiles/{MEMBER}")
    assert member["counts"] == states[MEMBER]["counts"] and member["counts"]["view"] == 3
    assert (member["duplicates"], member["merge_crossings"]) == \
        (states[MEMBER]["duplicates"], states[MEMBER]["merge_crossings"])
    pid, state = next((p, s) for p, s in sorted(states.items()) if "onboarding" in s["journeys"])
    shown = get_json(settings, f"/profiles/{pid}")["journeys"][0]
    journey = state["journeys"]["onboarding"]
    assert (shown["journey"], shown["version"], shown["stage"], shown["step"]) == \
        ("onboarding", 1, journey["stage"], journey["step"])
    assert get_json(settings, f"/profiles/{VISITOR}") == {
        "profile_id": VISITOR, "merged_into": MEMBER, "see": f"/profiles/{MEMBER}"}
    status, _, body = call(settings, "/profiles/nobody-like-this")
    assert status == 404 and "nobody-like-this" in json.loads(body)["error"]

    # Journeys: live counts per stage equal the stream's states.
    expected = Counter(s["journeys"]["onboarding"]["stage"] for s in states.values()
                       if s["journeys"].get("onboarding", {}).get("status") == "active")
    deadline = time.monotonic() + 20
    while True:
        listed = get_json(settings, "/journeys")["journeys"]
        live = listed[0]["versions"][0]["live"]
        if live["complete"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [j["journey"] for j in listed] == ["onboarding"] and live["complete"]
    assert {s: n for s, n in live["in_stage"].items() if n} == dict(expected)
    detail = get_json(settings, "/journeys/onboarding")["versions"][0]
    assert detail["definition"]["id"] == "onboarding"
    assert sum(s["profiles"] for s in detail["live"]["in_step"]) == sum(expected.values())
    assert call(settings, "/journeys/nope")[0] == 404
    # The funnel page escapes what the URL said; a version that is no number is a 400; a header
    # too long for aiohttp is a 400 that repeats nothing of the request (the token).
    status, _, body = call(settings, "/journeys/%3Cimg%20src=x%20onerror=alert(1)%3E/funnel")
    assert status == 404 and b"<img" not in body and b"&lt;img src=x onerror=alert(1)&gt;" in body
    status, ctype, body = call(settings, "/journeys/onboarding/funnel?version=abc")
    assert status == 400 and ctype.startswith("application/json")
    assert "whole number" in json.loads(body)["error"]
    answer = _raw(settings, f"GET /profiles/{MEMBER} HTTP/1.1\r\nHost: x\r\n"
                            f"Authorization: Bearer {READ_TOKEN}{'x' * 9000}\r\n\r\n")
    assert answer.split(b" ")[1] == b"400" and READ_TOKEN.encode() not in answer, answer

    # Metrics: no token needed; the figures are what was processed.
    status, ctype, scrape = call(settings, "/metrics", token="")
    text = scrape.decode()
    assert status == 200 and ctype.startswith("text/plain")
    assert _metric(text, "cjo_events_total") == len(log)
    assert _metric(text, "cjo_dead_letters_total", reason="undecodable") == 1
    entered = sum(1 for s in states.values() if "onboarding" in s["journeys"])
    assert _metric(text, "cjo_outputs_total", topic="journey-transitions",
                   kind="entered_journey") == entered
    assert _metric(text, "cjo_processing_latency_seconds_count", since="arrival") > 0
    assert _metric(text, "cjo_consumer_lag", topic=settings.topic("events"), partition=0) == 0
    # The tables' RocksDB databases share one budget: their memtables are charged to it.
    assert _metric(text, "cjo_rocksdb_memory_bytes", part="budget") == \
        settings.rocksdb_memory_mb * 1024 * 1024
    assert _metric(text, "cjo_rocksdb_memory_bytes", part="memtable") > 0
    assert _metric(text, "cjo_rocksdb_memory_bytes", part="cache") >= \
        _metric(text, "cjo_rocksdb_memory_bytes", part="memtable")
    # glibc's arenas are capped and their free pages go back to the system every second.
    native = get_json(settings, "/stats/")["native_memory"]
    assert native["available"] and native["arenas"] == settings.malloc_arenas
    assert native["trims"] >= 1

    # Definitions: read tokens may not change them; bad files change nothing; limits hold.
    before = get_json(settings, "/definitions")["versions"]
    bad = b"segments:\n  - {id: x, condition: {count.view: {gte: many}}}\n"
    assert call(settings, "/definitions", "POST", bad, token=READ_TOKEN)[0] == 403
    status, _, body = call(settings, "/definitions", "POST", bad, token=ADMIN_TOKEN)
    errors = json.loads(body)["errors"]
    assert status == 422 and errors[0]["path"].startswith("segments[0].condition")
    assert call(settings, "/definitions", "POST", b"#" * 5000, token=ADMIN_TOKEN)[0] == 413
    assert get_json(settings, "/definitions")["versions"] == before
    good = b"segments:\n  - {id: viewers, condition: {count.view: {gte: 1}}}\n"
    status, _, body = call(settings, "/definitions", "POST", good, token=ADMIN_TOKEN)
    assert status == 200 and json.loads(body)["applied"] == [
        {"key": "segment:viewers", "version": 1}]

    # The terminal says the same (cjo profile / journeys / funnel ask the worker).
    shown = _cli(settings, "profile", MEMBER)
    assert f"profile {MEMBER}" in shown and "view 3" in shown
    assert "merged into member-9" in _cli(settings, "profile", VISITOR)
    lines = _cli(settings, "journeys").splitlines()
    assert lines[0].startswith("journey onboarding v1")
    for stage, n in expected.items():
        assert any(re.match(rf"{stage}\s+{n}\s", line) for line in lines), (stage, lines)
    assert "stage" in _cli(settings, "funnel", "onboarding")


def test_a_profile_is_answered_by_whichever_worker_is_asked(settings, workers, tmp_path):
    """Two workers share the partitions; each answers for every profile (the request goes to
    the owner), and the live journey counts add up both workers' partitions."""
    settings = settings.with_(commit_interval=0.5)
    ensure_topics(settings)
    asyncio.run(apply_definitions(settings, JOURNEYS.read_text()))
    first = _start(settings, workers, tmp_path, "first")
    send_events(settings, _workload(settings))
    wait_processed(settings, first)
    other = settings.with_(web_port=settings.web_port + 1)
    second = _start(other, workers, tmp_path, "second")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        a, b = _until_ready(settings, first), _until_ready(other, second)
        if a["partitions"] and b["partitions"] and \
                len(a["partitions"]) + len(b["partitions"]) == settings.partitions:
            break
        time.sleep(0.5)
    assert a["partitions"] and b["partitions"], (a, b)
    states = table(settings, "profiles", "profile")
    sample = sorted(states)[:40] + [MEMBER]
    for s in (settings, other):
        for pid in sample:
            got = get_json(s, f"/profiles/{pid}")
            assert got.get("profile_id") == pid, (s.web_port, pid, got)
    expected = sum(1 for s in states.values()
                   if s["journeys"].get("onboarding", {}).get("status") == "active")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        live = get_json(other, "/journeys")["journeys"][0]["versions"][0]["live"]
        if live["complete"] and sum(live["in_stage"].values()) == expected:
            break
        time.sleep(0.5)
    assert live["complete"] and sum(live["in_stage"].values()) == expected, live


def test_the_funnel_page_renders_in_headless_chromium(settings, workers, tmp_path):
    """The funnel picture shows every stage with the sidecar's counts; a screenshot is kept in
    test-artifacts/funnel.png."""
    from playwright.sync_api import sync_playwright

    from sidecar.follower import follow
    from tests.integration.test_snapshots import wait_for_snapshots

    settings = settings.with_(commit_interval=0.5, snapshot_interval=1.0,
                              snapshot_dir=str(tmp_path / "snapshots"))
    ensure_topics(settings)
    asyncio.run(apply_definitions(settings, JOURNEYS.read_text()))
    worker = _start(settings, workers, tmp_path)
    send_events(settings, _workload(settings))
    wait_processed(settings, worker)
    wait_for_snapshots(settings)
    funnel = {s["stage"]: s["entered"] for stages in
              asyncio.run(follow(settings, once=True))["journeys"] for s in stages}
    assert funnel and all(funnel.values())
    _until_ready(settings, worker)

    url = f"http://127.0.0.1:{settings.web_port}/journeys/onboarding/funnel"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(extra_http_headers={"Authorization": f"Bearer {READ_TOKEN}"})
            response = page.goto(url)
            assert response.status == 200
            shown = {g.get_attribute("data-stage"): int(g.get_attribute("data-entered"))
                     for g in page.query_selector_all("g.stage")}
            # Every stage of the definition, in order; nobody reached the last one yet.
            assert shown == {s: funnel.get(s, 0) for s in ("welcome", "browsing", "cart",
                                                           "loyal")}
            assert page.locator("h1").inner_text().startswith("Journey onboarding")
            for stage in funnel:
                assert page.get_by_text(stage, exact=True).first.is_visible()
            page.screenshot(path=str(ARTIFACTS / "funnel.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "funnel.png").stat().st_size > 5000
