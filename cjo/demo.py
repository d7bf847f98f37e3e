"""`cjo demo`: the whole path on the local broker, with a summary of what happened.

Starts the broker (installing Kafka on first use), creates a fresh app, applies the example
segments and deliveries, starts a worker, produces a seeded workload of visitors who browse,
log in and buy (plus a few bad records), waits until everything is processed, prints what the
stream made of it, and stops what it started.
"""
from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections import Counter
from pathlib import Path

from cjo.clock import Clock
from cjo.kafka_io import produce, read_all, wait_until_caught_up
from cjo.processes import WorkerProcess
from cjo.producer import EventProducer
from cjo.settings import Settings
from cjo.web_client import WebError, call, get_json
from cjo.workload import Workload
from deploy.broker import BrokerError, LocalBroker
from state.durations import DAY
from topology.pipeline import topics
from topology.pipeline.definitions import apply_definitions

DEMO_PREFIX = "cjo-demo-"
DAYS = 8  # rounds of visits, a simulated day apart
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "definitions.yaml"


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(base: Settings, events: int, users: int) -> int:
    broker = LocalBroker.from_settings(base)
    started_broker = broker.pid() is None
    try:
        if not broker.installed():
            _say(f"Installing Apache Kafka {broker.version} from Maven Central (once)…")
            t0 = time.monotonic()
            broker.install()
            _say(f"  installed in {time.monotonic() - t0:.1f}s into {broker.lib_dir}")
        took = broker.start()
        _say(f"Broker: {broker.status()}" + (f", started in {took:.1f}s" if took else ""))
    except BrokerError as exc:
        _say(f"The broker could not start: {exc}")
        return 1

    settings = base.with_(app_id=f"{DEMO_PREFIX}{int(time.time())}", commit_interval=0.5,
                          snapshot_interval=1.0)
    if not settings.admin_tokens:  # the views need a token: one for this demo only
        settings = settings.with_(admin_tokens=(secrets.token_urlsafe(24),))
    worker = None
    try:
        _forget_previous_demos(settings)
        topics.ensure_topics(settings)
        applied = asyncio.run(apply_definitions(settings, EXAMPLES.read_text()))
        _say(f"Applied {len(applied)} definitions from {EXAMPLES.name}: "
             + ", ".join(k for k, _ in applied))

        # Each round is a day of visits (events a minute apart, a day between rounds); the
        # worker's clock (journey waits) follows the events round by round, so waits fall due
        # between visits and profiles move through every stage of the journey.
        workload = Workload(seed=7, members=users, anonymous=users, round_gap_ms=DAY)
        rounds = workload.rounds(DAYS, max(1, events // DAYS))
        clock = Clock(str(settings.data_dir / "demo" / f"{settings.app_id}.clock"))
        clock.set(workload.start_ms)
        log_path = settings.data_dir / "demo" / f"{settings.app_id}.worker.log"
        worker = WorkerProcess(settings, log_path, {"CJO_CLOCK_FILE": clock.path}).start()
        _say(f"Worker started (pid {worker.proc.pid}, log {log_path})")
        produced, elapsed, cpu = 0, 0.0, 0.0
        for day, events_of_day in enumerate(rounds):
            extra = _bad_records() if day == 0 else []
            t0, cpu0 = time.monotonic(), worker.cpu_seconds()
            _produce(settings, events_of_day + extra)
            if not _caught_up(settings, worker, 180 if day == 0 else 300):
                _say("The worker did not catch up; its log:\n" + worker.log_tail())
                return 1
            if day:  # the first day includes the worker's start
                elapsed += time.monotonic() - t0
                cpu += worker.cpu_seconds() - cpu0
                produced += len(events_of_day)
            clock.set(events_of_day[-1][1]["time"])
            if not _wakeups_done(settings, worker):
                _say("Due journey waits were not applied; worker log:\n" + worker.log_tail())
                return 1
        log = [e for r in rounds for e in r]
        _say(f"Produced {len(log):,} events over {DAYS} simulated days, moving the worker's "
             "clock with them so that journey waits fell due between visits; days 2 to "
             f"{DAYS}: {produced / elapsed:,.0f} events/s, {cpu / produced * 1e6:,.0f} µs of "
             "worker CPU per event (one worker; wall time includes the 0.5 s commit interval)")
        clock.set(log[-1][1]["time"] + 2 * DAY)
        if not _wakeups_done(settings, worker):
            _say("Due journey waits were not applied; worker log:\n" + worker.log_tail())
            return 1
        _say("Moved the worker's clock two days past the last event: due journey waits fired")
        _summarise(settings, log)
        time.sleep(2.5)  # the next snapshots (every second) reflect everything
        from sidecar.follower import follow, print_audiences, print_funnels, run_check

        _say("The sidecar loaded the snapshots into DuckDB; journey stage sets counted in SQL:")
        result = asyncio.run(follow(settings, once=True))
        print_funnels(result)
        _save_funnel_pages(settings, result)
        _say("The batch audiences (SQL segments over the archived events), sent to the "
             "profiles:")
        print_audiences(result)
        _say("The consistency check on every profile: journey invariants, and segment "
             "memberships recounted in SQL from the archived events:")
        return run_check(settings, 100.0)
    finally:
        if worker is not None:
            worker.stop()
            _say(f"Worker stopped (exit code {worker.proc.returncode})")
        if started_broker:
            broker.stop()
            _say("Broker stopped")


def _produce(settings: Settings, log) -> None:
    asyncio.run(_send_events(settings, [e for _, e in log if isinstance(e, dict)]))
    raw = [(k, e) for k, e in log if isinstance(e, bytes)]
    if raw:
        asyncio.run(produce(settings.bootstrap_servers, settings.topic("events"), None, raw))


async def _send_events(settings: Settings, events: list[dict]) -> None:
    """The workload's events through the producer API: each checked with the worker's rules,
    keyed by its visitor id, else its user id, and sent in order."""
    async with EventProducer.for_app(settings) as producer:
        await asyncio.gather(*[await producer.send(event) for event in events])


def _bad_records() -> list[tuple[bytes, bytes]]:
    """A few records a careless producer might send; they go to the dead letters."""
    return [(b"v-bad", b'{"name": "view"}'), (b"v-bad", b""), (None, b"\xc3\x01garbage")]


def _caught_up(settings: Settings, worker, timeout: float) -> bool:
    return asyncio.run(wait_until_caught_up(
        settings.bootstrap_servers, settings.app_id,
        [settings.topic("events"), settings.topic("profile-inputs")],
        timeout=timeout, alive=worker.running))


def _wakeups_done(settings: Settings, worker, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while time.monotonic() < deadline and worker.running():
        try:
            pending = get_json(settings, "/stats/").get("wakeups_pending_due", 0)
        except (OSError, WebError):  # not up yet
            pending = 1
        if pending == 0 and _caught_up(settings, worker, 60):
            return True
        time.sleep(0.3)
    return False


def _forget_previous_demos(settings: Settings) -> None:
    """Delete earlier demo runs' topics and tables so that demos do not pile up."""
    topics.delete_topics(settings, (DEMO_PREFIX,))
    for old in (settings.data_dir / "workers").glob(DEMO_PREFIX + "*"):
        shutil.rmtree(old, ignore_errors=True)


def _save_funnel_pages(settings: Settings, result: dict) -> None:
    """Keep each journey's funnel page (what `/journeys/<id>/funnel` shows: plain HTML with no
    script or external resource) beside the demo's log, to open in a browser afterwards."""
    for journey in sorted({s["journey"] for stages in result["journeys"] for s in stages}):
        status, _, page = call(settings, f"/journeys/{journey}/funnel")
        if status != 200:
            _say(f"The funnel page of {journey} answered HTTP {status}")
            continue
        path = settings.data_dir / "demo" / f"{settings.app_id}.{journey}.funnel.html"
        path.write_bytes(page)
        _say(f"  the funnel page of {journey}: {path}")


def _read(settings: Settings, topic: str, schema: str) -> list[dict]:
    reads = asyncio.run(read_all(settings.bootstrap_servers, settings.topic(topic), schema))
    return [r.value for r in reads]


def _summarise(settings: Settings, log) -> None:
    changes = _read(settings, "segment-changes", "segment_change")
    activations = _read(settings, "activations", "activation")
    dead = _read(settings, "dead-letters", "dead_letter")
    merges = sum(1 for _, e in log if e["name"] == "identify")
    profiles = {(e["user_id"] or e["visitor_id"]) for _, e in log}
    _say()
    _say(f"Profiles seen: {len(profiles):,}; identify events (visitor → member merges): {merges}")
    entered = Counter(c["segment"] for c in changes if c["change"] == "entered")
    left = Counter(c["segment"] for c in changes if c["change"] == "left")
    _say(f"Segment changes → {settings.topic('segment-changes')}:")
    for segment in sorted(entered):
        _say(f"  {segment:<16} entered {entered[segment]:>5}   left {left[segment]:>5}")
    by_delivery = Counter((a["delivery"], a["variant"]) for a in activations
                          if a["suppressed"] is None)
    _say(f"Activations → {settings.topic('activations')}:")
    for (delivery, variant), n in sorted(by_delivery.items()):
        _say(f"  {delivery:<16} variant {variant:<8} {n:>5}")
    # Caps and quiet hours: activations decided but not to be sent, and why.
    suppressed = Counter((a["delivery"], a["suppressed"]) for a in activations
                         if a["suppressed"] is not None)
    _say("  not sent (suppressed, with the reason): " + (", ".join(
        f"{delivery} {reason} {n}" for (delivery, reason), n in sorted(suppressed.items()))
        or "none"))
    _say(f"Dead letters → {settings.topic('dead-letters')}: "
         + ", ".join(f"{d['reason_code']} ({d['reason'][:50]})" for d in dead))
    if activations:
        a = activations[0]
        _say(f"Example activation: {a}")
    _journey_funnel(settings)


def _journey_funnel(settings: Settings) -> None:
    transitions = _read(settings, "journey-transitions", "journey_transition")
    by_journey: dict[str, list] = {}
    for t in transitions:
        by_journey.setdefault(t["journey"], []).append(t)
    for journey, records in sorted(by_journey.items()):
        def profiles(kind, to=None):
            return len({t["profile_id"] for t in records
                        if t["kind"] == kind and (to is None or t["to"] == to)})
        _say(f"Journey {journey} → {settings.topic('journey-transitions')} "
             f"({len(records):,} transitions): entered {profiles('entered_journey')}, "
             f"goal reached {profiles('goal_reached')}")
        stages = []
        for t in records:
            if t["kind"] == "entered_stage" and t["to"] not in stages:
                stages.append(t["to"])
        for stage in stages:
            _say(f"  stage {stage:<10} entered {profiles('entered_stage', stage):>5}   "
                 f"milestone {profiles('milestone_reached', stage):>5}")
        exits = Counter(t["to"] for t in records if t["kind"] == "journey_exited")
        _say("  left the journey: " + ", ".join(f"{k} {v}" for k, v in exits.most_common()))
        held = Counter((t["from"], t["kind"], t["reason"]) for t in records
                       if t["kind"] in ("activation_held", "activation_suppressed"))
        if held:
            _say("  activations held or suppressed: " + ", ".join(
                f"{step} {kind.removeprefix('activation_')} ({reason}) {n}"
                for (step, kind, reason), n in sorted(held.items())))
