"""The fault suite: real worker processes and the real broker, a seeded workload with merges,
segments, deliveries and a journey with waits, and faults at random moments; afterwards the
stream is compared with the reference model (tests/model.py):

- every profile's state and journey position equals the model's (mismatches: must be 0);
- every output the model makes is on its topic (lost: must be 0), nothing else is (extra: must
  be 0), and every duplicate carries an id already seen, with identical content (a consumer
  that drops seen ids sees exactly the model's outputs);
- after the clock moves past every wait, each wake-up fires once (its transitions are
  outputs like the others: none lost, none new).

Scenarios: `kill` (kill -9 at random moments, restart), `takeover` (two workers with standby
replicas, one killed and restarted later: partitions move and move back), `broker` (the broker
restarts mid-run), `broker-kill` (kill -9 of the broker's JVM mid-run), `lost-state` (a worker
killed and its RocksDB directory deleted), `definitions` (a changed file applied mid-run, then a
kill -9 under the new definitions), `stall`
(two workers with standby replicas; each in turn stands still (SIGSTOP) past the session timeout
while it is processing, its partitions move to the other, and it goes on (SIGCONT)), `calm` (one
worker and no fault at all: the same rounds and clock, and not a single duplicate output).

Rounds of events are a simulated day apart, and after each round the workers' clock moves to
its last event, so journey waits fall due during the run (under the faults) as well as at the
end.
Run on its own: `python -m tests.faults` (see __main__); a short form runs in `make test`.
"""
from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cjo.clock import Clock
from cjo.kafka_io import produce, wait_until_caught_up
from cjo.processes import WorkerProcess
from cjo.settings import Settings
from cjo.web_client import call
from cjo.workload import Workload
from state.definitions import load_definitions
from state.durations import DAY
from tests.integration.harness import outputs, table
from tests.model import ReferenceModel, comparable
from topology.pipeline.definitions import apply_definitions
from topology.pipeline.topics import ensure_topics, generation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "definitions.yaml"
OUTPUTS = (("segment-changes", "segment_change", "change_id"),
           ("activations", "activation", "activation_id"),
           ("journey-transitions", "journey_transition", "transition_id"),
           ("identity-merges", "identity_merge", "merge_id"))


@dataclass
class Report:
    scenario: str
    events: int = 0
    kills: int = 0
    restarts: int = 0
    profiles: int = 0
    mismatches: int = 0
    lost: int = 0
    extra: int = 0
    duplicates: int = 0
    wakeups: int = 0
    recovery_s: list[float] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    # No fault was made (`calm`): nothing is redelivered, so a duplicate (even with an id
    # already seen) or a worker that restarted on its own fails the scenario.
    faultless: bool = False

    @property
    def ok(self) -> bool:
        return (not (self.mismatches or self.lost or self.extra) and self.profiles > 0
                and not (self.faultless and (self.duplicates or self.restarts)))

    def line(self) -> str:
        rec = (f"{min(self.recovery_s):.1f}/{sorted(self.recovery_s)[len(self.recovery_s) // 2]:.1f}"
               f"/{max(self.recovery_s):.1f}" if self.recovery_s else "-")
        return (f"{self.scenario:<11}{self.events:>9,}{self.kills:>7}{self.restarts:>10}"
                f"{self.profiles:>10,}{self.mismatches:>12}{self.lost:>6}{self.extra:>7}"
                f"{self.duplicates:>12,}{self.wakeups:>9,}   {rec}")


HEADER = (f"{'scenario':<11}{'events':>9}{'kills':>7}{'restarts':>10}{'profiles':>10}"
          f"{'mismatches':>12}{'lost':>6}{'extra':>7}{'duplicates':>12}{'wakeups':>9}"
          "   recovery s (min/median/max)")


class Cluster:
    """The workers of one scenario: start, kill -9, restart, wait until ready. It also stands in
    for a supervisor (systemd's Restart=, a Kubernetes pod): a worker that exits on its own,
    e.g. one that stopped itself because its group membership lapsed while the broker was away,
    is started again and counted as a restart. A worker the scenario killed stays down until
    the scenario starts it."""

    def __init__(self, settings: Settings, logs: Path, clock: Clock, report: "Report",
                 workers: int = 1) -> None:
        self.clock = clock
        self.logs = logs
        self.report = report
        from deploy.ports import free_port

        self.settings = [settings] + [settings.with_(web_port=free_port())
                                      for _ in range(workers - 1)]
        self.procs: list[WorkerProcess | None] = [None] * workers
        self.down: set[int] = set()
        self.starts = 0

    def start(self, i: int = 0) -> WorkerProcess:
        self.starts += 1
        self.down.discard(i)
        proc = WorkerProcess(self.settings[i], self.logs / f"worker{i}-{self.starts}.log",
                             {"CJO_CLOCK_FILE": self.clock.path}).start()
        self.procs[i] = proc
        return proc

    def kill(self, i: int = 0) -> None:
        self.down.add(i)
        self.procs[i].kill()

    def leave(self, i: int) -> None:
        """Worker i stops cleanly (scaled in) and stays down."""
        self.down.add(i)
        self.procs[i].stop()

    def supervise(self) -> bool:
        """Start again every worker that exited on its own; true while any worker runs."""
        for i, proc in enumerate(self.procs):
            if proc is not None and i not in self.down and not proc.running():
                self.start(i)
                self.report.restarts += 1
        return self.alive()

    def ready(self, i: int = 0, timeout: float = 180.0, partitions: int | None = None) -> float:
        """Seconds until worker i answers /ready (and owns `partitions` partitions, if
        given). A worker that keeps exiting (three restarts here) fails the scenario."""
        started = time.monotonic()
        restarts = self.report.restarts
        while time.monotonic() - started < timeout:
            proc = self.procs[i]
            if not proc.running():
                if i in self.down or self.report.restarts - restarts >= 3:
                    raise AssertionError(f"worker {i} died:\n{proc.log_tail()}")
                self.supervise()
                continue
            try:
                status, _, body = call(self.settings[i], "/ready", token="", timeout=5)
            except OSError:
                status = 0
            if status == 200:
                import json

                owned = json.loads(body)["partitions"]
                if partitions is None or len(owned) == partitions:
                    return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"worker {i} not ready after {timeout}s:\n"
                             + self.procs[i].log_tail())

    def alive(self) -> bool:
        return any(p is not None and p.running() for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p is not None:
                p.stop()


class Run:
    """One scenario's workload, model and checks."""

    def __init__(self, settings: Settings, name: str, events: int, seed: int,
                 workdir: Path) -> None:
        self.settings = settings.with_(commit_interval=1.0, session_timeout=6.0)
        self.report = Report(name)
        self.rng = random.Random(seed)
        members = max(20, events // 150)
        rounds, total = [], 0
        workload = Workload(seed=seed, members=members, anonymous=members, round_gap_ms=DAY)
        for log in workload.rounds(
                max(4, events // 1000) + 2, min(1000, max(100, events // 4))):
            rounds.append(log[:events - total])  # a cut round keeps every key's order
            total += len(rounds[-1])
            if total >= events:
                break
        self.rounds = [r for r in rounds if r]
        self.workdir = workdir
        self.clock = Clock(str(workdir / "clock"))
        self.clock.set(Workload().start_ms)  # waits fall due only when the run moves it
        ensure_topics(self.settings)
        source = EXAMPLES.read_text()
        asyncio.run(apply_definitions(self.settings, source))
        self.model = ReferenceModel(load_definitions(source), generation(self.settings))

    def send(self, log) -> None:
        """Produce one round. The next round may drive a member through another key (another
        partition), so a scenario waits until a round is processed before the next (the
        order the model assumes); faults strike while a round is being processed."""
        positions = asyncio.run(produce(self.settings.bootstrap_servers,
                                        self.settings.topic("events"), "event", log))
        for (partition, offset), (_, event) in zip(positions, log):
            self.model.apply(partition, offset, event)
        self.report.events += len(log)

    def caught_up(self, cluster: Cluster, timeout: float = 600.0) -> None:
        ok = asyncio.run(wait_until_caught_up(
            self.settings.bootstrap_servers, self.settings.app_id,
            [self.settings.topic("events"), self.settings.topic("profile-inputs")],
            timeout=timeout, alive=cluster.supervise))
        assert ok, "the workers did not catch up:\n" + "\n".join(
            p.log_tail(30) for p in cluster.procs if p is not None)

    def next_day(self, cluster: Cluster, log) -> None:
        """After a round is processed: the clock moves to its last event, and the waits due by
        then fire (in the model at once; in the stream by the workers' timers) before the
        next round."""
        self.caught_up(cluster)
        now = max(e["time"] for _, e in log)
        moved = time.time()
        self.clock.set(now)
        self.report.wakeups += self.model.wake_until(now)
        self._wait_for_wakeups(cluster, moved)

    def wait_for_definitions(self, cluster: Cluster, applied: dict, timeout: float = 60) -> None:
        """Until every running worker's /stats/ shows the applied versions."""
        from cjo.web_client import WebError, get_json

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                seen = [get_json(s, "/stats/")["definitions"]
                        for s, p in zip(cluster.settings, cluster.procs) if p and p.running()]
            except (OSError, WebError):
                seen = []
            if seen and all(all(v.get(k) == n for k, n in applied.items()) for v in seen):
                return
            time.sleep(0.2)
        raise AssertionError(f"the workers did not take up {applied}")

    def wake_everything(self, cluster: Cluster) -> None:
        """Move the clock past every wait; the model wakes the same waits."""
        last = max(e["time"] for r in self.rounds for _, e in r)
        now = last + 60 * DAY
        self.clock.set(now)
        made = lambda: sum(map(len, self.model.outputs.values()))  # noqa: E731
        before = made()
        moved = time.time()
        woken = self.model.wake_until(now)
        # Something woke: a wait ended (a transition) or time changed a segment.
        assert made() > before or not woken
        self.report.wakeups += woken
        self._wait_for_wakeups(cluster, moved)

    def _wait_for_wakeups(self, cluster: Cluster, moved: float) -> None:
        """Until the timers of the owners of every partition have read their index since the
        clock moved and found nothing due (a worker in recovery, or a partition between
        owners, has not), and everything they sent is applied."""
        deadline = time.monotonic() + 300
        since = moved
        while time.monotonic() < deadline:
            self.caught_up(cluster)
            scanned = time.time()
            if self._no_wakeups_due(cluster, since):
                if since > moved:  # and a scan after what it sent was applied: none again
                    return
                since = scanned
            time.sleep(0.3)
        raise AssertionError("due wake-ups were not applied")

    def _no_wakeups_due(self, cluster: Cluster, since: float) -> bool:
        from cjo.web_client import WebError, get_json

        checked: set[int] = set()
        for s, p in zip(cluster.settings, cluster.procs):
            if p and p.running():
                try:
                    stats = get_json(s, "/stats/")
                except (OSError, WebError):  # starting, or stopping itself: ask again
                    return False
                if stats.get("wakeups_checked_at", 0) < since:
                    return False
                if stats.get("wakeups_pending_due", 0):
                    return False
                checked.update(stats.get("wakeups_checked_partitions", []))
        return checked == set(range(self.settings.partitions))

    def compare(self) -> Report:
        r = self.report
        states = table(self.settings, "profiles", "profile")
        expected = self.model.states()
        r.profiles = len(expected)
        wrong = [pid for pid in expected
                 if pid not in states or comparable(states[pid]) != expected[pid]]
        r.mismatches = len(wrong) + len(set(states) - set(expected))
        for pid in wrong[:3]:
            got = comparable(states[pid]) if pid in states else {}
            keys = sorted(k for k in expected[pid] if got.get(k) != expected[pid][k])
            r.examples.append(f"profile {pid} differs in {keys}: stream "
                              f"{ {k: got.get(k) for k in keys} } model "
                              f"{ {k: expected[pid][k] for k in keys} }")
        for topic, schema, id_field in OUTPUTS:
            by_id, _, duplicates = outputs(self.settings, topic, schema, id_field)
            mine = {rec[id_field]: rec for rec in self.model.outputs[topic]}
            lost = set(mine) - set(by_id)
            extra = set(by_id) - set(mine)
            changed = [i for i in set(mine) & set(by_id) if mine[i] != by_id[i]]
            r.lost += len(lost)
            r.extra += len(extra) + len(changed)
            r.duplicates += duplicates
            if duplicates and r.faultless:
                r.examples += _duplicate_examples(self.settings, topic, schema, id_field)
            r.examples += [f"{topic}: lost {i}" for i in sorted(lost)[:2]]
            r.examples += [f"{topic}: extra {i}" for i in sorted(extra)[:2]]
            r.examples += [f"{topic}: differs {i}" for i in sorted(changed)[:2]]
        return r


def _duplicate_examples(settings: Settings, topic: str, schema: str, id_field: str,
                        count: int = 3) -> list[str]:
    """A few records of `topic` sent more than once, with the positions of every copy."""
    from cjo.kafka_io import read_all

    reads = asyncio.run(read_all(settings.bootstrap_servers, settings.topic(topic), schema))
    copies: dict[str, list] = {}
    for r in reads:
        copies.setdefault(r.value[id_field], []).append(r)
    found = []
    for rid, rs in copies.items():
        if len(rs) > 1 and len(found) < count:
            where = ", ".join(f"{r.partition}:{r.offset}" for r in rs)
            found.append(f"{topic}: {len(rs)} copies of {rid} at {where}: {rs[0].value}")
    return found


def _pause(rng: random.Random, longest: float = 2.5) -> None:
    time.sleep(rng.uniform(0.2, longest))  # the worker is in the middle of the round's events


def kill_scenario(settings: Settings, workdir: Path, events: int, kills: int,
                  seed: int = 1) -> Report:
    run = Run(settings, "kill", events, seed, workdir)
    cluster = Cluster(run.settings, workdir, run.clock, run.report)
    cluster.start()
    cluster.ready()
    rounds = run.rounds
    strikes = Counter(run.rng.randrange(len(rounds)) for _ in range(kills))  # rounds, kills
    try:
        for i, log in enumerate(rounds):
            run.send(log)
            for _ in range(strikes[i]):
                # Within the commit interval (1 s): a worker applies a round of 1,000 events in
                # a fraction of a second and commits it by the next interval.
                _pause(run.rng, longest=1.0)
                cluster.kill()
                run.report.kills += 1
                cluster.start()
                run.report.restarts += 1
                run.report.recovery_s.append(cluster.ready())
            run.next_day(cluster, log)
        run.wake_everything(cluster)
        return run.compare()
    finally:
        cluster.stop()


def calm_scenario(settings: Settings, workdir: Path, events: int, seed: int = 9) -> Report:
    """One worker and no fault at all: the same rounds, clock movement and wake-ups as the
    other scenarios. Nothing is redelivered, so every output must be sent exactly once: a
    duplicate (a wake-up or a re-read input that re-sends an outbox) fails it."""
    run = Run(settings, "calm", events, seed, workdir)
    run.report.faultless = True
    cluster = Cluster(run.settings, workdir, run.clock, run.report)
    cluster.start()
    cluster.ready()
    try:
        for log in run.rounds:
            run.send(log)
            run.next_day(cluster, log)
        run.wake_everything(cluster)
        report = run.compare()
        if report.restarts:
            report.examples.append(f"the worker exited on its own {report.restarts} times")
        return report
    finally:
        cluster.stop()


def takeover_scenario(settings: Settings, workdir: Path, events: int, seed: int = 2) -> Report:
    run = Run(settings.with_(standby_replicas=1), "takeover", events, seed, workdir)
    cluster = Cluster(run.settings, workdir, run.clock, run.report, workers=2)
    total = run.settings.partitions
    cluster.start(0)
    cluster.ready(0, partitions=total)
    cluster.start(1)
    cluster.ready(1)
    rounds = run.rounds
    half = len(rounds) // 2
    try:
        for i, log in enumerate(rounds):
            run.send(log)
            if i == 1:
                _pause(run.rng)
                cluster.kill(0)  # worker 1 takes over all partitions (warm standbys)
                run.report.kills += 1
                run.report.recovery_s.append(cluster.ready(1, partitions=total))
            if i == half:
                cluster.start(0)  # partitions move back
                run.report.restarts += 1
                run.report.recovery_s.append(cluster.ready(0))
            run.next_day(cluster, log)
        run.wake_everything(cluster)
        return run.compare()
    finally:
        cluster.stop()


def broker_scenario(settings: Settings, workdir: Path, events: int, broker, seed: int = 3,
                    kill: bool = False) -> Report:
    """The broker stops mid-round and starts again: cleanly (`broker`), or by kill -9 of its JVM
    with no clean shutdown, its log recovered on start (`broker-kill`). Workers that give up
    while it is away are restarted like a supervisor would."""
    run = Run(settings, "broker-kill" if kill else "broker", events, seed, workdir)
    cluster = Cluster(run.settings, workdir, run.clock, run.report)
    cluster.start()
    cluster.ready()
    rounds = run.rounds
    try:
        for i, log in enumerate(rounds):
            run.send(log)
            if i == len(rounds) // 2:
                _pause(run.rng)
                if kill:
                    broker.kill()
                else:
                    broker.stop()
                run.report.kills += 1
                time.sleep(2.0 if kill else 3.0)
                started = time.monotonic()
                broker.start(timeout=180)
                cluster.ready()  # restarts the worker if it gave up while the broker was away
                run.report.recovery_s.append(time.monotonic() - started)
            run.next_day(cluster, log)  # so does waiting: it may give up a moment later
        run.wake_everything(cluster)
        return run.compare()
    finally:
        cluster.stop()


def lost_state_scenario(settings: Settings, workdir: Path, events: int, seed: int = 4) -> Report:
    run = Run(settings.with_(standby_replicas=0), "lost-state", events, seed, workdir)
    cluster = Cluster(run.settings, workdir, run.clock, run.report)
    cluster.start()
    cluster.ready()
    rounds = run.rounds
    try:
        for i, log in enumerate(rounds):
            run.send(log)
            if i == len(rounds) // 2:
                _pause(run.rng)
                cluster.kill()
                run.report.kills += 1
                shutil.rmtree(run.settings.worker_dir, ignore_errors=True)
                cluster.start()
                run.report.restarts += 1
                run.report.recovery_s.append(cluster.ready())
            run.next_day(cluster, log)
        run.wake_everything(cluster)
        return run.compare()
    finally:
        cluster.stop()


def stall_scenario(settings: Settings, workdir: Path, events: int, stalls: int = 2,
                   seed: int = 5) -> Report:
    """Each worker in turn stands still (SIGSTOP) past the session timeout while it processes a
    round: the group moves its partitions to the other worker (a warm standby), which goes on
    from the last commit. Then the stalled worker goes on (SIGCONT) as if nothing happened,
    with the batch it was in the middle of. A worker that stops itself on waking (it may have
    lost its partitions) is restarted, as a supervisor would."""
    run = Run(settings.with_(standby_replicas=1), "stall", events, seed, workdir)
    cluster = Cluster(run.settings, workdir, run.clock, run.report, workers=2)
    cluster.start(0)
    cluster.ready(0, partitions=run.settings.partitions)
    cluster.start(1)
    cluster.ready(1)
    rounds = run.rounds
    strikes = set(run.rng.sample(range(1, len(rounds)), min(stalls, len(rounds) - 1)))
    try:
        for i, log in enumerate(rounds):
            run.send(log)
            if i in strikes:
                victim = run.report.kills % 2
                _pause(run.rng)
                cluster.procs[victim].pause()
                run.report.kills += 1
                time.sleep(run.settings.session_timeout + run.rng.uniform(3.0, 8.0))
                cluster.procs[victim].resume()
                time.sleep(2.0)  # it wakes, finds its membership gone, and acts on it
            for w, proc in enumerate(cluster.procs):
                if not proc.running():
                    started = time.monotonic()
                    cluster.start(w)
                    run.report.restarts += 1
                    cluster.ready(w)
                    run.report.recovery_s.append(time.monotonic() - started)
            run.next_day(cluster, log)
        run.wake_everything(cluster)
        return run.compare()
    finally:
        cluster.stop()


def broker_kill_scenario(settings: Settings, workdir: Path, events: int, broker,
                         seed: int = 6) -> Report:
    return broker_scenario(settings, workdir, events, broker, seed, kill=True)


def changed_definitions(source: str) -> str:
    """The example definitions with a changed segment, delivery limit and journey (a new
    version for new entries)."""
    import yaml

    doc = yaml.safe_load(source)
    for segment in doc["segments"]:
        if segment["id"] == "buyers":
            segment["condition"] = {"count.purchase": {"gte": 2}}
    for delivery in doc["deliveries"]:
        if delivery["id"] == "cart_reminder":
            delivery["limits"] = {"total": 3}
    for journey in doc["journeys"]:
        journey["goal"] = {"count.purchase": {"gte": 6}}
    return yaml.safe_dump(doc, sort_keys=False)


def definitions_scenario(settings: Settings, workdir: Path, events: int, seed: int = 7) -> Report:
    """A changed definitions file is applied mid-run (no restart), then a worker is killed
    (kill -9) while it applies the next round under the new definitions. The model switches
    where the worker did: the file is applied between two rounds and the next round is sent
    once the worker runs the new versions (the exact switch point under load is not
    observable from outside, so it is not tried here)."""
    run = Run(settings, "definitions", events, seed, workdir)
    cluster = Cluster(run.settings, workdir, run.clock, run.report)
    cluster.start()
    cluster.ready()
    rounds = run.rounds
    switch = len(rounds) // 2
    changed = changed_definitions(EXAMPLES.read_text())
    try:
        for i, log in enumerate(rounds):
            if i == switch:
                applied = dict(asyncio.run(apply_definitions(run.settings, changed)))
                run.wait_for_definitions(cluster, applied)
                run.model.switch(load_definitions(changed, run.model.defs))
            run.send(log)
            if i == switch:
                _pause(run.rng)
                cluster.kill()
                run.report.kills += 1
                cluster.start()
                run.report.restarts += 1
                run.report.recovery_s.append(cluster.ready())
            run.next_day(cluster, log)
        run.wake_everything(cluster)
        return run.compare()
    finally:
        cluster.stop()


def scale_scenario(settings: Settings, workdir: Path, events: int, seed: int = 8) -> Report:
    """Scaling out and in under load, on six partitions (not the default eight): one worker
    starts alone, a second and a third join while rounds are being processed (partitions move
    to them mid-round), later one leaves by a clean stop mid-round and another is killed
    (kill -9) mid-round and started again. Standby replicas on. Every worker writes the
    snapshots of its own partitions into one directory, and at the end one sidecar folds them
    all and recounts every profile: a violation counts as a mismatch."""
    from sidecar.follower import check_report
    from tests.integration.test_snapshots import wait_for_snapshots

    run = Run(settings.with_(partitions=6, standby_replicas=1, snapshot_interval=1.0,
                             snapshot_dir=str(workdir / "snapshots")),
              "scale", events, seed, workdir)
    cluster = Cluster(run.settings, workdir, run.clock, run.report, workers=3)
    cluster.start(0)
    cluster.ready(0, partitions=run.settings.partitions)
    rounds = run.rounds
    n = len(rounds)
    joins = {1: 1, 2: 2}  # round -> the worker that joins while it is processed
    leaves, killed = max(3, n // 2), max(4, (3 * n) // 4)
    try:
        for i, log in enumerate(rounds):
            run.send(log)
            if i in joins:
                _pause(run.rng, longest=1.0)
                cluster.start(joins[i])
                run.report.restarts += 1
                cluster.ready(joins[i])
            if i == leaves:
                _pause(run.rng, longest=1.0)
                cluster.leave(1)
                run.report.kills += 1
            if i == killed:
                _pause(run.rng, longest=1.0)
                cluster.kill(2)
                run.report.kills += 1
                cluster.start(2)
                run.report.restarts += 1
                run.report.recovery_s.append(cluster.ready(2))
            run.next_day(cluster, log)
        run.wake_everything(cluster)
        report = run.compare()
        wait_for_snapshots(run.settings, timeout=120)
        check = check_report(run.settings, 100.0)
        wrong = sum(check.violations.values())
        if wrong or check.recounted_profiles == 0:
            report.mismatches += max(1, wrong)
            report.examples.append(f"sidecar check over every worker's snapshots: {check}")
        return report
    finally:
        cluster.stop()
