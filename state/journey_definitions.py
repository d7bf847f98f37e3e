"""Journeys from definition files: the YAML shape, checked as a whole, into state.journeys.

    journeys:
      - id: onboarding
        entry: {segment: members}          # a condition (event.* and request.* allowed)
        reentry: unless_goal               # none (default) | unless_goal | always
        cooldown: 7d                       # only with unless_goal / always
        goal: {segment: buyers}
        exits: [{segment: churned}]
        require_wait_after_activation: true
        stages:
          - id: welcome
            entry: {...}                   # optional: entry, milestone, exits
            steps:
              - {id: hello, kind: activation, destination: email, payload: {t: w}, next: pause}
              - {id: pause, kind: wait, duration: 1d, next: morning}
              - {id: morning, kind: wait, at: "09:00", next: tip}   # local time (with days too)
              - id: tip
                kind: activation
                destination: push
                priority: 5                                         # wins a cap's last slot
                quiet_hours: {from: "21:00", to: "08:00", then: hold}   # or false
                next: bye
              - {id: bye, kind: end}

`parse_journey` reports every problem of one journey at once, as (path, problem) pairs in a
DefinitionError, and builds the typed Journey only when there are none. `journey_source` is
the inverse: the plain-JSON body that travels on the definitions topic.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from state.conditions import Condition, ConditionError, InSegment, parse_condition, to_source, walk
# Same wording for ids as segments and deliveries.
from state.definition_errors import DefinitionError, bad_id, valid_id
from state.durations import format_duration, parse_duration
from state.journeys import REENTRY_MODES, STEP_KINDS, WEEKDAYS, Branch, Journey, Stage, Step
from state.activation_rules import parse_priority, parse_quiet_hours, quiet_source
from state.local_time import format_time_of_day, parse_time_of_day

JOURNEY_KEYS = ("id", "description", "entry", "reentry", "cooldown", "goal", "exits",
                "require_wait_after_activation", "stages")
STAGE_KEYS = ("id", "entry", "milestone", "exits", "steps")
STEP_KEYS = {
    "wait": ("id", "kind", "next", "duration", "until", "condition", "timeout", "on_timeout",
             "days", "at"),
    "activation": ("id", "kind", "destination", "payload", "priority", "quiet_hours", "next"),
    "decision": ("id", "kind", "branches", "else"),
    "ab_test": ("id", "kind", "variants"),
    "merge": ("id", "kind", "next"),
    "jump": ("id", "kind", "stage", "journey"),
    "end": ("id", "kind"),
}
BRANCH_KEYS = ("id", "condition", "next")
VARIANT_KEYS = ("id", "weight", "next")
WAIT_KINDS = ("duration", "until", "condition", "days", "at")
# Where a step goes when it has no `next`: said instead of a bare "unknown key".
NO_NEXT = {
    "end": "an end step is the last step: it has no next",
    "jump": "a jump step leaves for its stage or journey: it has no next",
    "decision": "a decision step continues through its branches and else, not next",
    "ab_test": "an ab_test step continues through its variants, not next",
}
_PRIMITIVES = (type(None), bool, int, float, str)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class _Check:
    """What one journey may reference, and the problems found so far."""

    segments: frozenset
    journeys: frozenset
    check_references: bool
    errors: list = field(default_factory=list)

    def error(self, path: str, problem: str) -> None:
        self.errors.append((path, problem))


def parse_journey(raw: dict, version: int = 1, path: str = "journeys[0]",
                  segments: set[str] = frozenset(), journeys: set[str] = frozenset(),
                  *, check_references: bool = True) -> Journey:
    """The Journey of one definition, or DefinitionError listing every (path, problem).

    `segments` and `journeys` are the ids that conditions and jumps may reference (the caller
    includes this journey's own id). `check_references=False` skips both reference checks,
    for old versions whose segments or journeys may since have gone.
    """
    check = _Check(frozenset(segments), frozenset(journeys), check_references)
    journey = _journey(raw, version, path, check)
    if check.errors:
        raise DefinitionError(check.errors)
    return journey


# ---------------------------------------------------------------- shape


def _journey(raw, version: int, path: str, check: _Check) -> Journey | None:
    if not _mapping(raw, path, JOURNEY_KEYS, "a journey", check):
        return None
    jid = _id(raw, path, "journey", check)
    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        check.error(f"{path}.description", f"expected text, got {_type(description)}")
    entry = _required_condition(raw, "entry", path, "entry criteria", check)
    goal = _optional_condition(raw, "goal", path, check)
    exits = _conditions(raw, "exits", path, check)
    reentry, cooldown = _reentry(raw, path, check)
    require_wait = _flag(raw, "require_wait_after_activation", path, check)
    stages = _stages(raw, path, check)
    _check_graph(stages, raw, check, require_wait)
    if check.errors:
        return None
    return Journey(jid, version, entry, tuple(s.stage for s in stages), reentry, cooldown,
                   goal, exits, description)


def _reentry(raw: dict, path: str, check: _Check) -> tuple[str, int | None]:
    reentry = raw.get("reentry", "none")
    if reentry not in REENTRY_MODES:
        check.error(f"{path}.reentry", f"expected one of {', '.join(REENTRY_MODES)}, "
                                       f"got {reentry!r}")
    elif reentry == "unless_goal" and "goal" not in raw:
        # Without a goal, "unless the goal was reached" silently means "always".
        check.error(f"{path}.reentry", "reentry unless_goal needs a goal")
    cooldown = None
    if "cooldown" in raw:
        cooldown = _duration(raw["cooldown"], f"{path}.cooldown", check)
        if reentry == "none":
            check.error(f"{path}.cooldown", "a cooldown needs reentry unless_goal or always "
                                            "(without re-entry nobody comes back)")
    return reentry, cooldown


@dataclass(frozen=True)
class _Parsed:
    """A stage as far as it parsed: `complete` when every one of its steps did."""

    stage: Stage
    path: str
    complete: bool


def _stages(raw: dict, path: str, check: _Check) -> list[_Parsed]:
    items = _non_empty_list(raw, "stages", path, "stage", check)
    _duplicates(items, [f"{path}.stages[{i}]" for i in range(len(items))], "stage", check)
    # Step ids are unique across the whole journey, not only within a stage.
    steps = [(f"{path}.stages[{i}].steps[{j}]", step)
             for i, stage in enumerate(items) if isinstance(stage, dict)
             for j, step in enumerate(_as_list(stage.get("steps")))]
    _duplicates([s for _, s in steps], [p for p, _ in steps], "step", check)
    parsed = (_stage(item, f"{path}.stages[{i}]", check) for i, item in enumerate(items))
    return [p for p in parsed if p is not None]


def _stage(raw, path: str, check: _Check) -> _Parsed | None:
    if not _mapping(raw, path, STAGE_KEYS, "a stage", check):
        return None
    sid = _id(raw, path, "stage", check)
    entry = _optional_condition(raw, "entry", path, check)
    milestone = _optional_condition(raw, "milestone", path, check)
    exits = _conditions(raw, "exits", path, check)
    items = _non_empty_list(raw, "steps", path, "step", check)
    steps = [_step(item, f"{path}.steps[{j}]", check) for j, item in enumerate(items)]
    parsed = tuple(s for s in steps if s is not None)
    return _Parsed(Stage(sid, parsed, entry, milestone, exits), path,
                   complete=bool(parsed) and len(parsed) == len(steps))


def _step(raw, path: str, check: _Check) -> Step | None:
    """The step as far as it is valid (None fields where it is not); None without a kind."""
    if not isinstance(raw, dict):
        check.error(path, f"expected a step (a mapping with id and kind), got {_type(raw)}")
        return None
    sid = _id(raw, path, "step", check)
    kind = raw.get("kind")
    if kind not in STEP_KINDS:
        check.error(f"{path}.kind", ("missing" if kind is None else f"unknown step kind "
                                     f"{kind!r}") + f" (one of {', '.join(STEP_KINDS)})")
        return None
    what = f"{_article(kind)} {kind} step"
    if "next" in raw and kind in NO_NEXT:
        check.error(f"{path}.next", NO_NEXT[kind])
    _unknown_keys(raw, STEP_KEYS[kind], path, what, check, ignore=("next",))
    fields = _STEP_PARSERS[kind](raw, path, check)
    if kind not in NO_NEXT:
        fields["next"] = _step_ref(raw, "next", path, what, check)
    return Step(sid, kind, **fields)


def _wait(raw: dict, path: str, check: _Check) -> dict:
    given = [k for k in WAIT_KINDS if k in raw]
    if len(given) != 1 and given != ["days", "at"]:
        check.error(path, f"a wait step needs exactly one of {', '.join(WAIT_KINDS)}, or "
                          f"days with at" + (f" (got {', '.join(given)})" if given else ""))
    fields: dict = {}
    if "at" in raw:
        try:
            fields["at"] = parse_time_of_day(raw["at"])
        except ValueError as exc:
            check.error(f"{path}.at", str(exc))
    if "duration" in raw:
        fields["duration"] = _duration(raw["duration"], f"{path}.duration", check)
    if "until" in raw:
        fields["until"] = _until(raw["until"], f"{path}.until", check)
    if "days" in raw:
        fields["days"] = _days(raw["days"], f"{path}.days", check)
    if "condition" in raw:
        fields["condition"] = _optional_condition(raw, "condition", path, check)
        fields["on_timeout"] = _step_ref(raw, "on_timeout", path, "a condition wait", check)
        if "timeout" not in raw:
            check.error(f"{path}.timeout", "missing: a condition wait needs a timeout")
        else:
            fields["timeout"] = _duration(raw["timeout"], f"{path}.timeout", check)
    else:
        for key in ("timeout", "on_timeout"):
            if key in raw:
                check.error(f"{path}.{key}", f"{key} belongs to a condition wait only")
    return fields


def _activation(raw: dict, path: str, check: _Check) -> dict:
    destination = raw.get("destination")
    if destination is None:
        check.error(f"{path}.destination", "missing: an activation needs a destination")
    elif not valid_id(destination):
        check.error(f"{path}.destination", bad_id(destination))
    payload = raw.get("payload", {})
    if not isinstance(payload, dict) or not all(
            isinstance(k, str) and type(v) in _PRIMITIVES
            and not (type(v) is float and not math.isfinite(v))  # NaN is not equal to itself
            for k, v in payload.items()):
        check.error(f"{path}.payload", "expected a mapping of text keys to values "
                                       "(text, finite numbers, true/false or null)")
        payload = {}
    fields = {"destination": destination, "payload": dict(payload)}
    if "priority" in raw:
        fields["priority"] = parse_priority(raw["priority"], f"{path}.priority", check.error)
    if "quiet_hours" in raw:
        fields["quiet_hours"] = parse_quiet_hours(raw["quiet_hours"], f"{path}.quiet_hours",
                                                  check.error)
    return fields


def _decision(raw: dict, path: str, check: _Check) -> dict:
    branches = _branches(raw, "branches", BRANCH_KEYS, path, check)
    if raw.get("branches") == []:
        check.error(f"{path}.branches", "a decision needs at least one branch")
    # `else` is required: a profile that matches no branch must still go somewhere.
    otherwise = _step_ref(raw, "else", path, "a decision step", check)
    return {"branches": branches, "otherwise": otherwise}


def _ab_test(raw: dict, path: str, check: _Check) -> dict:
    variants = _branches(raw, "variants", VARIANT_KEYS, path, check)
    if "variants" in raw and isinstance(raw["variants"], list):
        if len(raw["variants"]) < 2:
            check.error(f"{path}.variants", f"an ab_test needs at least 2 variants, "
                                            f"got {len(raw['variants'])}")
        weights = [v.weight for v in variants]
        if all(type(w) is int for w in weights) and len(weights) == len(raw["variants"]) \
                and sum(weights) != 100:
            check.error(f"{path}.variants",
                        f"weights sum to {sum(weights)}; they must sum to exactly 100")
    return {"branches": variants}


def _merge(raw: dict, path: str, check: _Check) -> dict:
    return {}


def _jump(raw: dict, path: str, check: _Check) -> dict:
    given = [k for k in ("stage", "journey") if k in raw]
    if len(given) != 1:
        check.error(path, "a jump step needs exactly one of stage, journey"
                          + (" (got both)" if given else ""))
    target = {}
    for key, attr in (("stage", "to_stage"), ("journey", "to_journey")):
        if key in raw:
            value = raw[key]
            if not valid_id(value):
                check.error(f"{path}.{key}", bad_id(value))
            elif key == "journey" and check.check_references and value not in check.journeys:
                check.error(f"{path}.journey", f"unknown journey {value!r}")
            target[attr] = value if valid_id(value) else None
    return target  # an unknown stage is found with the other references (_check_graph)


def _end(raw: dict, path: str, check: _Check) -> dict:
    return {}


_STEP_PARSERS = {"wait": _wait, "activation": _activation, "decision": _decision,
                 "ab_test": _ab_test, "merge": _merge, "jump": _jump, "end": _end}


def _branches(raw: dict, key: str, allowed: tuple, path: str, check: _Check) -> tuple:
    """Decision branches (condition) or A/B variants (weight), each with an id and a next."""
    if key not in raw:
        check.error(f"{path}.{key}", f"missing: {_article(raw['kind'])} {raw['kind']} step "
                                     f"needs {key}")
        return ()
    items = raw[key]
    if not isinstance(items, list):
        check.error(f"{path}.{key}", f"expected a list, got {_type(items)}")
        return ()
    what = "branch" if key == "branches" else "variant"
    _duplicates(items, [f"{path}.{key}[{i}]" for i in range(len(items))], what, check)
    parsed = []
    for i, item in enumerate(items):
        where = f"{path}.{key}[{i}]"
        if not _mapping(item, where, allowed, f"a {what}", check):
            continue
        bid = _id(item, where, what, check)
        nxt = _step_ref(item, "next", where, f"a {what}", check)
        if key == "branches":
            parsed.append(Branch(bid, nxt, condition=_required_condition(
                item, "condition", where, "a condition", check)))
        else:
            parsed.append(Branch(bid, nxt, weight=_weight(item, where, check)))
    return tuple(parsed)


def _weight(item: dict, path: str, check: _Check) -> int | None:
    weight = item.get("weight")
    if type(weight) is not int or weight < 0:
        check.error(f"{path}.weight", "missing: a variant needs a weight" if weight is None
                    else f"expected an integer >= 0, got {weight!r}")
        return None
    return weight


# ---------------------------------------------------------------- values


def _mapping(raw, path: str, allowed: tuple, what: str, check: _Check) -> bool:
    if not isinstance(raw, dict):
        check.error(path, f"expected {what} (a mapping), got {_type(raw)}")
        return False
    _unknown_keys(raw, allowed, path, what, check)
    return True


def _unknown_keys(raw: dict, allowed: tuple, path: str, what: str, check: _Check,
                  ignore: tuple = ()) -> None:
    unknown = [repr(str(k)) for k in raw if k not in allowed and k not in ignore]
    if unknown:
        check.error(path, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"for {what} (allowed: {', '.join(allowed)})")


def _id(raw: dict, path: str, what: str, check: _Check):
    value = raw.get("id")
    if value is None:
        check.error(f"{path}.id", f"missing: every {what} needs an id")
    elif not valid_id(value):
        check.error(f"{path}.id", bad_id(value))
    return value


def _duplicates(items: list, paths: list[str], what: str, check: _Check) -> None:
    """Reports each id seen before, at the later item, naming the earlier one."""
    first: dict[str, str] = {}
    for item, here in zip(items, paths):
        rid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(rid, str):
            continue
        if rid in first:
            check.error(f"{here}.id", f"duplicate {what} id {rid!r} (also at {first[rid]})")
        else:
            first[rid] = here


def _non_empty_list(raw: dict, key: str, path: str, what: str, check: _Check) -> list:
    if key not in raw:
        check.error(f"{path}.{key}", f"missing: a non-empty list of {what}s")
        return []
    value = raw[key]
    if not isinstance(value, list) or not value:
        check.error(f"{path}.{key}", f"expected a non-empty list of {what}s, "
                                     f"got {_type(value) if value != [] else 'an empty list'}")
        return []
    return value


def _as_list(value) -> list:
    return value if isinstance(value, list) else []


def _flag(raw: dict, key: str, path: str, check: _Check) -> bool:
    value = raw.get(key, False)
    if type(value) is not bool:
        check.error(f"{path}.{key}", f"expected true or false, got {value!r}")
        return False
    return value


def _step_ref(raw: dict, key: str, path: str, what: str, check: _Check) -> str | None:
    """The id of a step named by `key` (checked against the stage later, in _check_graph)."""
    if key not in raw:
        check.error(f"{path}.{key}", f"missing: {what} needs {key}")
        return None
    value = raw[key]
    if not isinstance(value, str):
        check.error(f"{path}.{key}", f"expected a step id, got {value!r}")
        return None
    return value


def _required_condition(raw: dict, key: str, path: str, what: str, check: _Check):
    if key not in raw:
        check.error(f"{path}.{key}", f"missing: {what}")
        return None
    return _condition(raw[key], f"{path}.{key}", check)


def _optional_condition(raw: dict, key: str, path: str, check: _Check) -> Condition | None:
    return _condition(raw[key], f"{path}.{key}", check) if key in raw else None


def _conditions(raw: dict, key: str, path: str, check: _Check) -> tuple:
    items = raw.get(key, [])
    if not isinstance(items, list):
        check.error(f"{path}.{key}", f"expected a list of conditions, got {_type(items)}")
        return ()
    parsed = (_condition(c, f"{path}.{key}[{i}]", check) for i, c in enumerate(items))
    return tuple(c for c in parsed if c is not None)


def _condition(raw, path: str, check: _Check) -> Condition | None:
    try:
        cond = parse_condition(raw, path)
    except ConditionError as exc:
        check.error(exc.path, exc.problem)
        return None
    if check.check_references:
        for where, node in walk(cond, path):
            if isinstance(node, InSegment) and node.segment not in check.segments:
                check.error(where, f"unknown segment {node.segment!r}")
    return cond


def _duration(raw, path: str, check: _Check) -> int | None:
    try:
        ms = parse_duration(raw)
    except ValueError as exc:
        check.error(path, str(exc))
        return None
    if ms == 0:
        check.error(path, "must be longer than 0")
        return None
    return ms


LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time ISO 8601 writes


def _until(raw, path: str, check: _Check) -> int | None:
    """Milliseconds since the epoch, from an ISO 8601 time with its zone or from ms."""
    if type(raw) is int and raw >= 0:
        if raw > LAST_MS:
            check.error(path, "after 9999-12-31: no time so late can be written down")
            return None
        return raw
    moment = raw  # YAML reads an unquoted timestamp as a datetime already
    if isinstance(raw, str):
        try:
            moment = dt.datetime.fromisoformat(raw)
        except ValueError:
            moment = None
    if not isinstance(moment, dt.datetime):
        check.error(path, f"expected an ISO 8601 time such as 2026-12-24T00:00:00Z or "
                          f"milliseconds since 1970, got {raw!r}")
        return None
    if moment.tzinfo is None:
        # A local time would depend on where the worker runs.
        check.error(path, f"{raw!s} has no time zone: add Z for UTC")
        return None
    ms = (moment - _EPOCH) // dt.timedelta(milliseconds=1)
    if ms < 0:
        check.error(path, f"{raw!s} is before 1970")
        return None
    return ms


def _days(raw, path: str, check: _Check) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        check.error(path, f"expected a non-empty list of {', '.join(WEEKDAYS)}, got {raw!r}")
        return ()
    bad = [d for d in raw if d not in WEEKDAYS]
    if bad:
        check.error(path, f"unknown day{'s' if len(bad) > 1 else ''} "
                          f"{', '.join(map(repr, bad))} (days are {', '.join(WEEKDAYS)})")
    repeated = sorted({d for d in raw if raw.count(d) > 1 and d in WEEKDAYS}, key=WEEKDAYS.index)
    if repeated:
        check.error(path, f"{', '.join(repeated)} given more than once")
    # Sorted: the set of days is what counts, whatever order the file lists them in.
    return tuple(sorted({WEEKDAYS.index(d) for d in raw if d in WEEKDAYS}))


def _type(value) -> str:
    return type(value).__name__


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


# ---------------------------------------------------------------- graph


def _targets(step: Step, path: str) -> list[tuple[str, str]]:
    """(path, step id) of every step this step can go to within its stage."""
    key = "variants" if step.kind == "ab_test" else "branches"
    targets = [(f"{path}.next", step.next), (f"{path}.on_timeout", step.on_timeout),
               (f"{path}.else", step.otherwise)]
    targets += [(f"{path}.{key}[{i}].next", b.next) for i, b in enumerate(step.branches)]
    return [(where, target) for where, target in targets if target is not None]


def _check_graph(stages: list[_Parsed], raw: dict, check: _Check, require_wait: bool) -> None:
    """References between steps and stages, unreachable steps, cycles without a wait.

    References are checked against the ids as written, so that a step or stage with a
    problem of its own is still known; the walks only cover stages whose every step parsed,
    so that a broken step does not make the steps after it look unreachable.
    """
    home, stage_ids = _raw_ids(raw)
    # A stage or step whose id is not text is reported by its own parse; the walks key by ids.
    complete = [p for p in stages if p.complete and isinstance(p.stage.id, str)
                and all(isinstance(s.id, str) for s in p.stage.steps)]
    for p in stages:
        _check_references(p.stage, p.path, home, stage_ids, check)
    for p in complete:
        _check_reachable(p.stage, p.path, check)
        if require_wait:
            _check_wait_after_activation(p.stage, p.path, check)
    _check_cycles(complete, check)


def _raw_ids(raw: dict) -> tuple[dict, list]:
    """{step id: its stage id} and the stage ids, as written."""
    home, stage_ids = {}, []
    for stage in _as_list(raw.get("stages")):
        if isinstance(stage, dict) and isinstance(stage.get("id"), str):
            stage_ids.append(stage["id"])
            for step in _as_list(stage.get("steps")):
                if isinstance(step, dict) and isinstance(step.get("id"), str):
                    home.setdefault(step["id"], stage["id"])
    return home, stage_ids


def _check_references(stage: Stage, path: str, home: dict, stage_ids: list,
                      check: _Check) -> None:
    for j, step in enumerate(stage.steps):
        where = f"{path}.steps[{j}]"
        for target_path, target in _targets(step, where):
            if home.get(target) == stage.id:
                continue
            if target in home:
                check.error(target_path, f"step {target!r} is in stage {home[target]!r}, not "
                                         f"in {stage.id!r}: use a jump step to change stages")
            else:
                mine = [s for s, st in home.items() if st == stage.id]
                check.error(target_path, f"unknown step {target!r} (steps of stage "
                                         f"{stage.id!r}: {', '.join(mine)})")
        if step.to_stage is not None and step.to_stage not in stage_ids:
            check.error(f"{where}.stage", f"unknown stage {step.to_stage!r} "
                                          f"(stages: {', '.join(stage_ids)})")


def _ids(stage: Stage) -> list[str]:
    return [s.id for s in stage.steps if isinstance(s.id, str)]


def _check_reachable(stage: Stage, path: str, check: _Check) -> None:
    first = stage.steps[0].id
    successors = {s.id: [t for _, t in _targets(s, "")] for s in stage.steps}
    reached, todo = {first}, [first]
    while todo:
        for target in successors.get(todo.pop(), ()):
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for j, step in enumerate(stage.steps):
        if isinstance(step.id, str) and step.id not in reached:
            check.error(f"{path}.steps[{j}]", f"step {step.id!r} is unreachable from the "
                                              f"stage's first step {first!r}")


def _check_wait_after_activation(stage: Stage, path: str, check: _Check) -> None:
    kinds = {s.id: s.kind for s in stage.steps}
    for j, step in enumerate(stage.steps):
        if step.kind == "activation" and step.next in kinds and kinds[step.next] != "wait":
            check.error(f"{path}.steps[{j}]", f"require_wait_after_activation: activation "
                                              f"{step.id!r} goes on to {step.next!r}, a "
                                              f"{kinds[step.next]} step, not a wait")


def _check_cycles(stages: list[_Parsed], check: _Check) -> None:
    """One error per cycle of steps that never waits: a profile would loop in one event."""
    order, paths, edges = [], {}, {}
    firsts = {p.stage.id: p.stage.steps[0].id for p in stages}
    for p in stages:
        stage, stage_path = p.stage, p.path
        inside = set(_ids(stage))
        for j, step in enumerate(stage.steps):
            if not isinstance(step.id, str) or step.id in paths or step.kind == "wait":
                continue  # waits break every cycle through them; duplicates are reported
            order.append(step.id)
            paths[step.id] = f"{stage_path}.steps[{j}]"
            targets = [t for _, t in _targets(step, "") if t in inside]
            if step.to_stage in firsts:
                targets.append(firsts[step.to_stage])  # a jump restarts that stage
            edges[step.id] = targets
    for cycle in _cycles(order, edges):
        check.error(paths[cycle[0]], f"cycle without a wait: {' -> '.join(cycle + cycle[:1])}")


def _cycles(order: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Distinct cycles among `order`'s nodes, each starting at its earliest node."""
    found, cycles, state = set(), [], {}  # state: 1 on the current path, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for target in edges[node]:
            if target not in edges:
                continue  # a wait step, or unknown (reported elsewhere)
            if state.get(target) == 1:
                cycle = stack[stack.index(target):]
                if frozenset(cycle) not in found:
                    found.add(frozenset(cycle))
                    start = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
                    cycles.append(cycle[start:] + cycle[:start])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for node in order:
        if node not in state:
            visit(node, [])
    return cycles


# ---------------------------------------------------------------- source


def journey_source(journey: Journey) -> dict:
    """The plain-JSON body of a journey; parse_journey(journey_source(j), j.version) == j.

    Defaults are left out, so that two files meaning the same journey give the same body.
    `require_wait_after_activation` is a check on the file, not part of the journey: a body
    that passed it needs it no more.
    """
    source: dict = {"id": journey.id}
    if journey.description is not None:
        source["description"] = journey.description
    source["entry"] = to_source(journey.entry)
    if journey.reentry != "none":
        source["reentry"] = journey.reentry
    if journey.cooldown is not None:
        source["cooldown"] = format_duration(journey.cooldown)
    if journey.goal is not None:
        source["goal"] = to_source(journey.goal)
    if journey.exits:
        source["exits"] = [to_source(c) for c in journey.exits]
    source["stages"] = [_stage_source(s) for s in journey.stages]
    return source


def _stage_source(stage: Stage) -> dict:
    source: dict = {"id": stage.id}
    for key in ("entry", "milestone"):
        if getattr(stage, key) is not None:
            source[key] = to_source(getattr(stage, key))
    if stage.exits:
        source["exits"] = [to_source(c) for c in stage.exits]
    source["steps"] = [_step_source(s) for s in stage.steps]
    return source


def _step_source(step: Step) -> dict:
    source: dict = {"id": step.id, "kind": step.kind}
    if step.duration is not None:
        source["duration"] = format_duration(step.duration)
    if step.until is not None:
        source["until"] = _iso(step.until)
    if step.condition is not None:
        source.update(condition=to_source(step.condition),
                      timeout=format_duration(step.timeout), on_timeout=step.on_timeout)
    if step.days:
        source["days"] = [WEEKDAYS[d] for d in step.days]
    if step.at is not None:
        source["at"] = format_time_of_day(step.at)
    if step.kind == "activation":
        source.update(destination=step.destination, payload=dict(step.payload))
        if step.priority:
            source["priority"] = step.priority
        if step.quiet_hours is not None:
            source["quiet_hours"] = quiet_source(step.quiet_hours)
    if step.kind == "decision":
        source["branches"] = [{"id": b.id, "condition": to_source(b.condition), "next": b.next}
                              for b in step.branches]
        source["else"] = step.otherwise
    if step.kind == "ab_test":
        source["variants"] = [{"id": b.id, "weight": b.weight, "next": b.next}
                              for b in step.branches]
    if step.to_stage is not None:
        source["stage"] = step.to_stage
    if step.to_journey is not None:
        source["journey"] = step.to_journey
    if step.next is not None:
        source["next"] = step.next
    return source


def _iso(ms: int) -> str:
    moment = _EPOCH + dt.timedelta(milliseconds=ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")
