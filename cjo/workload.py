"""A seeded generator of realistic traffic: visitors browse anonymously, some log in
(`identify`) and go on browsing as members, members also act from the back end (purchases,
attributes), requests carry `__metadata` with the page path.

Traffic comes in rounds. Within a round each member is driven through one key only (its own
user id, or one of its visitors' ids), so every profile's inputs have one order, the order of
that key, except across a merge, whose order the engine itself guarantees. Deterministic for a
seed, so a test or benchmark can replay exactly the same log.
"""
from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

PATHS = ["/", "/search", "/items/1", "/items/2", "/items/3", "/cart", "/campaign/spring"]
PREFS = list(range(1, 48))  # Japanese prefecture codes, as KARTE's example uses pref_cd
BROWSE = [("view", 55), ("click", 15), ("add_to_cart", 10), ("purchase", 5), ("attribute", 5),
          ("__metadata", 10), ("unsubscribe", 1)]
BACKEND = [("purchase", 40), ("attribute", 60)]
# Where a profile lives (attribute `tz`, the time zone the example definitions read): from its
# key, so that every attribute event of a profile says the same and no random draw moves.
ZONES = ["Asia/Tokyo"] * 6 + ["America/New_York", "Europe/Berlin"]


@dataclass(frozen=True)
class Workload:
    seed: int = 1
    members: int = 50
    visitors_per_member: int = 2
    anonymous: int = 50  # visitors who never log in
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    step_ms: int = 60_000  # event time advances a minute per event: windows get exercised
    round_gap_ms: int = 0  # and this much more between two rounds (a round as a day's visits)

    def rounds(self, count: int, events_per_round: int) -> list[list[tuple[bytes, dict]]]:
        rng = random.Random(self.seed)
        members = [f"u{i:05d}" for i in range(self.members)]
        visitors = {m: [f"v{i:05d}-{j}" for j in range(self.visitors_per_member)]
                    for i, m in enumerate(members)}
        anonymous = [f"a{i:05d}" for i in range(self.anonymous)]
        identified: set[str] = set()
        state = {"n": 0}
        out = []
        for _ in range(count):
            channels = []
            for m in members:
                if rng.random() < 0.4:
                    channels.append(("user", m, None))
                else:
                    channels.append(("visitor", rng.choice(visitors[m]), m))
            channels += [("visitor", a, None) for a in rng.sample(anonymous, len(anonymous) // 2)]
            queues = [self._channel(rng, kind, key, member, identified, state,
                                    max(1, events_per_round // len(channels)))
                      for kind, key, member in channels]
            round_log = []
            while any(queues):
                q = rng.choice([q for q in queues if q])
                round_log.append(q.pop(0))
            out.append(round_log)
        n = 0
        for r, round_log in enumerate(out):  # times follow the final order, one step apart
            for _, event in round_log:
                event["time"] = self.start_ms + n * self.step_ms + r * self.round_gap_ms
                n += 1
        return out

    def events(self, count: int) -> list[tuple[bytes, dict]]:
        """About `count` events in 5 rounds, flattened."""
        return [e for r in self.rounds(5, max(1, count // 5)) for e in r]

    def _channel(self, rng, kind, key, member, identified, state, n) -> list:
        log = []
        logged_in = key in identified
        login_at = rng.randrange(n) if member and not logged_in and rng.random() < 0.5 else -1
        request = None
        for i in range(n):
            state["n"] += 1
            eid = f"e{self.seed}-{state['n']}"
            if kind == "user":
                name = _pick(rng, BACKEND)
                log.append(_event(key, eid, name, None, key, None, _values(rng, name, key)))
                continue
            if i == login_at:
                identified.add(key)
                logged_in = True
                log.append(_event(key, eid, "identify", key, member, request, {}))
                continue
            name = _pick(rng, BROWSE)
            if name == "__metadata" or request is None:
                request = f"r{self.seed}-{state['n']}"
                name = "__metadata"
            user = member if logged_in else None
            log.append(_event(key, eid, name, key, user, request,
                              _values(rng, name, member or key)))
        return log


def _event(key, eid, name, visitor, user, request, values) -> tuple[bytes, dict]:
    return key.encode(), {"event_id": eid, "name": name, "visitor_id": visitor,
                          "user_id": user, "time": 0, "request_id": request, "values": values}


def _pick(rng, mix) -> str:
    return rng.choices([n for n, _ in mix], [w for _, w in mix])[0]


def _values(rng: random.Random, name: str, who: str) -> dict:
    if name in ("view", "__metadata"):
        return {"path": rng.choice(PATHS)}
    if name == "click":
        return {"path": rng.choice(PATHS), "target": rng.choice(["banner", "item", "nav"])}
    if name == "add_to_cart":
        return {"item": f"i{rng.randrange(100)}", "price": rng.randrange(500, 20000)}
    if name == "purchase":
        return {"amount": round(rng.uniform(500, 50000), 2), "items": rng.randrange(1, 6)}
    if name == "unsubscribe":
        return {"channel": rng.choice(["email", "push"])}
    pref = 13 if rng.random() < 0.3 else rng.choice(PREFS)  # Tokyo is the biggest market
    return {"pref_cd": pref, "plan": rng.choice(["free", "standard", "premium"]),
            "tz": ZONES[zlib.crc32(who.encode()) % len(ZONES)]}
