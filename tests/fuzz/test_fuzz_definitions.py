"""Hostile definition files: whatever document `cjo validate`, `cjo apply` or
`POST /definitions` is given, the loader answers with a DefinitionSet or a DefinitionError
listing every problem, and a set it accepts can be published and read back by the workers.

The promises checked on every case:
- load_definitions returns a DefinitionSet or raises DefinitionError whose `errors` is a
  non-empty list of (path, problem) pairs of text, the problem never empty (the path is empty
  only for a top-level key that is itself empty); nothing else;
- a DefinitionSet it returns goes through what `cjo apply` and the workers do with it
  (topology/pipeline/definitions.py): to_records, one JSON text per record, from_records on the
  parsed JSON, which rebuilds the same records; and applying the same file again over what was
  published makes no new journey version.

Inputs: arbitrary YAML-ish documents (as parsed data and as YAML text), and mutations of
examples/definitions.yaml: keys dropped, values of another type, random ids, random
weights, segments that reference each other (cycles included), generated journeys (every step
kind of state/journey_definitions.py, with random targets) with random mutations, and batch
audiences with random SQL text.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given, note
from hypothesis import strategies as st

from state import journey_definitions as jd
from state.conditions import walk
from state.definitions import (DELIVERY_KEYS, SEGMENT_KEYS, TOP_KEYS, VARIANT_KEYS,
                               DefinitionError, DefinitionSet, from_records, load_definitions,
                               to_records)
from state.journeys import REENTRY_MODES, STEP_KINDS, WEEKDAYS
from tests.fuzz.strategies import FUZZ, json_like, mutated, scalars, texts, yaml_keys

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_TEXT = (ROOT / "examples" / "definitions.yaml").read_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)

# ---------------------------------------------------------------- the loader's own words

WORDS = tuple(dict.fromkeys(
    TOP_KEYS + SEGMENT_KEYS + DELIVERY_KEYS + VARIANT_KEYS + ("limits", "total", "per_day")
    + jd.JOURNEY_KEYS + jd.STAGE_KEYS + tuple(k for keys in jd.STEP_KEYS.values() for k in keys)
    + jd.BRANCH_KEYS + STEP_KINDS + REENTRY_MODES + WEEKDAYS))
words = st.sampled_from(WORDS)
SEGMENT_IDS = ("a", "b", "c", "d", "e")
# Ids the loader must refuse or that clash: empty, too long, odd characters, other types.
bad_ids = st.one_of(st.sampled_from(["", "x" * 65, "bad id", "é", "a.b", "a", "tokyo"]),
                    texts, st.integers(-2, 2), st.none(), st.just(["a"]), st.just({"a": 1}))
GOOD_CONDITIONS = (
    {"count.view": {"gte": 1}}, {"attribute.plan": {"eq": "premium"}},
    {"since.purchase": {"lt": "2d"}}, {"count.view": {"gte": 5, "within": "1d"}},
    {"sum.purchase.amount": {"gte": 10}}, {"any": [{"count.x": {"gte": 2}},
                                                   {"not": {"last_seen": {"exists": True}}}]},
)
BAD_CONDITIONS = (
    {"event.name": {"eq": "identify"}},  # fine in journeys and triggers, not in segments
    {"segment": "nope"}, {"any": []}, {"count.view": {"gte": "x"}}, {"event.path": {"eq": None}},
    {}, "view", {"not": {"segment": "a"}}, {"all": [{"segment": "b"}, {"segment": "e"}]},
)
DURATIONS = ("1d", "2h", "7d", "30m", "500ms", 3_600_000)
BAD_DURATIONS = ("0ms", 0, -1, "1.5h", "x", None, True)
LAST_DATETIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last a datetime holds
UNTILS = ("2026-12-24T00:00:00Z", "2026-12-24T00:00:00+09:00", 0, 1_798_070_400_000,
          LAST_DATETIME_MS, dt.datetime(2026, 12, 24, tzinfo=dt.timezone.utc))
BAD_UNTILS = ("2026-12-24T00:00:00", "1969-12-31T23:59:59Z", "christmas", -5,
              dt.datetime(2026, 12, 24), dt.date(2026, 12, 24), True, 1.5)
SQL = ("SELECT profile_id FROM events",
       "SELECT profile_id FROM events WHERE name = 'purchase' GROUP BY profile_id",
       "WITH x AS (SELECT profile_id FROM events) SELECT * FROM x",
       "SELECT profile_id FROM events QUALIFY row_number() OVER () < 10")
BAD_SQL = ("SELECT 1; SELECT 2", "DELETE FROM events", "DROP TABLE events", "SELEC profile_id",
           "INSERT INTO audience_members VALUES ('a', 'b')", "COPY events TO '/tmp/x'",
           "SELECT '\x00'", "   ", "", "-- comment", "SELECT * FROM read_csv('/etc/passwd')",
           "PRAGMA version", "ATTACH 'x.db'", "SELECT 'x' || chr(0)")

# ---------------------------------------------------------------- documents
# Each value is right unless a draw says otherwise, one time in twenty or so, so that most
# generated documents are nearly valid (one problem, or none): those are what slip through a
# validator. Strategies are built once, here: building one inside a draw (a recursive one
# above all) costs more than running the case.

_TWENTY = st.integers(0, 19)


def _rarely(draw) -> bool:
    return draw(_TWENTY) == 7  # a middle value: hypothesis favours 0 and the bounds


def _pick(draw, good, bad):
    """A draw of `good`, or rarely of `bad` (strategies)."""
    return draw(bad if _rarely(draw) else good)


payloads = st.just({"t": "x"})
bad_payloads = st.one_of(json_like(max_leaves=3), st.just({1: "x"}), st.just({"t": [1]}))
descriptions = st.one_of(st.none(), texts)
sql_texts = st.sampled_from(SQL)
bad_sql = st.one_of(st.sampled_from(BAD_SQL), texts,
                    st.builds(lambda a, b: a + " " + b, st.sampled_from(SQL + BAD_SQL), texts))
good_conditions = st.sampled_from(GOOD_CONDITIONS)
bad_conditions = st.one_of(st.sampled_from(BAD_CONDITIONS), json_like(max_leaves=3))
good_durations = st.sampled_from(DURATIONS)
bad_durations = st.sampled_from(BAD_DURATIONS)
good_untils = st.sampled_from(UNTILS)
bad_untils = st.one_of(st.sampled_from(BAD_UNTILS), st.integers(0, 2**70))
WEIGHT_SPLITS = ((100,), (50, 50), (30, 70), (20, 30, 50))
splits = st.sampled_from(WEIGHT_SPLITS)
bad_weights = st.one_of(st.integers(-10, 110), scalars)
bad_limits = st.one_of(st.integers(-1, 0), scalars)
step_kinds = st.sampled_from(STEP_KINDS)
bad_kinds = st.sampled_from(("wiat", "", None, 1, "End"))
wait_kinds = st.sampled_from(jd.WAIT_KINDS)
days = st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True)
bad_days = st.one_of(st.just([]), st.lists(st.sampled_from(WEEKDAYS + ("xyz", 1)),
                                           min_size=2, max_size=4), scalars)
reentries = st.sampled_from(REENTRY_MODES)
bad_reentries = st.sampled_from(("sometimes", None, 1, ["none"]))
booleans = st.booleans()
small = st.integers(0, 3)


def _id(draw, good: str):
    return draw(bad_ids) if _rarely(draw) else good


@st.composite
def segments(draw) -> list:
    """Segments a, b, c, ... that reference earlier ones, rarely later ones or themselves
    (cycles), and batch audiences with SQL, rarely SQL that is not one read-only SELECT."""
    out = []
    for i in range(draw(st.integers(0, 5))):
        sid = _id(draw, SEGMENT_IDS[i])
        kind = draw(small)
        if kind == 0 and (i or _rarely(draw)):
            known = SEGMENT_IDS[:i] if i and not _rarely(draw) else SEGMENT_IDS
            refs = [known[draw(st.integers(0, len(known) - 1))] for _ in range(draw(small) + 1)]
            item = {"id": sid, "condition": {"all": [{"segment": r} for r in refs]}}
        elif kind <= 1:
            item = {"id": sid, "condition": _pick(draw, good_conditions, bad_conditions)}
        elif kind == 2:
            item = {"id": sid, "sql": _pick(draw, sql_texts, bad_sql)}
        else:
            item = {"id": sid, "condition": {"not": _pick(draw, good_conditions,
                                                          bad_conditions)}}
        description = _pick(draw, descriptions, scalars)
        if description is not None:
            item["description"] = description
        out.append(item)
    return out


@st.composite
def deliveries(draw, segment_count: int) -> list:
    """Deliveries to the document's segments, with triggers, limits and weights."""
    out = []
    for i in range(draw(st.integers(0, 2))):
        target = SEGMENT_IDS[draw(st.integers(0, max(0, segment_count - 1)))]
        item = {"id": _id(draw, f"d{i}"), "segment": _id(draw, target),
                "trigger": _pick(draw, good_conditions, bad_conditions)}
        if draw(booleans):
            item["variants"] = [{"id": _id(draw, f"v{k}"),
                                 "weight": draw(bad_weights) if _rarely(draw) else w,
                                 "payload": _pick(draw, payloads, bad_payloads)}
                                for k, w in enumerate(draw(splits))]
        if draw(booleans):
            item["limits"] = {"total": draw(bad_limits) if _rarely(draw) else 3,
                              "per_day": draw(bad_limits) if _rarely(draw) else 1}
        out.append(item)
    return out


def _target(draw, step_ids: list, default: str):
    """The next step (`default`), or rarely any step of the stage (back, itself, a later one:
    loops, unreachable steps) or any id."""
    if not _rarely(draw):
        return default
    pick = draw(st.integers(0, len(step_ids)))
    return step_ids[pick] if pick < len(step_ids) else draw(bad_ids)


def _step(draw, stage_ids: list, step_ids: list, k: int, journey_ids: list) -> dict:
    """Step k of a stage: any kind (the last one ends or jumps), with its kind's fields."""
    last = k == len(step_ids) - 1
    kind = draw(step_kinds)
    if last != (kind in ("end", "jump")) and not _rarely(draw):
        kind = "end" if last else "wait"  # an end or a jump mid-stage cuts off the rest
    if _rarely(draw):
        kind = draw(bad_kinds)
    nxt = step_ids[k + 1] if not last else step_ids[0]
    step = {"id": _id(draw, step_ids[k]), "kind": kind}
    if kind == "wait":
        how = draw(wait_kinds)
        if how == "duration":
            step["duration"] = _pick(draw, good_durations, bad_durations)
        elif how == "until":
            step["until"] = _pick(draw, good_untils, bad_untils)
        elif how == "condition":
            step.update(condition=_pick(draw, good_conditions, bad_conditions),
                        timeout=_pick(draw, good_durations, bad_durations),
                        on_timeout=_target(draw, step_ids, nxt))
        else:
            step["days"] = _pick(draw, days, bad_days)
        step["next"] = _target(draw, step_ids, nxt)
    elif kind == "activation":
        step.update(destination=_id(draw, "email"), next=_target(draw, step_ids, nxt),
                    payload=_pick(draw, payloads, bad_payloads))
    elif kind == "decision":
        step["branches"] = [{"id": _id(draw, f"b{i}"),
                             "condition": _pick(draw, good_conditions, bad_conditions),
                             "next": _target(draw, step_ids, nxt)}
                            for i in range(draw(small) + (0 if _rarely(draw) else 1))]
        step["else"] = _target(draw, step_ids, nxt)
    elif kind == "ab_test":
        weights = draw(splits)
        if len(weights) < 2 and not _rarely(draw):
            weights = (50, 50)
        step["variants"] = [{"id": _id(draw, f"v{i}"),
                             "weight": draw(bad_weights) if _rarely(draw) else w,
                             "next": _target(draw, step_ids, nxt)}
                            for i, w in enumerate(weights)]
    elif kind == "merge":
        step["next"] = _target(draw, step_ids, nxt)
    elif kind == "jump":
        if draw(booleans):
            step["stage"] = _id(draw, stage_ids[draw(st.integers(0, len(stage_ids) - 1))])
        else:
            step["journey"] = _id(draw, journey_ids[draw(st.integers(0, len(journey_ids) - 1))])
    return step


@st.composite
def journeys(draw, jid, journey_ids: list) -> dict:
    """A journey of 1-3 stages of 1-4 steps of every kind."""
    stage_ids = [f"s{i}" for i in range(draw(st.integers(1, 3)))]
    stages = []
    for s in stage_ids:
        step_ids = [f"{s}_{k}" for k in range(draw(st.integers(1, 4)))]
        stage = {"id": _id(draw, s),
                 "steps": [_step(draw, stage_ids, step_ids, k, journey_ids)
                           for k in range(len(step_ids))]}
        for key in ("entry", "milestone"):
            if draw(small) == 1:
                stage[key] = _pick(draw, good_conditions, bad_conditions)
        stages.append(stage)
    journey = {"id": _id(draw, jid), "entry": _pick(draw, good_conditions, bad_conditions),
               "stages": stages}
    if draw(booleans):
        journey["reentry"] = _pick(draw, reentries, bad_reentries)
        if journey["reentry"] != "none" or _rarely(draw):
            journey["cooldown"] = _pick(draw, good_durations, bad_durations)
    if draw(booleans):
        journey["goal"] = _pick(draw, good_conditions, bad_conditions)
        journey["exits"] = [_pick(draw, good_conditions, bad_conditions)
                            for _ in range(draw(small))]
    if draw(booleans):
        journey["require_wait_after_activation"] = _pick(draw, booleans, scalars)
    return journey


journey_id_lists = st.lists(st.sampled_from(["j", "k"]), max_size=2, unique=True)


@st.composite
def generated_documents(draw) -> dict:
    """segments, deliveries and journeys as above; rarely a top-level key missing."""
    segs = draw(segments())
    jids = draw(journey_id_lists)
    doc = {"segments": segs, "deliveries": draw(deliveries(len(segs))),
           "journeys": [draw(journeys(jid, jids)) for jid in jids]}
    if _rarely(draw):
        del doc[draw(st.sampled_from(sorted(doc)))]
    return doc


# The example file's parts, mixed with generated ones and then mutated.
@st.composite
def example_based(draw) -> dict:
    doc = {"segments": list(EXAMPLE["segments"]), "deliveries": list(EXAMPLE["deliveries"]),
           "journeys": list(EXAMPLE["journeys"])}
    if draw(st.booleans()):
        doc["segments"] += draw(segments())
    if draw(st.booleans()):
        jid = draw(st.sampled_from(["onboarding", "j"]))
        doc["journeys"].append(draw(journeys(jid, ["onboarding", jid])))
    return doc


yaml_ish = st.dictionaries(st.one_of(st.sampled_from(TOP_KEYS), yaml_keys),
                           json_like(keys=st.one_of(words, yaml_keys), max_leaves=10),
                           max_size=3)
documents = st.one_of(
    mutated(example_based(), names=words, max_mutations=4),
    mutated(example_based(), names=words, max_mutations=1),
    mutated(generated_documents(), names=words, max_mutations=2),
    generated_documents(),
    yaml_ish,
    json_like(keys=st.one_of(words, yaml_keys), max_leaves=6),
)


# YAML's own syntax: indicators, anchors and aliases, tags (the safe loader must refuse
# python/* ones), special scalars, document markers, escapes.
YAML_TOKENS = ("segments:", "deliveries:", "journeys:", "\n", "\n  - ", "  ", "- ", "id: a",
               "condition: ", "sql: ", "{", "}", "[", "]", ": ", ", ", "&a ", "*a", "<<: *a",
               "!!set ", "!!binary ", "!!omap ", "!!str ", "!!int ", "!!python/object:os.system ",
               "!!python/name:os.system ", "!custom ", ".nan", ".inf", "-.inf", "2026-01-01",
               "2026-01-01T00:00:00Z", "~", "null", "yes", "0x1F", "1e400", "'", '"',
               '"\\ud800"', '"\\x00"', "|\n", ">\n", "# c", "---\n", "...\n",
               "%YAML 1.1\n", "? ", "\t", "\ufeff", "\x00")
# The example file cut into its items (a segment, a delivery, a journey), each a small
# document of its own: YAML is parsed in pure Python, and the whole file takes ~13 ms.
EXAMPLE_ITEMS = tuple(
    f"{section}\n  - {item.strip()}\n"
    for section, body in re.findall(r"^(\w+:)\n(.*?)(?=^\w+:|\Z)", EXAMPLE_TEXT, re.M | re.S)
    for item in re.split(r"^  - ", body, flags=re.M) if item.strip())


def mutate_text(text: str, program: bytes) -> str:
    """`text` changed by `program`, two bytes (operation, argument) at a time: insert a
    token of YAML syntax, cut, repeat a run, swap a character, cut the rest."""
    for i in range(0, len(program) - 1, 2):
        op, arg = program[i] % 5, program[i + 1]
        at = arg * (len(text) + 1) // 256
        if op == 0:
            text = text[:at] + YAML_TOKENS[arg % len(YAML_TOKENS)] + text[at:]
        elif op == 1:
            text = text[:at] + text[at + 1 + arg % 12:]
        elif op == 2:
            text = text[:at] + text[at:at + 1 + arg % 20] * 2 + text[at:]
        elif op == 3 and at < len(text):
            text = text[:at] + chr((ord(text[at]) + arg) % 0x110000) + text[at + 1:]
        elif op == 4 and arg > 200:
            text = text[:at]
    return text


yaml_texts = st.one_of(
    st.builds(mutate_text, st.sampled_from(EXAMPLE_ITEMS), st.binary(max_size=12)),
    st.builds(mutate_text, st.sampled_from(EXAMPLE_ITEMS), st.binary(max_size=4)),
    st.lists(st.sampled_from(YAML_TOKENS + ("a", "1", "b: c")), max_size=16).map("".join),
    texts,
)


# ---------------------------------------------------------------- the promises
# Every bug these tests found is fixed and has a test of its own at the end of this file.


def loaded(source, existing: DefinitionSet | None = None) -> DefinitionSet | None:
    """The loader's promise: a DefinitionSet, or DefinitionError with (path, problem) pairs."""
    try:
        defs = load_definitions(source, existing)
    except DefinitionError as exc:
        assert isinstance(exc.errors, list) and exc.errors, repr(exc)
        for entry in exc.errors:
            assert isinstance(entry, tuple) and len(entry) == 2, entry
            path, problem = entry
            assert isinstance(path, str), entry  # empty only for an empty top-level key
            assert isinstance(problem, str) and problem, entry
        event("rejected")
        return None
    assert isinstance(defs, DefinitionSet)
    return defs


def published(source, defs: DefinitionSet) -> None:
    """What `cjo apply` and the workers do with an accepted set (topology/pipeline/definitions.py):
    each record becomes JSON text; from_records rebuilds the set from the parsed JSON, with
    the same records; and applying the same source again over it changes nothing."""
    records = to_records(defs, all_versions=True)
    texts_ = [(key, json.dumps(body, sort_keys=True)) for key, body in records]
    on_the_topic = from_records([(key, json.loads(text)) for key, text in texts_])
    assert [(key, json.dumps(body, sort_keys=True))
            for key, body in to_records(on_the_topic, all_versions=True)] == texts_
    again = load_definitions(source, on_the_topic)
    versions = {jid: sorted(v) for jid, v in again.journey_versions.items()}
    if versions != {jid: sorted(v) for jid, v in on_the_topic.journey_versions.items()}:
        raise AssertionError(f"applying the same file again made new versions: {versions}")


@FUZZ
@given(doc=documents)
def test_any_document_is_a_definition_set_or_every_problem_with_its_place(doc):
    """load_definitions on any parsed document (arbitrary, generated, or the example file
    mutated) returns a DefinitionSet, which publishes and reads back unchanged, or raises
    DefinitionError listing each problem with its path; never another exception."""
    defs = loaded(doc)
    if defs is not None:
        event("accepted")
        note(f"accepted: {doc!r}")
        published(doc, defs)


@FUZZ
@given(text=yaml_texts)
def test_any_yaml_text_is_a_definition_set_or_every_problem_with_its_place(text):
    """The same promise for the text itself (what the CLI reads and the view receives):
    YAML that does not parse, that is not a mapping, or that is, all end in DefinitionError
    or a DefinitionSet."""
    defs = loaded(text)
    if defs is not None:
        event("accepted")
        published(text, defs)


# ---------------------------------------------------------------- open bugs, pinned


def _rejected_or_loaded(source) -> None:
    """The promise, for the pinned cases: DefinitionError or a DefinitionSet."""
    try:
        load_definitions(source)
    except DefinitionError:
        pass


JOURNEY = {"id": "j", "entry": {"count.view": {"gte": 1}}}


@pytest.mark.parametrize("stage_id, step_id", [("s0", ["a"]), (["s"], "a"), ("s0", {"a": 1})])
def test_a_step_or_stage_id_that_is_not_text_is_an_error(stage_id, step_id):
    """Every id is text; any other value is a DefinitionError naming its place."""
    _rejected_or_loaded({"journeys": [{**JOURNEY, "stages": [
        {"id": stage_id, "steps": [{"id": step_id, "kind": "end"}]}]}]})


def test_sql_that_is_not_unicode_is_an_error():
    """SQL text that is not valid Unicode is a DefinitionError (`not valid SQL`)."""
    _rejected_or_loaded({"segments": [{"id": "a", "sql": "SELECT '\ud800'"}]})


@pytest.mark.parametrize("text", ["!!int", "!!float x", "!!bool x", "!!timestamp x",
                                  "journeys: [{id: j, stages: [{id: s, steps: "
                                  "[{id: w, kind: wait, until: 2026-02-30}]}]}]"])
def test_a_yaml_value_that_cannot_be_built_is_an_error(text):
    """YAML whose values cannot be built is a DefinitionError (`not valid YAML`)."""
    _rejected_or_loaded(text)


def test_an_until_after_year_9999_can_be_applied():
    """A definition that validates can be published: to_records and from_records take it,
    or the loader refuses the time."""
    defs = None
    try:
        defs = load_definitions({"journeys": [{**JOURNEY, "stages": [{"id": "s", "steps": [
            {"id": "w", "kind": "wait", "until": LAST_DATETIME_MS + 1, "next": "e"},
            {"id": "e", "kind": "end"}]}]}]})
    except DefinitionError:
        return
    published({}, defs)


def test_a_nan_in_a_payload_is_refused():
    """NaN is not equal to itself, so a payload holding one would make every apply of the
    same file a new journey version: the loader refuses it, naming the payload."""
    text = ("journeys:\n- id: j\n  entry: {count.view: {gte: 1}}\n  stages:\n  - id: s\n"
            "    steps:\n    - {id: a, kind: activation, destination: email, payload: "
            "{x: .nan}, next: w}\n    - {id: w, kind: wait, duration: 1d, next: e}\n"
            "    - {id: e, kind: end}\n")
    with pytest.raises(DefinitionError) as error:
        load_definitions(text)
    assert any(path.endswith("payload") for path, _ in error.value.errors)


def test_a_condition_that_contains_itself_is_an_error():
    _rejected_or_loaded("segments: [{id: a, condition: &c {not: *c}}]")


def test_deeply_nested_yaml_is_an_error():
    _rejected_or_loaded("segments: " + "[" * 500 + "]" * 500)


@pytest.mark.parametrize("what", ["segments", "steps"])
def test_a_long_chain_of_references_is_checked(what):
    n = 1_000
    if what == "segments":
        doc = {"segments": [{"id": f"s{i}", "condition": {"segment": f"s{i + 1}"}}
                            for i in range(n)]
               + [{"id": f"s{n}", "condition": {"count.x": {"gte": 1}}}]}
    else:
        steps = [{"id": f"m{i}", "kind": "merge", "next": f"m{i + 1}"} for i in range(n)]
        doc = {"journeys": [{**JOURNEY, "stages": [{"id": "s", "steps": steps + [
            {"id": f"m{n}", "kind": "end"}]}]}]}
    _rejected_or_loaded(doc)


def _alias_bomb(levels: int) -> str:
    """Segment i's condition is all of segment i-1's condition four times, by YAML alias:
    a few hundred bytes that stand for 4**levels comparisons."""
    lines = ["segments:", "  - id: s0", "    condition: &c0 {count.x: {gte: 1}}"]
    for i in range(1, levels + 1):
        lines += [f"  - id: s{i}",
                  f"    condition: &c{i} {{all: [*c{i - 1}, *c{i - 1}, *c{i - 1}, *c{i - 1}]}}"]
    return "\n".join(lines)


def test_yaml_aliases_cannot_multiply_a_document():
    """The parsed definitions are no larger than the text: a condition has at most as many
    nodes as the file has characters (each node takes a dozen characters without aliases),
    or the file is refused."""
    text = _alias_bomb(7)
    try:
        defs = load_definitions(text)
    except DefinitionError:
        return
    nodes = sum(1 for s in defs.segments for _ in walk(s.condition))
    assert nodes <= len(text), f"{nodes} condition nodes from {len(text)} characters"
