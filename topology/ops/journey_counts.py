"""Live journey counts: how many profiles are in each journey, version, stage and step right
now, for the partitions this worker owns. A partition's count starts from a read of the whole
partition when the worker gets it, and moves with every profile the agent writes after that
read began (the difference between the profile's positions before and after), so it is exact
once the read is done (`complete`)."""
from __future__ import annotations

from collections import Counter

from topology.machinery.faust_fixes import stores_settled
from topology.machinery.partitions import owned, read_partition


def positions(profile: dict | None) -> tuple:
    """(journey, version, stage, step) of each journey the profile is active in, in the order
    of its journey records (which an input only appends to): two calls on a profile an input
    left in place compare equal. Called twice for every input, so no Counter is built."""
    if not profile:
        return ()
    journeys = profile["journeys"]
    if not journeys:
        return ()
    return tuple([(jid, s["version"], s["stage"] or "", s["step"] or "")
                  for jid, s in journeys.items() if s["status"] == "active"])


class JourneyCounts:
    interval = 1.0  # seconds between looks at the assignment

    def __init__(self, topology, profiles) -> None:
        self.topology = topology
        self.profiles = profiles
        self.decode = topology.wire.profile.projection(("journeys",))
        self.counts: dict[int, Counter] = {}
        self.complete: set[int] = set()
        self.generation: dict[int, int] = {}

    def forget(self, partitions: set[int]) -> None:
        """Revoked: counted again from scratch if they come back."""
        for p in partitions:
            self.counts.pop(p, None)
            self.complete.discard(p)
            self.generation[p] = self.generation.get(p, 0) + 1

    def changed(self, partition: int, before: tuple, after: tuple) -> None:
        """The profile agent moved a profile of `partition` from positions `before` to
        `after`."""
        counts = self.counts.get(partition)
        if counts is not None and before != after:
            counts.subtract(before)
            counts.update(after)

    async def tick(self) -> None:
        if not stores_settled(self.topology.app):
            return
        mine = set(owned(self.topology))
        for partition in set(self.counts) - mine:
            self.counts.pop(partition)
            self.complete.discard(partition)
        for partition in sorted(mine - set(self.counts)):
            counts = self.counts[partition] = Counter()
            generation = self.generation.get(partition, 0)
            done = await read_partition(
                self.topology, self.profiles, partition, decode=self.decode,
                take=lambda chunk: [counts.update(positions(p)) for p in chunk],
                valid=lambda: self.generation.get(partition, 0) == generation)
            if self.generation.get(partition, 0) != generation:
                continue  # revoked meanwhile (and forgotten)
            if done:
                self.complete.add(partition)
            else:
                self.counts.pop(partition, None)

    def totals(self) -> dict:
        total: Counter = Counter()
        for counts in self.counts.values():
            total.update(counts)
        # Complete when every partition this worker owns is counted (not before the first read).
        complete = (self.complete == set(self.counts)
                    and set(owned(self.topology)) <= self.complete)
        return {"partitions": sorted(self.counts), "complete": complete,
                "positions": [{"journey": j, "version": v, "stage": st, "step": sp, "profiles": n}
                              for (j, v, st, sp), n in sorted(total.items()) if n > 0]}
