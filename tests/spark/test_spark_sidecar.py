"""The sidecar on Spark SQL over Iceberg computes exactly what it computes on DuckDB: the same
snapshot files and event archive (a demo-sized run with merges, journeys and audiences, from
tests/spark/scenario.py) folded, counted and checked on both engines, every result compared.
Readers of the Iceberg tables see one published fold, and SQL the sidecar did not write reads
nothing but its tables there either."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from cjo.settings import Settings
from sidecar.archive import EventArchive
from sidecar.audiences import compute, complete, prepare
from sidecar.check import check
from sidecar.funnels import funnel, journeys, stage_sets, steps, version_rows
from sidecar.query import SidecarReader
from sidecar.sandbox import connect
from sidecar.spark import SparkOptions, pin, publish
from sidecar.store import SparseStore
from state.conditions import parse_condition
from state.definitions import Segment
from state.sql import compile_segment, last_seen_profiles
from tests.spark.scenario import Scenario

pytestmark = pytest.mark.spark

TABLES = {  # every table the fold writes
    "journey_state": "SELECT * FROM journey_state",
    "snapshot_profiles": "SELECT * FROM snapshot_profiles",
    "partition_offsets": "SELECT * FROM partition_offsets",
    "loaded_files": "SELECT * FROM loaded_files",
}
# Batch audiences in SQL both engines read (Spark has no QUALIFY: the example's is rewritten).
AUDIENCES = [
    """SELECT profile_id FROM (
         SELECT profile_id, percent_rank() OVER (ORDER BY sum(v_double) DESC) AS pr
         FROM events WHERE name = 'purchase' AND field = 'amount'
         GROUP BY profile_id) ranked
       WHERE pr < 0.2""",
    """SELECT profile_id FROM journey_state WHERE key = 'stage:cart'
       UNION SELECT profile_id FROM events WHERE name = 'add_to_cart'
       EXCEPT SELECT profile_id FROM snapshot_profiles WHERE merged""",
]


@pytest.fixture(scope="module")
def both(spark_driver, tmp_path_factory):
    """The scenario folded by DuckDB and by Spark (two batches: the full snapshots, published,
    then the deltas, published), with the event archive on both."""
    where = tmp_path_factory.mktemp("scenario")
    scenario = Scenario(where)
    duck = SparseStore(str(where / "sidecar.duckdb"))
    settings = Settings(app_id="equivalence", data_dir=where / "data")
    spark = SparseStore.on(SparkOptions().connect(settings))
    for store in (duck, spark):
        for manifests in (scenario.first_manifests, scenario.manifests):
            for m in manifests:
                store.load_manifest(m)
            store.checkpoint()
        EventArchive(store.db, scenario.archive)
    duck.db.close()
    # DuckDB as the sidecar reads it for SQL it did not write: the locked connection.
    locked = connect(where / "sidecar.duckdb", scenario.archive)
    yield scenario, locked, spark.db, settings
    locked.close()


def rows(db, sql: str, params=None) -> list[tuple]:
    """The rows, sorted (nulls first: the engines sort nulls differently)."""
    found = (db.execute(sql, params) if params else db.execute(sql)).fetchall()
    return sorted((tuple(r) for r in found), key=lambda r: [(x is not None, x) for x in r])


def test_the_fold_writes_the_same_tables(both):
    _, duck, spark, _ = both
    for table, sql in TABLES.items():
        expected = rows(duck, sql)
        assert expected, table
        assert rows(spark, sql) == expected, table
    assert len({r[0] for r in rows(duck, "SELECT * FROM snapshot_profiles WHERE merged")}) > 10


def test_stage_sets_funnels_and_steps_are_the_same(both):
    scenario, duck, spark, _ = both
    found = journeys(duck)
    assert found and journeys(spark) == found
    for j, v in found:
        order = scenario.stage_order().get((j, v))
        expected = funnel(duck, j, v, order)
        assert sum(s.entered for s in expected) > 50 and any(s.p90_ms for s in expected)
        assert funnel(spark, j, v, order) == expected
        assert steps(spark, j, v) == steps(duck, j, v)
        for i, stage in enumerate(order):
            following = order[i + 1] if i + 1 < len(order) else None
            assert members(spark, j, v, stage, following) == \
                members(duck, j, v, stage, following), stage


def members(db, j, v, stage, following) -> dict[str, list[str]]:
    with version_rows(db, j, v):
        return {name: sorted(r[0] for r in rows(db, sql))
                for name, sql in stage_sets(stage, following).items()}


def test_the_check_finds_the_same_on_every_profile(both):
    scenario, duck, spark, _ = both
    segments = {s.id: s.condition for s in scenario.defs.segments if s.condition is not None}
    expected = check(duck, 100.0, segments=segments)
    assert expected.ok, expected  # the model's state and the archive agree
    assert expected.sampled_profiles > 150 and expected.recounted_profiles > 50
    got = check(spark, 100.0, segments=segments)
    assert (got.sampled_profiles, got.recounted_profiles, got.violations, got.examples) == \
        (expected.sampled_profiles, expected.recounted_profiles, expected.violations,
         expected.examples)
    # Spark's own sampler, unseeded: every invariant and the recount read the same sample.
    sampled = check(spark, 30.0, segments=segments)
    assert 0 < sampled.sampled_profiles < expected.sampled_profiles
    assert sampled.ok, sampled


def test_compiled_conditions_select_the_same_profiles(both):
    """Every condition of the condition tests (operators, types, windows, quotes, integers past
    2**53) and every segment of the example definitions, on the events of one random world."""
    from tests.unit.test_condition_sql import ARROW_SCHEMA, CONDITIONS, SEGMENTS, World

    scenario, duck, spark, _ = both
    world = World(1)
    table = world.con.execute("SELECT * FROM events").to_arrow_table().cast(ARROW_SCHEMA)
    spark.spark.createDataFrame(table).createOrReplaceTempView("world_events")
    queries = []
    for source in CONDITIONS:
        cond = parse_condition(source)
        expected = world.sql(compile_segment(cond, segments=SEGMENTS,
                                             profiles_sql=last_seen_profiles()))
        queries.append((source, expected, compile_segment(
            cond, dialect="spark", segments=SEGMENTS, events_table="world_events",
            profiles_sql=last_seen_profiles("world_events", "spark"))))
    segments = {s.id: s.condition for s in scenario.defs.segments if s.condition is not None}
    for sid, cond in segments.items():
        expected = {r[0] for r in rows(duck, compile_segment(
            cond, segments=segments, profiles_sql=last_seen_profiles()))}
        queries.append((sid, expected, compile_segment(
            cond, segments=segments, dialect="spark",
            profiles_sql=last_seen_profiles(dialect="spark"))))
    # Twenty conditions a Spark job (one job each takes about a second).
    for at in range(0, len(queries), 20):
        batch = queries[at:at + 20]
        union = " UNION ALL ".join(f"SELECT {i} AS q, profile_id FROM ({sql}) x{i}"
                                   for i, (_, _, sql) in enumerate(batch))
        got = {i: set() for i in range(len(batch))}
        for i, pid in rows(spark, union):
            got[i].add(pid)
        for i, (what, expected, _) in enumerate(batch):
            assert got[i] == expected, what
    assert sum(1 for _, expected, _ in queries if expected) > 40


def test_audiences_compute_the_same_runs(both):
    _, duck, spark, _ = both
    for db in (duck, spark):
        prepare(db)
    for i, sql in enumerate(AUDIENCES):
        segment = Segment(f"a{i}", None, sql=sql)
        runs = []
        for db in (duck, spark):
            first = compute(db, segment)
            complete(db, first, 1)
            runs.append((first, compute(db, segment)))  # the second: nothing changed
        (d1, d2), (s1, s2) = runs
        assert d1.members > 5 and d1.entered and not d2.entered and not d2.left
        assert (s1, s2) == (d1, d2)
    for table in ("audience_members", "audience_pending", "audience_uncertain", "audience_runs"):
        sql = f"SELECT * FROM {table}"
        assert rows(spark, sql) == rows(duck, sql), table


@pytest.mark.parametrize("sql, problem", [
    ("SELECT * FROM parquet.`/etc/hosts`", "names a file"),            # DuckDB's parser first
    ('SELECT * FROM parquet."/etc/hosts"', "names a file"),
    ("SELECT reflect('java.lang.System', 'getenv', 'HOME') AS profile_id", "reflect"),
    ("SELECT java_method('java.lang.System', 'getenv', 'HOME') AS profile_id", "java_method"),
    ("SELECT current_user() AS profile_id", "current_user"),
    ("SELECT profile_id FROM read_files('/etc')", "read_files"),
    ("SELECT profile_id FROM cjo.equivalence.journey_state", "not one of the sidecar's tables"),
    ("SELECT profile_id FROM events QUALIFY row_number() OVER () < 2", "not valid Spark SQL"),
])
def test_sql_that_reads_outside_the_tables_is_refused_on_spark(both, sql, problem):
    from sidecar.audiences import select_problem

    _, _, spark, _ = both
    assert problem in (select_problem(spark, sql) or "")
    with pytest.raises(ValueError, match="audience x"):
        compute(spark, Segment("x", None, sql=sql))


@pytest.mark.parametrize("sql, problem", [
    ("SELECT * FROM parquet.`/etc/hosts`", "parquet./etc/hosts is not one of"),
    ("SELECT * FROM csv.`/etc/passwd`", "csv./etc/passwd is not one of"),
    ("SELECT 1 FROM events WHERE EXISTS (SELECT 1 FROM json.`/x`)", "json./x is not one of"),
    ("WITH t AS (SELECT reflect('a', 'b') AS x) SELECT x FROM t", "function reflect"),
    ("SELECT * FROM read_files('/etc')", "table function read_files"),
    ("SELECT * FROM IDENTIFIER('journey_state')", "IDENTIFIER"),
    ("SELECT catalog.fn(1)", "function catalog.fn"),
    ("INSERT INTO journey_state SELECT * FROM journey_state", "only a SELECT"),
])
def test_sparks_own_check_refuses_what_spark_would_read_outside(both, sql, problem):
    from sidecar.spark import select_problem as spark_problem

    _, _, spark, _ = both
    assert problem in (spark_problem(spark, sql) or "")
    assert spark_problem(spark, "WITH t AS (SELECT profile_id FROM events) SELECT * FROM t "
                                "JOIN range(3) r ON true") is None


def test_spark_reads_no_file_through_sql_even_unchecked(both, tmp_path):
    import pyarrow.parquet as pq

    _, _, spark, _ = both
    pq.write_table(pa.table({"profile_id": ["secret"]}), tmp_path / "f.parquet")
    with pytest.raises(Exception, match="TABLE_OR_VIEW_NOT_FOUND"):
        rows(spark, f"SELECT * FROM parquet.`{tmp_path / 'f.parquet'}`")


def test_a_reader_sees_the_published_fold_not_a_half_done_one(both, tmp_path):
    """(Last in the module: it folds one more file on Spark.) A fold writes journey_state, then snapshot_profiles, loaded_files, partition_offsets:
    a pinned reader sees none of it until the writer publishes, then all of it."""
    scenario, _, spark, settings = both
    reader = SidecarReader(settings, SparkOptions())
    before = {t: rows(reader.db, sql) for t, sql in TABLES.items()}
    assert before["journey_state"] == rows(spark, TABLES["journey_state"])
    # A new delta for one partition, folded but not published yet.
    pid = before["snapshot_profiles"][0][0]
    from tests.spark.scenario import partition_of
    from topology.pipeline.snapshots import SnapshotFile

    part = partition_of(pid)
    out = SnapshotFile(tmp_path, part, scenario.offsets[part] + 5, "delta")
    out.add([{**scenario.model.profiles[pid], "journeys": {}, "segments": []}])
    entry = out.close()
    entry["path"] = Path(entry["path"]).as_uri()  # a file named by a URI, as on shared storage
    writer = SparseStore.on(spark)
    writer.load_manifest({"partition": part, "offset": entry["offset"],
                          "files": [*scenario.manifests[part]["files"], entry]})
    assert rows(spark, TABLES["journey_state"]) != before["journey_state"]
    assert {t: rows(reader.db, sql) for t, sql in TABLES.items()} == before
    fold = publish(spark)
    assert pin(reader.db) == fold
    for table, sql in TABLES.items():
        assert rows(reader.db, sql) == rows(spark, sql), table
    assert reader.sql("SELECT count(*) AS n FROM loaded_files") == \
        [{"n": len(before["loaded_files"]) + 1}]
    with pytest.raises(ValueError):
        reader.sql("SELECT * FROM published_folds")
