"""A seeded generator of realistic events: visitors browse, add to cart, buy, set attributes.

Deterministic for a seed, so a test or benchmark can replay exactly the same log.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

PATHS = ["/", "/search", "/items/1", "/items/2", "/items/3", "/cart", "/campaign/spring"]
PREFS = list(range(1, 48))  # Japanese prefecture codes, as KARTE's example uses pref_cd

# (event name, weight)
MIX = [("view", 60), ("click", 15), ("add_to_cart", 10), ("purchase", 5), ("attribute", 10)]


@dataclass(frozen=True)
class Workload:
    seed: int = 1
    users: int = 50
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z

    def user_id(self, i: int) -> str:
        return f"u{i:06d}"

    def events(self, count: int) -> list[tuple[bytes, dict]]:
        """`count` events as (key, record) in production order."""
        rng = random.Random(self.seed)
        names = [n for n, _ in MIX]
        weights = [w for _, w in MIX]
        out = []
        for i in range(count):
            user = self.user_id(rng.randrange(self.users))
            name = rng.choices(names, weights)[0]
            out.append(
                (
                    user.encode(),
                    {
                        "event_id": f"e{self.seed}-{i}",
                        "name": name,
                        "visitor_id": None,
                        "user_id": user,
                        "time": self.start_ms + i * 250,
                        "request_id": f"r{self.seed}-{i // 3}",
                        "values": _values(rng, name),
                    },
                )
            )
        return out


def _values(rng: random.Random, name: str) -> dict:
    if name == "view":
        return {"path": rng.choice(PATHS)}
    if name == "click":
        return {"path": rng.choice(PATHS), "target": rng.choice(["banner", "item", "nav"])}
    if name == "add_to_cart":
        return {"item": f"i{rng.randrange(100)}", "price": rng.randrange(500, 20000)}
    if name == "purchase":
        return {"amount": round(rng.uniform(500, 50000), 2), "items": rng.randrange(1, 6)}
    return {"pref_cd": rng.choice(PREFS), "plan": rng.choice(["free", "standard", "premium"])}
