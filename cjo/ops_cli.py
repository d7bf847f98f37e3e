"""`cjo profile ID`, `cjo journeys`, `cjo funnel ID`: what the ops views answer, as tables in
the terminal. They ask the worker at CJO_WEB_PORT (any worker: a profile is routed to its
owner) with the token in CJO_TOKEN, or one this machine's settings configure."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from cjo.settings import Settings
from cjo.web_client import WebError, get_json


def _when(ms) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: list[str], rows: list[list]) -> None:
    cells = [[str("-" if v is None else v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def show_profile(settings: Settings, profile_id: str) -> None:
    p = get_json(settings, f"/profiles/{profile_id}")
    if p.get("merged_into"):
        print(f"{profile_id} was merged into {p['merged_into']}: cjo profile {p['merged_into']}")
        return
    print(f"profile {p['profile_id']}: first seen {_when(p['first_seen'])}, "
          f"last seen {_when(p['last_seen'])}")
    print("segments: " + (", ".join(p["segments"]) or "none"))
    if p["counts"]:
        print("events:   " + ", ".join(f"{k} {v}" for k, v in sorted(p["counts"].items())))
    if p["journeys"]:
        print()
        _table(["journey", "version", "status", "stage", "step", "since", "waiting until"],
               [[j["journey"], j["version"], j["status"], j["stage"], j["step"],
                 _when(j["since"]), _when(j["waiting_until"])] for j in p["journeys"]])


def show_journeys(settings: Settings) -> None:
    listed = get_json(settings, "/journeys")["journeys"]
    if not listed:
        print("no journeys defined")
    for j in listed:
        for v in j["versions"]:
            live = v["live"]
            funnel = {s["stage"]: s for s in v["sidecar"]["funnel"]}
            print(f"journey {j['journey']} v{v['version']}"
                  + (" (latest)" if v["version"] == j["latest_version"] else "")
                  + ("" if live["complete"] else "  [live counts still counting]"))
            _table(["stage", "in now (live)", "entered (sidecar)", "goal (sidecar)"],
                   [[s, live["in_stage"][s], funnel.get(s, {}).get("entered"),
                     funnel.get(s, {}).get("goal")] for s in v["stages"]])
            print(f"sidecar funnel computed {_when(v['sidecar']['computed_at'])}\n")


def show_funnel(settings: Settings, journey_id: str) -> None:
    j = get_json(settings, f"/journeys/{journey_id}")
    for v in j["versions"]:
        funnel = {s["stage"]: s for s in v["sidecar"]["funnel"]}
        print(f"journey {journey_id} v{v['version']}: funnel computed "
              f"{_when(v['sidecar']['computed_at'])}")
        rows = []
        for stage in v["stages"]:
            s = funnel.get(stage, {})
            conv = s.get("conversion")
            rows.append([stage, s.get("entered", 0), v["live"]["in_stage"][stage],
                         s.get("milestone", 0), s.get("exited_stage", s.get("exited", 0)),
                         s.get("exited_journey", 0), s.get("goal", 0),
                         "-" if conv is None else f"{conv:.0%}"])
        _table(["stage", "entered", "in now", "milestone", "stage exit", "journey exit", "goal",
                "to next"], rows)
        print()


def run(settings: Settings, command: str, arg: str | None) -> int:
    try:
        if command == "profile":
            show_profile(settings, arg)
        elif command == "journeys":
            show_journeys(settings)
        else:
            show_funnel(settings, arg)
    except WebError as exc:
        body = exc.body
        print(f"cjo {command}: {exc}" if not isinstance(body, dict) else
              f"cjo {command}: HTTP {exc.status}: {json.dumps(body)}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cjo {command}: no worker answers on port {settings.web_port}: {exc}",
              file=sys.stderr)
        return 1
    return 0
