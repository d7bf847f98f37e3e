"""The full fault suite on its own broker:

    python -m tests.faults                      # every scenario, 100,000 events, 10 kills
    python -m tests.faults --events 20000 --kills 5 --only kill lost-state stall

Prints one line per scenario (events produced, kills, restarts, profiles compared, mismatches,
lost and extra outputs, duplicates with seen ids, wake-ups, recovery times) and exits 1 when
any scenario found a mismatch, a lost or an extra output (or, in `calm`, which makes no fault,
any duplicate at all)."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cjo.settings import Settings
from deploy.broker import LocalBroker
from deploy.ports import free_port, free_port_pair
from tests.faults.suite import (HEADER, Report, broker_kill_scenario, broker_scenario,
                                calm_scenario, definitions_scenario, kill_scenario,
                                lost_state_scenario, scale_scenario, stall_scenario,
                                takeover_scenario)

SCENARIOS = ("kill", "takeover", "broker", "broker-kill", "lost-state", "definitions", "stall",
             "scale", "calm")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="cjo-faults-"))
    broker = LocalBroker.from_settings(Settings.from_env().with_(
        broker_url=f"kafka://127.0.0.1:{free_port_pair()}", data_dir=base / "kafka"))
    broker.start(timeout=120)
    reports = []
    try:
        for name in args.only:
            settings = Settings.from_env().with_(
                app_id=f"faults-{name}-{uuid.uuid4().hex[:6]}",
                broker_url=f"kafka://{broker.bootstrap}",
                data_dir=base / name / "data", web_port=free_port(), partitions=8,
                read_tokens=("faults-read-token-0123456789",))
            workdir = base / name
            workdir.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            try:
                report = _run(name, settings, workdir, args, broker)
            except Exception as exc:  # the other scenarios' rows are still printed
                report = Report(name, examples=[f"the scenario failed: {exc!r}"[:2000]])
            reports.append(report)
            print(f"{name}: {time.monotonic() - started:.0f}s"
                  + ("" if report.ok else f"  FAILED: {report.examples[:6]}"), flush=True)
    finally:
        broker.stop()
    print(HEADER)
    for report in reports:
        print(report.line())
    print(f"(work directory {base})")
    return 0 if all(r.ok for r in reports) else 1


def _run(name: str, settings, workdir: Path, args, broker) -> Report:
    if name == "kill":
        return kill_scenario(settings, workdir, args.events, args.kills, args.seed)
    if name == "takeover":
        return takeover_scenario(settings, workdir, args.events, args.seed + 1)
    if name == "broker":
        return broker_scenario(settings, workdir, args.events, broker, args.seed + 2)
    if name == "broker-kill":
        return broker_kill_scenario(settings, workdir, args.events, broker, args.seed + 5)
    if name == "definitions":
        return definitions_scenario(settings, workdir, args.events, args.seed + 6)
    if name == "stall":
        return stall_scenario(settings, workdir, args.events, seed=args.seed + 4)
    if name == "scale":
        return scale_scenario(settings, workdir, args.events, seed=args.seed + 7)
    if name == "calm":
        return calm_scenario(settings, workdir, args.events, seed=args.seed + 8)
    return lost_state_scenario(settings, workdir, args.events, args.seed + 3)


if __name__ == "__main__":
    sys.exit(main())
