"""The journey state machine (docs/journeys.md is its written semantics).

Given a profile (its user data, segments and journey positions), the current event or wake-up
and the time, it moves the profile through its journeys and returns the transitions. Pure:
no Kafka, no Faust, no clock; `now` is the event's time or the wake-up's due time.

A profile's journeys live in `profile["journeys"]`, one entry per journey id:
    version, status ("active" | "left"), stage, step, seq, due, runs, entered_at, left_at,
    goal_reached (ever),
    sparse {version: {key: {"first": t, "last_reached": t, "last_left": t|None}}},
    branches {version: {step id: branch id}}
`seq` grows whenever the profile enters a step (and when a held activation is held again); a
wake-up carries the seq it was set for, so a stale or duplicate wake-up finds another seq and
does nothing. `due` is when the step's wake-up comes: a timed wait's, or an activation's held
through its quiet hours (docs/journeys.md rule 19).

Limits (docs/journeys.md rule 15): a profile holds at most `limits.max_journeys` journey
records; entering a journey it has no record of beyond that is refused (and counted in the
profile's `limited` counters). A record keeps the sparse state of its newest
`limits.max_journey_versions` versions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from state.activation_rules import NO_RULES, QUIET_HOURS, Pending, Rules
from state.conditions import EvalContext, evaluate
from state.judging import ACTIVATIONS, Output
from state.local_time import next_day_start, next_reached, weekday
from state.output_ids import text
from state.profile import LIMITS, Limits, note_limited
from state.splits import pick
from state.journeys import Journey, Stage, Step

TRANSITIONS = "journey-transitions"


@dataclass
class Move:
    """One input's work on one profile: the outputs, and the wake-ups to set or clear."""

    profile: dict
    ctx: EvalContext
    now: int
    source: str
    caused_by: str
    outputs: list[Output] = field(default_factory=list)
    left_now: set = field(default_factory=set)  # journeys left by this input: no re-entry now
    jumps: list = field(default_factory=list)  # journeys to enter after a jump step
    limits: Limits = LIMITS
    rules: Rules = NO_RULES  # time zone, quiet hours, caps (state.activation_rules)
    pending: list | None = None  # activations to capped destinations, for `settle`
    _zone: object = None

    def zone(self):
        """The profile's time zone (looked up once per input, when a step needs it)."""
        if self._zone is None:
            self._zone = self.rules.zone_of(self.profile)
        return self._zone


def new_state() -> dict:
    return {"version": 0, "status": "left", "stage": None, "step": None, "seq": 0, "due": None,
            "runs": 0, "entered_at": None, "left_at": None, "goal_reached": False,
            "sparse": {}, "branches": {}}


def advance(profile: dict, versions: dict[str, dict[int, Journey]], latest: dict[str, Journey],
            event: dict | None, segments, now: int, source: str, caused_by: str,
            wakeup: tuple[str, int] | None = None, enter: bool = False,
            limits: Limits = LIMITS, rules: Rules = NO_RULES,
            pending: list | None = None) -> list[Output]:
    """Move every journey of the profile on this input. `versions` holds every known version
    of each journey (a profile stays on the version it entered with), `latest` the newest.
    Without an event, a profile enters a journey only when `enter` (a batch audience's
    verdict; never a wake-up). `rules` are the definitions' time zone, quiet hours and caps;
    an activation to a capped destination goes into `pending` (when given) for
    state.activation_rules.settle, which may still suppress it."""
    ctx = EvalContext(profile=profile, event=event, now=now, segments=frozenset(segments))
    move = Move(profile, ctx, now, source, caused_by, limits=limits, rules=rules,
                pending=pending if rules.caps else None)
    states = profile.setdefault("journeys", {})
    if wakeup is not None:
        # A wake-up concerns its own journey only, and only the wait it was set for: a stale
        # or repeated one changes nothing at all.
        jid, seq = wakeup
        state = states.get(jid)
        if state is not None and state["status"] == "active" and state["seq"] == seq:
            journey = versions.get(jid, {}).get(state["version"])
            if journey is not None:
                move.now = _clock(now, state)
                _run(move, journey, state, woke=True)
        return move.outputs
    for jid in sorted(set(latest) | set(states)):
        state = states.get(jid)
        move.now = _clock(now, state)
        if state is not None and state["status"] == "active":
            journey = versions.get(jid, {}).get(state["version"])
            if journey is None:  # the version is gone: nothing can run it
                continue
            _run(move, journey, state, woke=False)
        elif jid in latest and (event is not None or enter):
            _maybe_enter(move, latest[jid], versions, entry_checked=False)
    for jid in move.jumps:  # a jump enters the other journey whatever its entry criteria
        if jid in latest:
            move.now = _clock(now, states.get(jid))
            _maybe_enter(move, latest[jid], versions, entry_checked=True)
    return move.outputs


def _clock(now: int, state: dict | None) -> int:
    """A journey's time never goes back (rule 1): a late input acts at the latest time the
    journey has recorded, so every transition of a profile in a journey is at or after the
    one before it."""
    if state is None:
        return now
    latest = max(now, state["entered_at"] or now, state["left_at"] or now)
    for cell in state["sparse"].get(str(state["version"]), {}).values():
        # The latest time reached is at or after the first (state from before `last_reached`
        # was kept has only the first).
        reached, left = cell.get("last_reached") or cell["first"], cell["last_left"]
        if reached > latest:
            latest = reached
        if left and left > latest:  # None (or 0) counts as `now`, which latest covers
            latest = left
    return latest


# -- entering -----------------------------------------------------------------------------

def _may_enter(move: Move, journey: Journey, state: dict | None) -> bool:
    if state is None or state["runs"] == 0:
        return True
    if state["status"] == "active" or journey.id in move.left_now:
        return False
    if journey.reentry == "none":
        return False
    if journey.reentry == "unless_goal" and state["goal_reached"]:
        return False
    if journey.cooldown is not None and move.now - state["left_at"] < journey.cooldown:
        return False
    return True


def _maybe_enter(move: Move, journey: Journey, versions, entry_checked: bool) -> None:
    states = move.profile["journeys"]
    state = states.get(journey.id)
    if not _may_enter(move, journey, state):
        return
    if not entry_checked and not evaluate(journey.entry, move.ctx):
        return
    if state is None:
        if len(states) >= move.limits.max_journeys:
            # A journey record is the profile's re-entry history and funnel rows, so none is
            # evicted to make room: the entry is refused, and counted (rule 15).
            note_limited(move.profile, "journeys")
            return
        state = states[journey.id] = new_state()
    state.update(version=journey.version, status="active", stage=None, step=None, due=None,
                 entered_at=move.now, left_at=None)
    _keep_versions(move, state)
    state["runs"] += 1
    _mark(state, "journey", move.now)
    _emit(move, journey, state, "entered_journey", None, journey.id)
    start = _start_stage(move, journey)
    if start is not None:
        _enter_stage(move, journey, state, start)


def _keep_versions(move: Move, state: dict) -> None:
    """Keep the sparse state (and branches) of the newest max_journey_versions versions the
    profile ran, the one it enters now included; older versions' are dropped and counted."""
    current = state["version"]
    ran = {int(v) for v in state["sparse"]} | {int(v) for v in state["branches"]} | {current}
    kept = set(sorted(ran, reverse=True)[:max(1, move.limits.max_journey_versions)]) | {current}
    dropped = ran - kept
    for version in dropped:
        state["sparse"].pop(str(version), None)
        state["branches"].pop(str(version), None)
    note_limited(move.profile, "journey_versions", len(dropped))


def _start_stage(move: Move, journey: Journey) -> Stage | None:
    """The last stage whose entry criteria match (profiles may start further on, as Treasure
    Data allows); else the first stage when it has no entry criteria; else none yet."""
    for stage in reversed(journey.stages):
        if stage.entry is not None and evaluate(stage.entry, move.ctx):
            return stage
    first = journey.stages[0]
    return first if first.entry is None else None


# -- an active profile ----------------------------------------------------------------------

def _run(move: Move, journey: Journey, state: dict, woke: bool) -> None:
    """Priority on one input: goal, then journey exit, then stage exit, then milestone, then a
    later stage's entry (skip forward), then the waiting step."""
    ctx = move.ctx
    if journey.goal is not None and evaluate(journey.goal, ctx):
        state["goal_reached"] = True
        _mark(state, "goal", move.now)
        _emit(move, journey, state, "goal_reached", state["stage"], "goal")
        _leave_journey(move, journey, state, "goal")
        return
    for i, condition in enumerate(journey.exits):
        if evaluate(condition, ctx):
            _mark(state, f"exit:journey:{i}", move.now)
            if state["stage"] is not None:  # and the stage it left from (the sidecar's funnels)
                _mark(state, f"exit:journey:{i}@{state['stage']}", move.now)
            _leave_journey(move, journey, state, f"exit:{i}")
            return
    stage = journey.stage(state["stage"]) if state["stage"] else None
    if stage is not None:
        for i, condition in enumerate(stage.exits):
            if evaluate(condition, ctx):
                _mark(state, f"exit:{stage.id}:{i}", move.now)
                _emit(move, journey, state, "stage_exited", stage.id, f"exit:{i}")
                _leave_journey(move, journey, state, f"stage_exit:{stage.id}")
                return
        if stage.milestone is not None and evaluate(stage.milestone, ctx):
            _mark(state, f"milestone:{stage.id}", move.now)
            _emit(move, journey, state, "milestone_reached", stage.id, stage.id)
            index = journey.stage_index(stage.id)
            if index + 1 < len(journey.stages):
                _enter_stage(move, journey, state, journey.stages[index + 1])
            else:
                _leave_journey(move, journey, state, "completed")
            return
    later = _later_stage(move, journey, stage)
    if later is not None:
        _enter_stage(move, journey, state, later)
        return
    if stage is not None and state["step"] is not None:
        _continue_wait(move, journey, state, stage, stage.step(state["step"]), woke)


def _later_stage(move: Move, journey: Journey, current: Stage | None) -> Stage | None:
    start = -1 if current is None else journey.stage_index(current.id)
    for stage in reversed(journey.stages[start + 1:]):
        if stage.entry is not None and evaluate(stage.entry, move.ctx):
            return stage
    return None


def _continue_wait(move, journey, state, stage, step: Step, woke: bool) -> None:
    if step.kind == "activation" and woke:  # held through quiet hours: they are over
        state["due"] = None
        if _activate(move, journey, state, step):
            _enter_step(move, journey, state, stage, step.next)
        else:  # the profile's zone changed meanwhile: held again, under a new seq
            state["seq"] += 1
        return
    if step.kind != "wait":
        return
    if step.condition is not None:
        if move.ctx.event is not None and evaluate(step.condition, move.ctx):
            _enter_step(move, journey, state, stage, step.next)
        elif woke:
            _enter_step(move, journey, state, stage, step.on_timeout)
    elif woke:
        _enter_step(move, journey, state, stage, step.next)


# -- moving -----------------------------------------------------------------------------------

def _enter_stage(move: Move, journey: Journey, state: dict, stage: Stage) -> None:
    previous = state["stage"]
    _leave_step(state, move.now)
    if previous is not None:
        _left(state, f"stage:{previous}", move.now)
    state["stage"] = stage.id
    _mark(state, f"stage:{stage.id}", move.now)
    _emit(move, journey, state, "entered_stage", previous, stage.id)
    _enter_step(move, journey, state, stage, stage.steps[0].id)


def _enter_step(move: Move, journey: Journey, state: dict, stage: Stage, step_id: str) -> None:
    """Run steps from `step_id` on until one has to wait (validation rejects cycles without a
    wait, so this ends)."""
    entered: set = set()
    while step_id is not None:
        step = stage.step(step_id)
        again = step.id in entered  # a cycle back on this input: its waits must really wait
        entered.add(step.id)
        previous = state["step"]
        _leave_step(state, move.now)
        state["step"] = step.id
        state["seq"] += 1
        _mark(state, f"step:{step.id}", move.now)
        _emit(move, journey, state, "entered_step", previous, step.id)
        kind = step.kind
        if kind == "wait":
            due = _due(move, step, again)
            if again and step.until is not None:
                due = None  # an `until` that has passed goes straight on once per input
            if due is not None and due <= move.now:
                step_id = step.next  # the date has passed, or today is an allowed day
                continue
            state["due"] = due
            return
        if kind == "activation":
            if not _activate(move, journey, state, step):
                return  # held until the quiet hours are over
            step_id = step.next
        elif kind in ("decision", "ab_test"):
            branch = _choose(move, journey, step)
            state["branches"].setdefault(str(state["version"]), {})[step.id] = branch.id
            _emit(move, journey, state, "branch_taken", step.id, branch.id)
            step_id = branch.next
        elif kind == "merge":
            step_id = step.next
        elif kind == "jump" and step.to_stage is not None:
            _enter_stage(move, journey, state, journey.stage(step.to_stage))
            return
        elif kind == "jump":
            _leave_journey(move, journey, state, f"jump:{step.to_journey}")
            move.jumps.append(step.to_journey)
            return
        else:  # end
            _leave_journey(move, journey, state, "end")
            return


def _due(move: Move, step: Step, again: bool) -> int | None:
    """When a wait entered now is due (now itself: it goes straight on). `days` and `at` are
    read in the profile's time zone (state.local_time: when a time of day is reached). On a
    cycle back to the wait on the same input (`again`) a `days` wait waits for the next allowed
    day, not today, and an `at` wait for the next time the clock reaches it."""
    now = move.now
    if step.duration is not None:
        return now + step.duration
    if step.until is not None:
        return step.until
    if step.at is not None:
        return next_reached(now, move.zone(), step.at, step.days, after=again)
    if step.days:
        if not again and weekday(now, move.zone()) in step.days:
            return now
        return next_day_start(now, move.zone(), step.days)
    if step.condition is not None:
        return now + step.timeout
    return None


def _choose(move: Move, journey: Journey, step: Step):
    if step.kind == "decision":
        for branch in step.branches:
            if evaluate(branch.condition, move.ctx):
                return branch
        return _Else(step.otherwise)
    return pick(step.branches, journey.id, step.id, move.profile["profile_id"])


@dataclass(frozen=True)
class _Else:
    next: str
    id: str = "else"


def _activate(move: Move, journey: Journey, state: dict, step: Step) -> bool:
    """An activation step's work; False when it is held (its quiet hours: a wake-up when they
    are over), True when the journey goes on (sent, dropped in quiet hours, or pending a cap's
    decision: a capped one is suppressed and the journey goes on all the same)."""
    destination = step.destination
    quiet = move.rules.quiet_for(destination, step.quiet_hours) if move.rules.quiet_hours \
        or step.quiet_hours else None
    if quiet is not None and quiet.within(move.zone(), move.now):
        if quiet.then == "hold":
            state["due"] = quiet.over(move.zone(), move.now)
            _emit(move, journey, state, "activation_held", step.id, destination, QUIET_HOURS)
            return False
        _emit(move, journey, state, "activation_suppressed", step.id, destination, QUIET_HOURS)
        _activation(move, journey, step, QUIET_HOURS)
        return True
    transition = _emit(move, journey, state, "activation", step.id, destination)
    record = _activation(move, journey, step, None)
    if move.pending is not None and destination in move.rules.caps:
        move.pending.append(Pending(
            step.priority, f"{journey.id}/{step.id}", destination, move.now, record, transition,
            _transition_id(move, journey, "activation_suppressed", step.id, destination)))
    return True


def _activation(move: Move, journey: Journey, step: Step, suppressed: str | None) -> dict:
    pid = move.profile["profile_id"]
    record = {
        "activation_id": f"{move.source}/journey/{journey.id}/{step.id}",
        "delivery": f"{journey.id}/{step.id}",
        "variant": step.destination,
        "profile_id": pid,
        "payload": dict(step.payload),
        "time": move.now,
        "caused_by": move.caused_by,
        "destination": step.destination,
        "suppressed": suppressed,
    }
    move.outputs.append(Output(ACTIVATIONS, pid, record))
    return record


def _leave_step(state: dict, now: int) -> None:
    if state["step"] is not None:
        _left(state, f"step:{state['step']}", now)
    state["due"] = None


def _leave_journey(move: Move, journey: Journey, state: dict, reason: str) -> None:
    _leave_step(state, move.now)
    if state["stage"] is not None:
        _left(state, f"stage:{state['stage']}", move.now)
    _left(state, "journey", move.now)
    _emit(move, journey, state, "journey_exited", state["stage"], reason)
    state.update(status="left", stage=None, step=None, left_at=move.now)
    move.left_now.add(journey.id)


# -- records ---------------------------------------------------------------------------------

def _sparse(state: dict) -> dict:
    return state["sparse"].setdefault(str(state["version"]), {})


def _mark(state: dict, key: str, now: int) -> None:
    """Record that the profile reached `key` in this journey version: `first` keeps the first
    time (Treasure Data's sparse table: later entries do not move it), `last_reached` the
    latest. Reaching a journey, stage or step again begins a new stay: it is open
    (`last_left` None) until `_left` closes it, so `last_left - last_reached` is the latest
    stay, and `last_left` is None exactly while the profile is in it."""
    cell = _sparse(state).get(key)
    if cell is None:
        _sparse(state)[key] = {"first": now, "last_reached": now, "last_left": None}
    else:
        cell["last_reached"] = now
        cell["last_left"] = None


def _left(state: dict, key: str, now: int) -> None:
    cell = _sparse(state).get(key)
    if cell is not None:
        cell["last_left"] = now


def _transition_id(move: Move, journey: Journey, kind: str, origin, target) -> str:
    return f"{move.source}/journey/{journey.id}/{kind}/{text(origin)}/{text(target)}"


def _emit(move: Move, journey: Journey, state: dict, kind: str, origin, target,
          reason: str | None = None) -> dict:
    pid = move.profile["profile_id"]
    record = {
        "transition_id": _transition_id(move, journey, kind, origin, target),
        "journey": journey.id,
        "version": journey.version,
        "profile_id": pid,
        "kind": kind,
        "from": origin,
        "to": target,
        "stage": state["stage"],
        "time": move.now,
        "caused_by": move.caused_by,
        "reason": reason,
    }
    move.outputs.append(Output(TRANSITIONS, pid, record))
    return record
