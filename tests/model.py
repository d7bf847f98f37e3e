"""The reference model: a plain sequential Python model of the promises, to compare the
topology with. It applies the event log one event at a time in produce order, with merges
applied at once, reusing the domain's rules (state.profile, state.judging) but none of the
topology's machinery (routing tables, barriers, outboxes, positions, Kafka). The sending
rules (time zone, quiet hours, caps and priority: state.activation_rules) are applied as the
docs say: every activation an input makes to a capped destination, deliveries and journey
steps together, is decided after all of them are made. Duplicate events (README "Limits") are
the model's own: it keeps each profile's applied event ids and times itself and drops an event
whose id it applied within the dedup window of the profile's latest event time."""
from __future__ import annotations

import copy

from state.definitions import from_records, to_records
from state.activation_rules import settle
from state.journey_machine import advance
from state.judging import fire_deliveries, judge_segments, leave_all_segments
from state.processing import STATS
from state.profile import fold_visitor, new_profile, record_event
from state.time_changes import SEGMENTS_WAKEUP, next_change

DEDUP_WINDOW_MS = 7 * 24 * 3600 * 1000  # CJO_DEDUP_WINDOW's default, in ms
MAX_EVENT_IDS = 1000  # CJO_MAX_EVENT_IDS_PER_PROFILE's default

OUTPUT_TOPICS = ("segment-changes", "activations", "journey-transitions", "identity-merges")


def as_workers_read(defs):
    """`defs` as a worker rebuilds them from the definitions topic (records in key order:
    topology.pipeline.definitions.build), so the model fires deliveries in the worker's order."""
    return from_records(sorted(to_records(defs, all_versions=True)))


class ReferenceModel:
    def __init__(self, defs, generation: str = "cjo") -> None:
        """`generation`: the instance part of the output ids, as the worker has it (its events
        topic's id, topology.pipeline.topics.generation; a test wire's own)."""
        defs = self.defs = as_workers_read(defs)
        self.generation = generation
        self.latest = {j.id: j for j in defs.journeys}
        self.profiles: dict[str, dict] = {}
        self.alias: dict[str, str] = {}
        self.outputs: dict[str, list[dict]] = {t: [] for t in OUTPUT_TOPICS}
        # Per profile, the (event_id, time) of the events applied, in the order applied.
        self.applied_ids: dict[str, list[tuple[str, int]]] = {}
        self.duplicates = 0

    def switch(self, defs) -> None:
        """Definitions applied from here on (a changed file: journeys get new versions; a
        profile stays on the version it entered)."""
        defs = self.defs = as_workers_read(defs)
        self.latest = {j.id: j for j in defs.journeys}

    def _profile(self, pid: str) -> dict:
        if pid not in self.profiles:
            self.profiles[pid] = new_profile(pid)
        return self.profiles[pid]

    def _emit(self, outputs) -> None:
        for o in outputs:
            self.outputs[o.topic].append(o.record)

    def apply(self, partition: int, offset: int, event: dict) -> None:
        position = f"{partition}:{offset}"
        visitor, user = event["visitor_id"], event["user_id"]
        if event["name"] == "identify" and self.alias.get(visitor) != user:
            previous = self.alias.get(visitor)
            self.alias[visitor] = user
            merge_id = f"{self.generation}/{visitor}>{user}@{position}"
            self.outputs["identity-merges"].append({
                "merge_id": merge_id, "visitor_id": visitor, "member_id": user,
                "previous_member_id": previous, "time": event["time"],
                "caused_by": event["event_id"], "source_partition": partition,
                "source_offset": offset})
            v = self._profile(visitor)
            state = None
            if not v["merged_into"] and v["last_seen"] is not None:
                state = copy.deepcopy(v)
            self._emit(leave_all_segments(v, v["last_seen"] or 0,
                                          self._source(visitor, f"merge:{position}"), merge_id))
            fresh = new_profile(visitor)
            for key in STATS:
                v[key] = fresh[key]
            v["merged_into"] = user
            v["segments_due"] = None
            m = self._profile(user)
            if state is not None:
                fold_visitor(m, state)
            ids = self.applied_ids.pop(visitor, [])
            if ids:  # the member's own entry for an id both applied stays
                mine = self.applied_ids.get(user, [])
                both = mine + [it for it in ids if it[0] not in {i for i, _ in mine}]
                self.applied_ids[user] = self._window(sorted(both, key=lambda it: it[1]),
                                                      m["last_seen"])
            if m["last_seen"] is not None:
                self._emit(judge_segments(m, self.defs, m["last_seen"],
                                          self._source(user, f"merge:{position}"), merge_id)[1])
                self._schedule(m, m["last_seen"])
            target = user
        else:
            target = user or self.alias.get(visitor) or visitor
        if self._duplicate(self._profile(target), event):
            self.duplicates += 1
            return
        self._apply_event(self._profile(target), event)

    def _duplicate(self, profile: dict, event: dict) -> bool:
        """Applied already within the window before the profile's latest event time: True.
        Else the event's id joins the profile's list, unless the event is out of the window."""
        latest, t = profile["last_seen"], event["time"]
        ids = self.applied_ids.setdefault(profile["profile_id"], [])
        if latest is not None and any(i == event["event_id"] and at >= latest - DEDUP_WINDOW_MS
                                      for i, at in ids):
            return True
        newest = t if latest is None else max(t, latest)
        if t >= newest - DEDUP_WINDOW_MS:
            ids = [(i, at) for i, at in ids if i != event["event_id"]] + [(event["event_id"], t)]
            self.applied_ids[profile["profile_id"]] = self._window(ids, newest)
        return False

    @staticmethod
    def _window(ids: list, latest: int) -> list:
        """The earliest applied go while out of the window or past MAX_EVENT_IDS."""
        while ids and (ids[0][1] < latest - DEDUP_WINDOW_MS or len(ids) > MAX_EVENT_IDS):
            ids = ids[1:]
        return ids

    def _source(self, pid: str, cause: str) -> str:
        """What the ids of an input's outputs for a profile start with (README "Output ids")."""
        return f"{self.generation}/{pid}/{cause}"

    def _apply_event(self, profile: dict, event: dict) -> None:
        source = self._source(profile["profile_id"], f"event:{event['event_id']}")
        record_event(profile, event)
        members, outputs = judge_segments(profile, self.defs, event["time"], source,
                                          event["event_id"])
        self._schedule(profile, event["time"])
        self._emit(outputs)
        pending: list = []
        made = fire_deliveries(profile, event, members, self.defs, source, pending)
        made += self._advance(profile, event, members, event["time"], source,
                              event["event_id"], pending)
        self._emit(made)

    def _advance(self, profile, event, members, now, source, caused_by, pending=None,
                 **how) -> list:
        """The journeys' moves, then the caps' decision over the input's activations (the
        records are decided before they go out)."""
        pending = [] if pending is None else pending
        rules = self.defs.rules
        made = advance(profile, self.defs.journey_versions, self.latest, event, members, now,
                       source, caused_by, rules=rules, pending=pending, **how)
        settle(profile, pending, rules.caps)
        return made

    def _schedule(self, profile: dict, judged_at: int) -> None:
        """When time alone next changes the segments just judged: a wait of the profile."""
        profile["segments_due"] = next_change(profile, self.defs.timed_segments, judged_at)

    def wake_until(self, clock_ms: int) -> int:
        """Apply every journey wait and time-driven segment change due by `clock_ms`, earliest
        first (a wake-up may start a wait that is due too; a profile's due at the same moment
        in the order of the worker's index keys: journey id as text, `@segments` among them);
        returns how many."""
        woken = 0
        while True:
            due = sorted([(s["due"], pid, jid, s["seq"])
                          for pid, p in self.profiles.items()
                          for jid, s in p["journeys"].items()
                          if s["status"] == "active" and s["due"] is not None
                          and s["due"] <= clock_ms]
                         + [(p["segments_due"], pid, SEGMENTS_WAKEUP, 0)
                            for pid, p in self.profiles.items()
                            if p["segments_due"] is not None and p["segments_due"] <= clock_ms])
            if not due:
                return woken
            at, pid, jid, seq = due[0]
            profile = self.profiles[pid]
            if jid == SEGMENTS_WAKEUP:
                cause, source = f"time:{pid}:{at}", self._source(pid, f"time:{at}")
                members, outputs = judge_segments(profile, self.defs, at, source, cause)
                self._emit(outputs)
                if outputs:
                    self._emit(self._advance(profile, None, members, at, source, cause,
                                             enter=True))
                self._schedule(profile, at)
            else:
                cause = f"wakeup:{pid}:{jid}:{seq}"
                source = self._source(pid, f"wakeup:{jid}:{seq}")
                self._emit(self._advance(profile, None, set(profile["segments"]), at, source,
                                         cause, wakeup=(jid, seq)))
            woken += 1

    def states(self) -> dict[str, dict]:
        """Each profile's user data, in the shape compared with the topology's table."""
        return {pid: comparable(p) for pid, p in self.profiles.items()}


def comparable(profile: dict) -> dict:
    return {k: profile[k] for k in (*STATS, "merged_into", "profile_id")}
