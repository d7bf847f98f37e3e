"""Journey definitions as a typed model (Treasure Data's CJO): a journey has entry criteria, a
re-entry mode, a goal, exit criteria and ordered stages; a stage has entry criteria, a milestone,
exit criteria and steps. The loader and validator (state/journey_definitions.py) build these;
the state machine (state/journey_machine.py) runs them. Conditions are the one condition
language (state/conditions.py); times are milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from state.conditions import Condition

STEP_KINDS = ("wait", "activation", "decision", "ab_test", "merge", "jump", "end")
REENTRY_MODES = ("none", "unless_goal", "always")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()


@dataclass(frozen=True)
class Branch:
    """A decision branch (condition → next step), or an A/B variant (weight → next step)."""

    id: str
    next: str
    condition: Condition | None = None  # decision branches
    weight: int | None = None  # ab_test variants


@dataclass(frozen=True)
class Step:
    id: str
    kind: str  # one of STEP_KINDS
    next: str | None = None  # the following step (wait, activation, merge); None: stage idles
    # wait: exactly one of duration / until / condition (with timeout) / days
    duration: int | None = None
    until: int | None = None
    condition: Condition | None = None
    timeout: int | None = None
    on_timeout: str | None = None  # the step after a condition wait times out
    days: tuple[int, ...] = ()  # allowed weekdays, 0 = Monday (in the profile's time zone)
    at: int | None = None  # a time of day (minutes after midnight, the profile's zone); with
    # or without days
    # activation
    destination: str | None = None
    payload: dict = field(default_factory=dict)
    priority: int = 0  # higher wins a cap's last slot (state.activation_rules)
    quiet_hours: object = None  # QuietHours; False: none; None: the destination's default
    # decision: branches in order, the first that matches wins, else `otherwise`
    # ab_test: weighted variants, chosen deterministically per profile
    branches: tuple[Branch, ...] = ()
    otherwise: str | None = None
    # jump: to a stage of this journey, or to another journey
    to_stage: str | None = None
    to_journey: str | None = None


@dataclass(frozen=True)
class Stage:
    id: str
    steps: tuple[Step, ...]  # the first step is where the stage starts
    entry: Condition | None = None
    milestone: Condition | None = None
    exits: tuple[Condition, ...] = ()

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


@dataclass(frozen=True)
class Journey:
    id: str
    version: int
    entry: Condition
    stages: tuple[Stage, ...]
    reentry: str = "none"
    cooldown: int | None = None  # ms after leaving before a re-entry
    goal: Condition | None = None
    exits: tuple[Condition, ...] = ()
    description: str | None = None

    def stage(self, stage_id: str) -> Stage:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KeyError(stage_id)

    def stage_index(self, stage_id: str) -> int:
        return [s.id for s in self.stages].index(stage_id)
