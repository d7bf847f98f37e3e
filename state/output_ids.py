"""Output ids: what a consumer keeps, for ever, to drop a copy it has seen (README "Output ids").

    <generation>/<profile>/<cause>/<output>

- `generation`: what differs between app instances and topic generations, the same for every
  worker and every replay: the first 11 characters of the `<app>.events` topic's Kafka topic
  id (topology.machinery.topic_ids), or the app id on a broker without topic ids.
- `profile`: the profile the output is about (the record's key).
- `cause`: `event:<event_id>`, `wakeup:<journey>:<seq>`, `time:<due>` (segments that follow the
  clock), `audience:<audience>:<run>` or `merge:<partition>:<offset>` (the identify's position
  on `<app>.events`).
- `output`: `segment/<segment>/<entered|left>`, `delivery/<delivery>`,
  `journey/<journey>/<step>` (an activation step) or `journey/<journey>/<kind>/<from>/<to>` (a
  transition; empty where it has no from or to).

A merge's own id is `<generation>/<visitor>><member>@<partition>:<offset>`. Every part is a
function of the input log and the generation, so a replay makes the same ids; none is ever
`None`.
"""
from __future__ import annotations

GENERATION_CHARS = 11  # of Kafka's topic id (22 characters, base64): 66 random bits
DEFAULT_GENERATION = "cjo"  # the default app id: a wire that names none (tests, benchmarks)


def text(value) -> str:
    """A part of an id: empty for None."""
    return "" if value is None else str(value)


def source(generation: str, profile_id: str, kind: str, *what) -> str:
    """`<generation>/<profile>/<cause>`: what every id of one input's outputs for one profile
    starts with; the cause is `kind:` and `what` joined by colons."""
    return f"{generation}/{profile_id}/{kind}:{':'.join(map(text, what))}"


def merge_id(generation: str, visitor: str, member: str, partition: int, offset: int) -> str:
    return f"{generation}/{visitor}>{member}@{partition}:{offset}"
