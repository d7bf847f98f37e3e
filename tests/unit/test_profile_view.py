"""GET /profiles/ID shows what an operator reads of a profile, not the agent's bookkeeping."""
from state.processing import step
from state.definitions import load_definitions
from state.profile import new_profile
from topology.ops.views import profile_view

DEFS = load_definitions("""
segments:
  - {id: viewers, condition: {count.view: {gte: 1}}}
""")


class Wire:
    generation = "g"
    on_output = None

    def encode_output(self, topic, record):
        return repr(record).encode()


def event(eid, t):
    return {"kind": "event", "profile_id": "u1", "source_partition": 0, "source_offset": t,
            "event": {"event_id": eid, "name": "view", "time": t, "visitor_id": None,
                      "user_id": "u1", "request_id": None, "values": {}},
            "visitor_id": None, "member_id": None, "merge_id": None, "state": None}


def test_the_view_counts_re_sent_events_and_merge_crossings():
    profile = new_profile("u1")
    for offset, record in enumerate([event("e1", 1000), event("e1", 2000), event("e2", 3000)]):
        profile, _ = step(profile, record, offset, None, DEFS, Wire())
    view = profile_view(profile)
    assert view["duplicates"] == 1  # e1 sent again (at another offset) is dropped
    assert view["merge_crossings"] == 0
    assert view["counts"] == {"view": 2}
    assert view["segments"] == ["viewers"]


def test_the_view_leaves_out_the_agent_bookkeeping():
    view = profile_view(new_profile("u1"))
    for bookkeeping in ("outbox", "positions", "event_ids", "buffered", "merge_times"):
        assert bookkeeping not in view
    assert view["journeys"] == []
