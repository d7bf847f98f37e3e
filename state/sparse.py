"""The sparse journey state of a profile as rows (Treasure Data's sparse table, long form):
one row per profile, journey, version and key (journey, stage:<id>, step:<id>, milestone:<id>,
exit:<stage>:<n>, exit:journey:<n>, exit:journey:<n>@<stage>, goal, branch:<step>), with the
time first reached, the time last reached and when that latest stay was left (null while the
profile is in it), and the branch or variant taken. A `position` row per journey holds where
the profile is now.

`last_reached` is the last column (added after the others): snapshot files and sidecar tables
written before it lack it, and readers take it as null (= `first`)."""
from __future__ import annotations

COLUMNS = ("profile_id", "journey", "version", "key", "first", "last_left", "value",
           "last_reached")
# The profile fields `profile_rows` reads (a snapshot decodes only these).
SNAPSHOT_FIELDS = ("profile_id", "merged_into", "merges_done", "last_seen", "segments",
                   "journeys", "limited", "segments_judged_at", "duplicates")
# The row that says when the profile's segment rows were judged (`first`): its latest event's
# time, or the due time of a time-driven change after it (the sidecar's recount judges then).
JUDGED_KEY = "segments_judged"


def sparse_rows(profile: dict) -> list[tuple]:
    pid = profile["profile_id"]
    rows = []
    for journey, state in sorted(profile.get("journeys", {}).items()):
        for version, cells in sorted(state["sparse"].items(), key=lambda kv: int(kv[0])):
            for key, cell in sorted(cells.items()):
                rows.append((pid, journey, int(version), key, cell["first"], cell["last_left"],
                             None, cell.get("last_reached")))
        for version, taken in sorted(state["branches"].items(), key=lambda kv: int(kv[0])):
            for step, branch in sorted(taken.items()):
                rows.append((pid, journey, int(version), f"branch:{step}", None, None, branch,
                             None))
        where = (f"{state['stage']}/{state['step']}" if state["status"] == "active"
                 else state["status"])
        rows.append((pid, journey, state["version"], "position", state["entered_at"],
                     state["left_at"], where, None))
    return rows


def profile_rows(profile: dict) -> list[tuple]:
    """Everything a snapshot holds of a profile: a marker row (key `profile`: whoever reads the
    snapshot replaces what it knew of the profile; `first` is its last event time, `value` is
    `merged` when a merge touched it, `limited` when a profile limit kept something out,
    `duplicates` when it dropped a re-sent event that the archive holds twice), a row per
    segment it is in (key `segment:<id>`, no journey), when those were judged (key
    `segments_judged`, `first` the time), and its sparse journey rows."""
    pid = profile["profile_id"]
    # No replay of the archived events reproduces these exactly: the sidecar's recount skips them.
    if profile["merges_done"] or profile["merged_into"]:
        caveat = "merged"
    elif any(n for what, n in profile.get("limited", {}).items() if what != "event_ids"):
        caveat = "limited"  # a profile limit kept something out (state.profile.Limits)
    elif profile.get("duplicates"):
        caveat = "duplicates"  # the archive has every copy; the stream applied one
    else:
        caveat = None
    rows = [(pid, None, None, "profile", profile["last_seen"], None, caveat, None)]
    rows += [(pid, None, None, f"segment:{s}", None, None, None, None)
             for s in profile["segments"]]
    judged = profile.get("segments_judged_at")
    if judged is not None:
        rows.append((pid, None, None, JUDGED_KEY, judged, None, None, None))
    return rows + sparse_rows(profile)
