"""The worker's own work per event without Kafka or Faust: the floor of the pipeline benchmark.

The pipeline benchmark's workload (bench.pipeline: 20 segments, 3 deliveries, 5 journeys of 4
stages) goes through the same code the two agents run, in one process, with dicts for the
RocksDB tables: decode the event, route it (identity), encode the profile input (the event
in it decoded), decode it, decode the profile, `step`, encode the profile. Each phase is timed apart (perf_counter), and
the total is process CPU time. Merges' hand-overs are applied too (as the second hop would).

    python -m bench.domain                          # 30,000 events, 20,000 profiles
    python -m bench.domain --events 100000 --profiles 70000
    python -m bench.domain --rules                  # with issue 20's sending rules (RULES)
    python -m bench.domain --paced 3,3              # bulk against 3 events, then 3 ms idle

`--paced B,MS` runs the same events twice in bulk and twice in batches of B with MS of sleep
after each (alternated, each from empty state) and prints the CPU per event of both: the same
work, only spread out, as a worker gets it at a moderate flow. Whatever the paced runs cost
more is not our code's per-batch work (there is none here) but the machine's: caches and
branch predictors gone cold while the process slept, and whatever ran meanwhile.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict, deque

from bench.pipeline import DEFINITIONS, RULES, build_workload, describe_workload
from cjo.settings import Settings
from state.definitions import load_definitions
from state.events import IDENTIFY, canonical_id
from state.processing import step
from topology.machinery.wire import WorkerWire


def run(events: int, profiles: int, rules: bool = False, batch: int = 0,
        pause: float = 0.0) -> dict:
    """The workload through the agents' code; with `batch`, a sleep of `pause` seconds after
    every `batch` events (process CPU time does not count it)."""
    settings = Settings.from_env().with_(app_id="bench")
    wire = WorkerWire(settings)
    defs = load_definitions(DEFINITIONS + RULES if rules else DEFINITIONS)
    log = build_workload(events, profiles)
    print(describe_workload(log), flush=True)
    encoded = [(key, wire.codecs["events"].encode(event)) for key, event in log]
    store: dict[str, bytes] = {}
    aliases: dict[str, str] = {}
    phases: dict[str, float] = defaultdict(float)
    offsets: dict[int, int] = defaultdict(int)
    clock = time.perf_counter
    cpu0 = time.process_time()
    inputs = deque()
    for n, (key, value) in enumerate(encoded):
        t0 = clock()
        routed = route(wire.decode_event(value), n, aliases)
        t1 = clock()
        inputs.extend(wire.encode_input(r) for r in routed)
        t2 = clock()
        phases["identity: decode + route"] += t1 - t0
        phases["identity: encode input"] += t2 - t1
        while inputs:
            apply(inputs.popleft(), store, wire, defs, offsets, phases, inputs)
        if batch and (n + 1) % batch == 0:
            time.sleep(pause)
    cpu = time.process_time() - cpu0
    return {"events": len(encoded), "cpu": cpu, "phases": dict(phases), "profiles": len(store)}


def route(event: dict, n: int, aliases: dict[str, str]) -> list[dict]:
    """The profile inputs the identity step makes of event `n` (partition 0), as dicts."""
    visitor = event["visitor_id"]
    base = {"kind": "event", "source_partition": 0, "source_offset": n, "event": event,
            "visitor_id": None, "member_id": None, "merge_id": None, "state": None}
    if event["name"] == IDENTIFY:
        member = event["user_id"]
        aliases[visitor] = member
        merge_id = f"{visitor}>{member}@0:{n}"
        return [{**base, "kind": "identify", "profile_id": member, "visitor_id": visitor,
                 "merge_id": merge_id},
                {**base, "kind": "merge_out", "profile_id": visitor, "event": None,
                 "visitor_id": visitor, "member_id": member, "merge_id": merge_id}]
    target = event["user_id"] or aliases.get(visitor) or canonical_id(event)
    return [{**base, "profile_id": target}]


def apply(data: bytes, store, wire, defs, offsets, phases, inputs) -> dict:
    """Apply one encoded profile input to `store` (encoded profiles by id); returns the
    profile as `step` left it."""
    clock = time.perf_counter
    t0 = clock()
    record = wire.decode_input(data)
    t1 = clock()
    stored = store.get(record["profile_id"])
    profile = wire.decode_profile(stored) if stored is not None else None
    t2 = clock()
    offset = offsets[0]
    offsets[0] += 1
    profile, sends = step(profile, record, offset, offset, defs, wire)
    t3 = clock()
    store[record["profile_id"]] = wire.encode_profile(profile)
    t4 = clock()
    for out in sends:
        if out["topic"] == "profile-inputs":
            inputs.append(out["value"])
    phases["profile: decode input"] += t1 - t0
    phases["profile: decode profile"] += t2 - t1
    phases["profile: step"] += t3 - t2
    phases["profile: encode profile"] += t4 - t3
    return profile


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--rules", action="store_true",
                        help="add issue 20's sending rules (bench.pipeline.RULES)")
    parser.add_argument("--paced", metavar="B,MS",
                        help="compare bulk with batches of B events and MS ms of sleep after each")
    args = parser.parse_args(argv)
    if args.paced:
        return paced(args, *args.paced.split(","))
    result = run(args.events, args.profiles, args.rules)
    n = result["events"]
    print(f"{n:,} events, {result['profiles']:,} profiles stored")
    print(f"process CPU: {result['cpu'] * 1e6 / n:,.1f} µs per event")
    for name, seconds in result["phases"].items():
        print(f"  {name:28s} {seconds * 1e6 / n:8.1f} µs per event")
    return 0


def paced(args, batch: str, ms: str) -> int:
    batch_n, pause = int(batch), float(ms) / 1000
    cpu: dict[str, list[float]] = {"bulk": [], "paced": []}
    for _ in range(2):
        for label, b, p in (("bulk", 0, 0.0), ("paced", batch_n, pause)):
            result = run(args.events, args.profiles, args.rules, b, p)
            cpu[label].append(result["cpu"] * 1e6 / result["events"])
    bulk, spread = min(cpu["bulk"]), min(cpu["paced"])
    print(f"process CPU per event, bulk:  {' / '.join(f'{c:.1f}' for c in cpu['bulk'])} µs")
    print(f"  {batch_n} events, then {ms} ms idle: "
          f"{' / '.join(f'{c:.1f}' for c in cpu['paced'])} µs")
    print(f"paced / bulk (minimum of each): {spread / bulk:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
