"""Segments and deliveries, defined in YAML and validated as a whole.

    segments:
      - id: tokyo
        description: optional text
        condition: {attribute.pref_cd: {eq: 13}}
      - id: top_spenders                  # a batch audience: one read-only SELECT of
        sql: SELECT profile_id FROM ...   # profile ids over the sidecar's tables, run by the
                                          # sidecar; the stream holds the membership it sends
    deliveries:
      - id: search_banner
        segment: tokyo                      # target segment
        trigger: {event.name: {eq: view}}   # condition on the current event
        limits: {total: 3, per_day: 1}      # optional
        destination: web                    # optional, the channel its caps count (web)
        priority: 0                         # optional: higher wins a cap's last slot
        quiet_hours: {from: "22:00", to: "07:00", then: drop}   # optional; false: none
        variants:                           # optional; default: one variant "default"
          - {id: a, weight: 50, payload: {banner: spring}}
          - {id: b, weight: 50, payload: {banner: summer}}
    journeys: [...]                         # see state/journey_definitions.py
    time_zone: {attribute: tz, default: Asia/Tokyo}   # see state/activation_rules.py
    quiet_hours: {email: {from: "21:00", to: "08:00", then: hold}}
    caps: {email: {max: 2, per: 1d}}

A file is applied over the definitions applied before it (same id replaces; a setting given
replaces the one applied whole: `caps: {}` removes every cap). Validation reports every
problem at once, each with its path, so that one round trip fixes a file. The definitions
travel on a compacted topic as one record per item (`to_records`; a setting under
`settings:<name>`); a reader rebuilds and re-validates them with `from_records`. Journeys are
versioned: a profile stays on the version it entered with, so every version is kept
(`journey_versions`).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Callable, Iterable

import yaml

from state.conditions import (EVENT_REFERENCES, Comparison, Condition, ConditionError,
                              EvalContext, InSegment, events_read, parse_condition, referenced_segments,
                              to_source, walk)
from state.activation_rules import (NO_RULES, Cap, QuietHours, Rules, TimeZoneRule, caps_source,
                                    parse_caps, parse_priority, parse_quiet_hours,
                                    parse_time_zone, quiet_source)
from state.definition_errors import DefinitionError, bad_id, valid_id
from state.events import NAME as FIELD_NAME
from state.journey_definitions import journey_source, parse_journey
from state.journeys import Journey
from state.profile import new_profile
from state.time_changes import is_timed
from state.splits import pick

SETTINGS = ("time_zone", "quiet_hours", "caps")
TOP_KEYS = ("segments", "deliveries", "journeys", *SETTINGS)
SEGMENT_KEYS = ("id", "description", "condition", "sql")
MAX_SQL = 20_000  # characters of an audience's SQL
# Event names whose segments-to-judge a definition set keeps at hand (any name beyond is planned
# on each event: producers choose the names).
MAX_PLANS = 1000
DELIVERY_KEYS = ("id", "segment", "trigger", "limits", "destination", "priority", "quiet_hours",
                 "variants")
# Deliveries answer an event on the site or in the app (KARTE's actions): their channel unless
# they name another.
DEFAULT_DESTINATION = "web"
LIMIT_KEYS = {"total": "limits_total", "per_day": "limits_per_day"}
VARIANT_KEYS = ("id", "weight", "payload")
_PRIMITIVES = (type(None), bool, int, float, str)


@dataclass(frozen=True)
class Segment:
    """A segment the stream judges by its condition, or a batch audience whose members the
    sidecar computes with `sql` (then `condition` is None)."""
    id: str
    condition: Condition | None
    description: str | None = None
    sql: str | None = None


@dataclass(frozen=True)
class Variant:
    id: str
    weight: int  # percent; the weights of a delivery sum to 100
    payload: dict = field(default_factory=dict)  # string keys to primitives; read-only


@dataclass(frozen=True)
class Delivery:
    id: str
    segment: str
    trigger: Condition
    limits_total: int | None = None
    limits_per_day: int | None = None
    variants: tuple[Variant, ...] = (Variant("default", 100),)
    destination: str = DEFAULT_DESTINATION
    priority: int = 0  # higher wins a cap's last slot
    quiet_hours: QuietHours | bool | None = None  # own (drop only); False: none; None: default


@dataclass(frozen=True)
class DefinitionSet:
    segments: tuple[Segment, ...] = ()  # dependency order: after every segment referenced
    deliveries: tuple[Delivery, ...] = ()
    journeys: tuple[Journey, ...] = ()  # the latest version of each, in the order applied
    # Every version of each journey by number (the latest included).
    journey_versions: dict[str, dict[int, Journey]] = field(default_factory=dict)
    # The settings (state.activation_rules); None: never given (UTC, no quiet hours, no caps).
    time_zone: TimeZoneRule | None = None
    quiet_hours: dict[str, QuietHours] | None = None
    caps: dict[str, tuple[Cap, ...]] | None = None

    @cached_property
    def rules(self) -> Rules:
        """The sending settings as the journey machine and the deliveries read them."""
        if self.time_zone is None and not self.quiet_hours and not self.caps:
            return NO_RULES
        return Rules(self.time_zone, dict(self.quiet_hours or {}), dict(self.caps or {}))

    @cached_property
    def delivery_quiet_hours(self) -> dict[str, QuietHours]:
        """Each delivery's quiet hours (its own, else its destination's), where it has some."""
        rules = self.rules
        found = {d.id: rules.quiet_for(d.destination, d.quiet_hours) for d in self.deliveries}
        return {k: v for k, v in found.items() if v is not None}

    @cached_property
    def destinations(self) -> frozenset[str]:
        """Where the deliveries and the latest journeys' activation steps send."""
        return frozenset([d.destination for d in self.deliveries]
                         + [s.destination for j in self.journeys for st in j.stages
                            for s in st.steps if s.kind == "activation"])

    @cached_property
    def latest_journeys(self) -> dict[str, Journey]:
        """`journeys` by id; built once per definition set (it is read on every event)."""
        return {j.id: j for j in self.journeys}

    @cached_property
    def audience_ids(self) -> frozenset[str]:
        """The batch audiences: segments whose members the sidecar computes."""
        return frozenset(s.id for s in self.segments if s.condition is None)

    @cached_property
    def segment_inputs(self) -> tuple[tuple[Segment, frozenset[str] | None, frozenset[str]],
                                      ...]:
        """Per segment, in dependency order: the event names whose recording can change its
        condition (None: any input can, or it refers to a batch audience, which changes
        between events), and the segments it refers to. A batch audience has no condition."""
        audiences = self.audience_ids
        plan = []
        for segment in self.segments:
            if segment.condition is None:
                plan.append((segment, frozenset(), frozenset()))
                continue
            refs = frozenset(referenced_segments(segment.condition))
            names = None if refs & audiences else events_read(segment.condition)
            plan.append((segment, names, refs))
        return tuple(plan)

    def segments_an_event_can_change(self, name: str) -> tuple[tuple[str, Callable, frozenset[str],
                                                                    bool], ...]:
        """The segments (dependency order) to look at after an event of `name`, for a profile
        judged under these definitions: (id, test, referenced segments, reads), where `reads`
        says the event can change the condition itself; the others change only when a segment
        they refer to changes. Batch audiences are not among them."""
        plan = self._plans.get(name)
        if plan is None:
            plan = tuple((s.id, s.condition.test, refs, names is None or name in names)
                         for s, names, refs in self.segment_inputs
                         if s.condition is not None and (names is None or name in names or refs))
            if len(self._plans) < MAX_PLANS:
                self._plans[name] = plan
        return plan

    @cached_property
    def timed_segments(self) -> tuple[tuple[Segment, tuple[Comparison, ...]], ...]:
        """The segments whose condition reads the clock (`since.*`, counts `within` a window),
        with those comparisons: the ones that can change with no event
        (state.time_changes)."""
        out = []
        for segment in self.segments:
            if segment.condition is None:
                continue
            timed = tuple(dict.fromkeys(node for _, node in walk(segment.condition)
                                        if isinstance(node, Comparison) and is_timed(node)))
            if timed:
                out.append((segment, timed))
        return tuple(out)

    @cached_property
    def segments_of_no_history(self) -> frozenset[str]:
        """The segments (batch audiences aside) a profile with no events is in: those whose
        condition holds of an empty history (`not: {count.purchase: ...}`). Judged once: with
        no events, no reference reads the clock (counts are 0, times missing)."""
        members: set[str] = set()
        ctx = EvalContext(profile=new_profile(""), event=None, now=0, segments=members)
        for segment in self.segments:
            if segment.condition is not None and segment.condition.test(ctx):
                members.add(segment.id)
        return frozenset(members)

    @cached_property
    def _plans(self) -> dict[str, tuple]:
        return {}

    @cached_property
    def segments_key(self) -> int:
        """A digest of the segments (ids, conditions, order), equal in every process: a profile
        judged under another key has memberships another definition set gave."""
        text = json.dumps([[s.id, to_source(s.condition) if s.condition else None, s.sql]
                           for s in self.segments], sort_keys=True, separators=(",", ":"))
        digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1  # fits a signed long

    @property
    def raw_journeys(self) -> tuple[dict, ...]:
        """The plain-JSON bodies of `journeys`, as they travel on the definitions topic."""
        return tuple(journey_source(j) for j in self.journeys)


# ---------------------------------------------------------------- loading


def load_definitions(source: str | dict, existing: DefinitionSet | None = None) -> DefinitionSet:
    """Parse and validate a definition file (YAML text or parsed dict) over `existing`."""
    try:
        return _load(source, existing)
    except RecursionError:  # chains of thousands of references, or self-containing aliases
        raise DefinitionError([("definitions", "nested or chained too deeply")]) from None


def _load(source, existing: DefinitionSet | None) -> DefinitionSet:
    existing = existing or DefinitionSet()
    doc = _document(source)
    errors: list[tuple[str, str]] = []
    for key in doc:
        if key not in TOP_KEYS:
            errors.append((str(key), f"unknown top-level key (allowed: {', '.join(TOP_KEYS)})"))
    raw_segments = _list(doc, "segments", errors)
    raw_deliveries = _list(doc, "deliveries", errors)
    raw_journeys = _list(doc, "journeys", errors)

    # Ids first, so that a broken item's id still counts as known for references.
    segment_ids = _ids(raw_segments, "segments", "segment", errors)
    _ids(raw_deliveries, "deliveries", "delivery", errors)
    # Only duplicates: parse_journey reports a journey's missing or malformed id itself.
    journey_ids = _ids(raw_journeys, "journeys", "journey", errors, shape=False)
    known = {s.id for s in existing.segments} | set(segment_ids)

    segments = {}  # file position -> Segment
    for i, item in enumerate(raw_segments):
        segment = _segment(item, f"segments[{i}]", errors)
        if segment is not None:
            if segment.condition is not None:
                _check_references(segment.condition, f"segments[{i}].condition", known, errors)
            segments[i] = segment
    deliveries = []
    for i, item in enumerate(raw_deliveries):
        delivery = _delivery(item, f"deliveries[{i}]", known, errors)
        if delivery is not None:
            deliveries.append(delivery)

    merged = _merge(existing.segments, segments.values())
    errors += _cycles(merged, {s.id: f"segments[{i}].condition" for i, s in segments.items()})
    # A jump may lead to any journey of this file or applied before (this one included).
    jumps = set(journey_ids) | set(existing.journey_versions)
    journeys = _journeys(raw_journeys, known, jumps, errors)
    settings = _settings(doc, existing, errors)
    if errors:
        raise DefinitionError(errors)
    latest, versions = _versions(existing, journeys)
    defs = DefinitionSet(segments=_dependency_order(merged),
                         deliveries=_merge(existing.deliveries, deliveries),
                         journeys=latest, journey_versions=versions, **settings)
    errors += _destination_errors(defs)
    if errors:
        raise DefinitionError(errors)
    return defs


def _settings(doc: dict, existing: DefinitionSet, errors) -> dict:
    """The settings the file gives (each replaces the applied one whole), else the applied."""
    out = {name: getattr(existing, name) for name in SETTINGS}

    def error(path: str, problem: str) -> None:
        errors.append((path, problem))

    if "time_zone" in doc:
        out["time_zone"] = parse_time_zone(doc["time_zone"], "time_zone", error,
                                           lambda f: isinstance(f, str)
                                           and FIELD_NAME.fullmatch(f) is not None
                                           and not f.startswith("__"))
    if "quiet_hours" in doc:
        raw = doc["quiet_hours"]
        if not isinstance(raw, dict):
            error("quiet_hours", "expected a mapping of destinations to quiet hours "
                                 "{from: \"21:00\", to: \"08:00\", then: hold|drop}")
        else:
            parsed = {d: parse_quiet_hours(q, f"quiet_hours.{d}", error)
                      for d, q in raw.items()}
            for d, q in parsed.items():
                if q is False:
                    error(f"quiet_hours.{d}", "a destination's quiet hours are a mapping "
                                              "(leave the destination out for none)")
            out["quiet_hours"] = {d: q for d, q in parsed.items() if q}
    if "caps" in doc:
        out["caps"] = parse_caps(doc["caps"], "caps", error)
    return out


def _destination_errors(defs: DefinitionSet) -> list[tuple[str, str]]:
    """Settings for a destination nothing sends to are mistakes (a misspelt channel)."""
    known = defs.destinations
    errors = []
    for name in ("quiet_hours", "caps"):
        for destination in getattr(defs, name) or {}:
            if destination not in known:
                errors.append((f"{name}.{destination}",
                               f"no delivery or activation step sends to {destination!r} "
                               f"(destinations: {', '.join(sorted(known)) or 'none'})"))
    return errors


def _document(source) -> dict:
    if isinstance(source, str):
        try:
            text, source = source, yaml.safe_load(source)
        except Exception as exc:  # PyYAML raises ValueError & co. for values it cannot build
            raise DefinitionError([("definitions", f"not valid YAML: {exc}")]) from None
        nodes = _expanded_size(source, len(text)) if isinstance(source, (dict, list)) else 0
        if nodes > len(text):  # YAML aliases multiply what they refer to
            raise DefinitionError([("definitions", f"the YAML expands to more than {nodes} "
                                                   f"values (from {len(text)} characters): "
                                                   "aliases may not multiply a document")])
    if source is None:  # an empty file defines nothing
        return {}
    if not isinstance(source, dict):
        raise DefinitionError([("definitions", "expected a mapping with segments, deliveries "
                                               f"and journeys, got {type(source).__name__}")])
    return source


def _expanded_size(doc, limit: int) -> int:
    """How many values `doc` holds once its shared parts (YAML aliases) are counted every
    time they appear, counted without expanding them, stopping past `limit`."""
    sizes: dict[int, int] = {}

    def size(node) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = limit + 1  # a node that contains itself is too large
        children = list(node.items()) if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child[1]) + 1 if isinstance(node, dict) else size(child)
            if total > limit:
                break
        sizes[id(node)] = total
        return total
    return size(doc)


def _list(doc: dict, key: str, errors) -> list:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append((key, f"expected a list, got {type(value).__name__}"))
        return []
    return value


def _ids(items: list, where: str, kind: str, errors, shape: bool = True) -> list[str]:
    """The valid ids in file order; reports duplicate ids, and missing and malformed ones
    unless `shape` is false (when the item's own parser reports those)."""
    first: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # reported by the item's own check
        path = f"{where}[{i}].id"
        if "id" not in item or not valid_id(item["id"]):
            if shape:
                errors.append((path, f"missing: every {kind} needs an id"
                               if "id" not in item else bad_id(item["id"])))
        elif item["id"] in first:
            errors.append((path, f"duplicate {kind} id {item['id']!r} "
                                 f"(also at {first[item['id']]})"))
        else:
            first[item["id"]] = f"{where}[{i}]"
    return list(first)


def _mapping(item, path: str, allowed: tuple[str, ...], what: str, errors) -> bool:
    """True when `item` is a mapping with only allowed keys; reports otherwise."""
    if not isinstance(item, dict):
        errors.append((path, f"expected a mapping ({what}), got {type(item).__name__}"))
        return False
    unknown = [str(k) for k in item if k not in allowed]
    if unknown:
        errors.append((path, f"unknown key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})"))
    return True


def _condition(item: dict, key: str, path: str, errors) -> Condition | None:
    if key not in item:
        errors.append((f"{path}.{key}", "missing"))
        return None
    try:
        return parse_condition(item[key], f"{path}.{key}")
    except ConditionError as exc:
        errors.append((exc.path, exc.problem))
        return None


def _check_references(cond: Condition, path: str, known: set[str], errors) -> None:
    for where, node in walk(cond, path):
        if isinstance(node, InSegment) and node.segment not in known:
            errors.append((where, f"unknown segment {node.segment!r}"))


def _segment(item, path: str, errors) -> Segment | None:
    if not _mapping(item, path, SEGMENT_KEYS, "id, condition", errors):
        return None
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        errors.append((f"{path}.description", "expected text"))
    if "sql" in item:
        return _audience(item, path, description, errors)
    cond = _condition(item, "condition", path, errors)
    if cond is None or not valid_id(item.get("id")):
        return None
    # A segment is a property of the profile; one event's values would make it flicker.
    for where, node in walk(cond, f"{path}.condition"):
        if isinstance(node, Comparison) and isinstance(node.ref, EVENT_REFERENCES):
            errors.append((where, f"a segment judges the profile, not one event: "
                                  f"{node.ref.text!r} (event.* and request.* belong in "
                                  "delivery triggers)"))
            return None
    return Segment(item["id"], cond, description if isinstance(description, str) else None)


def _audience(item, path: str, description, errors) -> Segment | None:
    from state.sql import read_only_select_problem

    if "condition" in item:
        errors.append((path, "a segment has a condition or sql, not both"))
        return None
    text = item["sql"]
    if not isinstance(text, str) or not text.strip():
        errors.append((f"{path}.sql", "expected the text of a SELECT"))
        return None
    if len(text) > MAX_SQL:
        errors.append((f"{path}.sql", f"longer than {MAX_SQL} characters"))
        return None
    problem = read_only_select_problem(text)
    if problem:
        errors.append((f"{path}.sql", problem))
        return None
    if not valid_id(item.get("id")):
        return None
    return Segment(item["id"], None, description if isinstance(description, str) else None,
                   sql=text)


def _delivery(item, path: str, known: set[str], errors) -> Delivery | None:
    if not _mapping(item, path, DELIVERY_KEYS, "id, segment, trigger", errors):
        return None
    target = item.get("segment")
    if target is None:
        errors.append((f"{path}.segment", "missing: a delivery needs a target segment"))
    elif not valid_id(target):
        errors.append((f"{path}.segment", bad_id(target)))
    elif target not in known:
        errors.append((f"{path}.segment", f"unknown segment {target!r}"))
    trigger = _condition(item, "trigger", path, errors)
    if trigger is not None:
        _check_references(trigger, f"{path}.trigger", known, errors)
    limits = _limits(item.get("limits"), f"{path}.limits", errors)
    variants = _variants(item.get("variants"), f"{path}.variants", errors)
    before = len(errors)
    sending = _sending(item, path, errors)
    if trigger is None or limits is None or variants is None or not valid_id(item.get("id")) \
            or not valid_id(target) or len(errors) > before:
        return None
    return Delivery(item["id"], target, trigger, variants=variants, **limits, **sending)


def _sending(item: dict, path: str, errors) -> dict:
    """A delivery's destination, priority and own quiet hours, where it gives them."""
    def error(where: str, problem: str) -> None:
        errors.append((where, problem))

    out = {}
    if "destination" in item:
        destination = item["destination"]
        if not valid_id(destination):
            error(f"{path}.destination", bad_id(destination))
        out["destination"] = destination
    if "priority" in item:
        out["priority"] = parse_priority(item["priority"], f"{path}.priority", error)
    if "quiet_hours" in item:
        out["quiet_hours"] = parse_quiet_hours(item["quiet_hours"], f"{path}.quiet_hours",
                                               error, may_hold=False)
    return out


def _limits(raw, path: str, errors) -> dict | None:
    if raw is None:
        return {}
    if not _mapping(raw, path, tuple(LIMIT_KEYS), "total, per_day", errors):
        return None
    limits, ok = {}, True
    for key, attr in LIMIT_KEYS.items():
        if key not in raw:
            continue
        value = raw[key]
        if type(value) is not int or value < 1:
            errors.append((f"{path}.{key}", f"expected a positive integer, got {value!r}"))
            ok = False
        limits[attr] = value
    return limits if ok and set(raw) <= set(LIMIT_KEYS) else None


def _variants(raw, path: str, errors) -> tuple[Variant, ...] | None:
    if raw is None:
        return (Variant("default", 100, {}),)
    if not isinstance(raw, list) or not raw:
        errors.append((path, f"expected a non-empty list of variants, got {raw!r}"[:120]))
        return None
    before = len(errors)
    variants, seen = [], {}
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not _mapping(item, where, VARIANT_KEYS, "id, weight, payload", errors):
            continue
        vid, weight, payload = item.get("id"), item.get("weight"), item.get("payload", {})
        if not valid_id(vid):
            errors.append((f"{where}.id", "missing" if vid is None else bad_id(vid)))
        elif vid in seen:
            errors.append((f"{where}.id", f"duplicate variant id {vid!r} (also at {seen[vid]})"))
        else:
            seen[vid] = where
        if type(weight) is not int or weight < 0:
            errors.append((f"{where}.weight", f"expected an integer >= 0, got {weight!r}"))
        if not isinstance(payload, dict) or not all(
                isinstance(k, str) and type(v) in _PRIMITIVES for k, v in payload.items()):
            errors.append((f"{where}.payload", "expected a mapping of text keys to values "
                                               "(text, numbers, true/false or null)"))
        variants.append(Variant(vid, weight, payload))
    if len(errors) > before:
        return None
    total = sum(v.weight for v in variants)
    if total != 100:
        errors.append((path, f"weights sum to {total}; they must sum to exactly 100"))
        return None
    return tuple(variants)


def _merge(old: Iterable, new: Iterable) -> tuple:
    """`new` over `old` by id: a replaced item keeps its place, new items go last."""
    items = {item.id: item for item in old}
    for item in new:
        items[item.id] = item
    return tuple(items.values())


def _journeys(raw: list, segments: set[str], journeys: set[str], errors) -> list[Journey]:
    """Each journey of the file (as version 1; `_versions` numbers them), or its errors."""
    parsed = []
    for i, item in enumerate(raw):
        try:
            parsed.append(parse_journey(item, 1, f"journeys[{i}]", segments, journeys))
        except DefinitionError as exc:
            errors += exc.errors
    return parsed


def _versions(existing: DefinitionSet, loaded: list[Journey]):
    """The latest journeys and every version: a changed journey becomes a new version."""
    versions = {jid: dict(by_number) for jid, by_number in existing.journey_versions.items()}
    latest = []
    for journey in loaded:
        known = versions.setdefault(journey.id, {})
        journey = _next_version(journey, known)
        known[journey.version] = journey
        latest.append(journey)
    return _merge(existing.journeys, latest), versions


def _next_version(journey: Journey, known: dict[int, Journey]) -> Journey:
    """The latest version when the journey is the same, else one more than the latest."""
    if not known:
        return replace(journey, version=1)
    top = max(known)
    # Compared as parsed, not as text: "7d" and "168h", or reordered keys, change nothing.
    if replace(journey, version=top) == known[top]:
        return known[top]
    return replace(journey, version=top + 1)


def _references(cond: Condition) -> list[str]:
    """Segments a condition references, in order of appearance (for readable cycles)."""
    if cond is None:  # a batch audience refers to no segment
        return []
    return list(dict.fromkeys(n.segment for _, n in walk(cond) if isinstance(n, InSegment)))


def _cycles(segments: tuple[Segment, ...], paths: dict[str, str]) -> list[tuple[str, str]]:
    """One error per cycle of segment references, at a segment of this file in the cycle."""
    deps = {s.id: _references(s.condition) for s in segments}
    found, errors = set(), []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(sid: str, stack: list[str]) -> None:
        state[sid] = 1
        stack.append(sid)
        for dep in deps.get(sid, ()):
            if dep not in deps:
                continue  # unknown: reported elsewhere
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):]
                if frozenset(cycle) not in found:
                    found.add(frozenset(cycle))
                    errors.append(_cycle_error(cycle, paths))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[sid] = 2

    for s in segments:
        if s.id not in state:
            visit(s.id, [])
    return errors


def _cycle_error(cycle: list[str], paths: dict[str, str]) -> tuple[str, str]:
    # Start the cycle at the first of its segments that this file defines: that is the edit.
    start = next((i for i, sid in enumerate(cycle) if sid in paths), 0)
    cycle = cycle[start:] + cycle[:start]
    return (paths.get(cycle[0], "segments"),
            f"segments reference each other in a cycle: {' -> '.join(cycle + cycle[:1])}")


def _dependency_order(segments: tuple[Segment, ...]) -> tuple[Segment, ...]:
    """Each segment after those it references; otherwise as early as its position allows."""
    position = {s.id: i for i, s in enumerate(segments)}
    waiting = {s.id: {d for d in _references(s.condition) if d in position}
               for s in segments}
    users: dict[str, list[str]] = {s.id: [] for s in segments}
    for sid, deps in waiting.items():
        for dep in deps:
            users[dep].append(sid)
    ready = [position[sid] for sid, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    ordered = []
    while ready:
        segment = segments[heapq.heappop(ready)]
        ordered.append(segment)
        for user in users[segment.id]:
            waiting[user].discard(segment.id)
            if not waiting[user]:
                heapq.heappush(ready, position[user])
    return tuple(ordered)


# ---------------------------------------------------------------- records


def to_records(defs: DefinitionSet, all_versions: bool = False) -> list[tuple[str, dict]]:
    """One (key, plain-JSON definition) per item, for the compacted definitions topic; with
    `all_versions`, also every journey version under its own key `journey:<id>:v<N>`."""
    records = [(f"segment:{s.id}", _segment_source(s)) for s in defs.segments]
    records += [(f"delivery:{d.id}", _delivery_source(d)) for d in defs.deliveries]
    records += [(f"journey:{j.id}", journey_source(j)) for j in defs.journeys]
    records += [(f"settings:{name}", {"id": name, name: source})
                for name, source in _settings_source(defs).items()]
    if all_versions:
        records += [(f"journey:{jid}:v{n}", journey_source(j))
                    for jid, by_number in defs.journey_versions.items()
                    for n, j in sorted(by_number.items())]
    return records


_JOURNEY_VERSION = re.compile(r"v([1-9][0-9]*)")


def from_records(records: Iterable[tuple[str, dict | None]]) -> DefinitionSet:
    """Rebuild (and re-validate) definitions from records; a None value deletes its key.

    Journey keys are `journey:<id>:v<N>` (one per version, all kept) or, as written before
    versions, `journey:<id>`: version 1, and ignored once the journey has versioned keys.
    """
    latest: dict[str, dict | None] = {}
    errors = []
    for key, value in records:
        kind, _, rid = key.partition(":")
        jid, sep, version = rid.partition(":") if kind == "journey" else (rid, "", "")
        if kind not in ("segment", "delivery", "journey", "settings"):
            errors.append((key, "unknown record kind (expected segment:, delivery:, journey: "
                                "or settings:)"))
        elif kind == "settings" and rid not in SETTINGS:
            errors.append((key, f"unknown setting (settings are {', '.join(SETTINGS)})"))
        elif sep and not _JOURNEY_VERSION.fullmatch(version):
            errors.append((key, "expected journey:<id> or journey:<id>:v<N> (N from 1)"))
        elif value is not None and not isinstance(value, dict):
            errors.append((key, f"expected a mapping, got {type(value).__name__}"))
        elif value is not None and value.get("id") != jid:
            errors.append((key, f"the record's definition has id {value.get('id')!r}"))
        latest.pop(key, None)  # a rewritten key moves to its latest position
        latest[key] = value
    if errors:
        raise DefinitionError(errors)
    doc: dict[str, list] = {"segments": [], "deliveries": []}
    plural = {"segment": "segments", "delivery": "deliveries"}
    for key, value in latest.items():
        kind, _, rid = key.partition(":")
        if value is not None and kind == "settings":
            doc[rid] = value.get(rid)
        elif value is not None and kind != "journey":
            doc[plural[kind]].append(value)
    return _with_journey_versions(doc, _journey_bodies(latest))


def _journey_bodies(latest: dict[str, dict | None]) -> dict[str, dict[int, tuple[str, dict]]]:
    """{journey id: {version: (record key, body)}}, ordered by each latest version's record."""
    versioned: dict[str, dict[int, tuple[str, dict]]] = {}
    unversioned: dict[str, tuple[str, dict]] = {}
    for key, value in latest.items():
        _, _, rid = key.partition(":")
        jid, _, version = rid.partition(":")
        if not key.startswith("journey:") or value is None:
            continue
        if version:
            versioned.setdefault(jid, {})[int(version[1:])] = (key, value)
        else:
            unversioned[jid] = (key, value)
    bodies = {jid: {1: record} for jid, record in unversioned.items() if jid not in versioned}
    bodies.update(versioned)
    position = {key: i for i, key in enumerate(latest)}

    def written(item) -> int:  # where the journey's latest version was written
        by_number = item[1]
        return position[by_number[max(by_number)][0]]

    return dict(sorted(bodies.items(), key=written))


def _with_journey_versions(doc: dict, bodies: dict[str, dict[int, tuple[str, dict]]]):
    """Load `doc` with the latest journey versions, then check and add the older ones."""
    doc["journeys"] = [by_number[max(by_number)][1] for by_number in bodies.values()]
    errors: list[tuple[str, str]] = []
    try:
        defs = load_definitions(doc)
    except DefinitionError as exc:
        # Name the record rather than its place in a list that only this function made.
        keys = [by_number[max(by_number)][0] for by_number in bodies.values()]
        errors += [(_relabel(path, keys), problem) for path, problem in exc.errors]
    versions = _old_versions(bodies, errors)
    if errors:
        raise DefinitionError(errors)
    latest = tuple(replace(j, version=max(bodies[j.id])) for j in defs.journeys)
    for journey in latest:
        versions.setdefault(journey.id, {})[journey.version] = journey
    return replace(defs, journeys=latest,
                   journey_versions={jid: versions[jid] for jid in bodies})


def _old_versions(bodies: dict[str, dict[int, tuple[str, dict]]],
                  errors) -> dict[str, dict[int, Journey]]:
    """Every version but the latest of each journey, in version order."""
    versions: dict[str, dict[int, Journey]] = {}
    for jid, by_number in bodies.items():
        versions[jid] = {}
        for n, (key, body) in sorted(by_number.items())[:-1]:
            # Old versions skip the reference checks: a segment or journey that an old
            # version used may be gone, and must not invalidate the definitions of today.
            try:
                versions[jid][n] = parse_journey(body, n, key, check_references=False)
            except DefinitionError as exc:
                errors += exc.errors
    return versions


def _relabel(path: str, keys: list[str]) -> str:
    """journeys[2].stages[0] -> journey:<id>:v<N>.stages[0], after the record's key."""
    match = re.match(r"journeys\[([0-9]+)\]", path)
    if match is None:
        return path
    return keys[int(match.group(1))] + path[match.end():]


def _segment_source(s: Segment) -> dict:
    source = ({"id": s.id, "sql": s.sql} if s.condition is None
              else {"id": s.id, "condition": to_source(s.condition)})
    if s.description is not None:
        source["description"] = s.description
    return source


def _settings_source(defs: DefinitionSet) -> dict:
    """The settings given, as plain JSON (a setting never given has no record)."""
    out = {}
    if defs.time_zone is not None:
        out["time_zone"] = defs.time_zone.source()
    if defs.quiet_hours is not None:
        out["quiet_hours"] = {d: q.source() for d, q in defs.quiet_hours.items()}
    if defs.caps is not None:
        out["caps"] = caps_source(defs.caps)
    return out


def _delivery_source(d: Delivery) -> dict:
    source = {"id": d.id, "segment": d.segment, "trigger": to_source(d.trigger)}
    limits = {key: getattr(d, attr) for key, attr in LIMIT_KEYS.items()
              if getattr(d, attr) is not None}
    if limits:
        source["limits"] = limits
    if d.destination != DEFAULT_DESTINATION:
        source["destination"] = d.destination
    if d.priority:
        source["priority"] = d.priority
    if d.quiet_hours is not None:
        source["quiet_hours"] = quiet_source(d.quiet_hours)
    source["variants"] = [{"id": v.id, "weight": v.weight, "payload": dict(v.payload)}
                          for v in d.variants]
    return source


# ---------------------------------------------------------------- A/B split


def choose_variant(delivery: Delivery, profile_id: str) -> Variant:
    """The same variant for a profile every time, on every worker and after every restart."""
    return pick(delivery.variants, delivery.id, profile_id)
