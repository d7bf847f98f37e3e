"""The Avro schemas of every record on a topic, loaded from the .avsc files beside this module.

`current(name)` is the schema a writer uses today; `by_fingerprint` holds every version that
may still be on a topic (current and released), so a reader can resolve old data.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = Path(__file__).resolve().parent
RELEASED_DIR = SCHEMA_DIR / "released"


@dataclass(frozen=True)
class SchemaVersion:
    file: str  # file stem, e.g. "event" or "event.v1"
    full_name: str  # e.g. "cjo.Event"
    parsed: dict  # fastavro's parsed schema
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as written on the wire


def _load(path: Path, stem: str) -> SchemaVersion:
    return schema_version(json.loads(path.read_text()), stem)


def schema_version(raw: dict, stem: str) -> SchemaVersion:
    """Parse a schema and compute the fingerprint that goes on the wire."""
    parsed = parse_schema(raw)
    canonical = to_parsing_canonical_form(parsed)
    # fastavro renders the fingerprint as hex of the little-endian bytes that go on the wire.
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return SchemaVersion(stem, parsed["name"], parsed, fp)


@lru_cache(maxsize=None)
def current_schemas() -> dict[str, SchemaVersion]:
    """Current schemas by file stem (`event`, `event_counted`, …)."""
    return {p.stem: _load(p, p.stem) for p in sorted(SCHEMA_DIR.glob("*.avsc"))}


@lru_cache(maxsize=None)
def released_schemas() -> dict[str, list[SchemaVersion]]:
    """Released versions by file stem, oldest first."""
    out: dict[str, list[SchemaVersion]] = {}
    for path in RELEASED_DIR.glob("*.avsc"):
        name, _, version = path.stem.rpartition(".v")
        out.setdefault(name, []).append((int(version), _load(path, path.stem)))
    return {k: [s for _, s in sorted(v, key=lambda t: t[0])] for k, v in out.items()}


def current(name: str) -> SchemaVersion:
    try:
        return current_schemas()[name]
    except KeyError:
        raise KeyError(f"no schema named {name!r} in {SCHEMA_DIR}") from None


@lru_cache(maxsize=None)
def by_fingerprint() -> dict[bytes, SchemaVersion]:
    known: dict[bytes, SchemaVersion] = {}
    for versions in released_schemas().values():
        for v in versions:
            known[v.fingerprint] = v
    for v in current_schemas().values():
        known[v.fingerprint] = v
    return known
