"""The engine-specific parts of the sidecar's SQL (sampling, percentiles, the table swap) are
rendered per engine; everything else is shared. And the sidecar's tables are readable through
`cjo sidecar query` / `SidecarReader`, which accepts only one read-only SELECT."""
from __future__ import annotations

import pytest

from cjo.settings import Settings
from sidecar.engines import ENGINES, engine, engine_of
from sidecar.follower import database_path
from sidecar.query import SidecarReader, SidecarUnavailable
from sidecar.store import SparseStore
from tests.unit.test_sidecar_store import manifest, profile_rows, write


def test_each_engine_spells_its_sampling_clause_and_percentile():
    assert engine("duckdb").sample(10) == "TABLESAMPLE BERNOULLI (10 PERCENT)"
    assert engine("spark").sample(10, seed=3) == "TABLESAMPLE (10 PERCENT) REPEATABLE (3)"
    assert engine("duckdb").percentile("x", 0.5) == "quantile_cont(x, 0.5)"
    assert engine("spark").percentile("x", 0.5) == "percentile(x, 0.5)"
    with pytest.raises(ValueError, match="unknown SQL engine 'trino'"):
        engine("trino")  # rendered but never run: gone


def test_the_swap_is_a_rename_on_duckdb_and_one_atomic_replace_on_iceberg():
    assert ENGINES["duckdb"].replace_table("t", "SELECT 1") == [
        "CREATE TABLE t_next AS SELECT 1", "DROP TABLE t", "ALTER TABLE t_next RENAME TO t"]
    assert ENGINES["spark"].replace_table("t", "SELECT 1") == [
        "CREATE OR REPLACE TABLE t USING iceberg AS SELECT 1"]


def test_tables_scratch_tables_and_upserts_per_engine():
    cols = {"partition": "int", "offset": "bigint"}
    assert ENGINES["duckdb"].create_table("o", cols, "partition") == \
        'CREATE TABLE IF NOT EXISTS o ("partition" INTEGER PRIMARY KEY, "offset" BIGINT)'
    assert ENGINES["spark"].create_table("o", cols, "partition") == \
        'CREATE TABLE IF NOT EXISTS o ("partition" INT, "offset" BIGINT) USING iceberg'
    assert ENGINES["duckdb"].upsert("o", cols, "partition") == \
        "INSERT OR REPLACE INTO o VALUES (?, ?)"
    assert ENGINES["spark"].upsert("o", cols, "partition").startswith(
        'MERGE INTO o t USING (SELECT CAST(? AS INT) AS "partition", CAST(? AS BIGINT) AS '
        '"offset") s ON t."partition" = s."partition"')
    assert ENGINES["spark"].temp_table("x", "SELECT 1")[-1] == "CACHE TABLE x AS SELECT 1"
    assert ENGINES["spark"].begin() == ENGINES["spark"].commit() == []
    assert engine_of(object()) is ENGINES["duckdb"]


def test_parameters_are_bound_as_spark_literals_outside_quotes():
    from sidecar.spark import bind

    sql = "SELECT '?', \"$x\", a FROM t WHERE a = ? AND b = $x -- ?\n AND c = ?"
    assert bind(sql.replace("$x", "?"), None) == sql.replace("$x", "?")
    assert bind("SELECT ? , ?, ?, ?, ?", ["it's \\", 2 ** 40, None, True, 2.5]) == \
        "SELECT 'it''s \\\\' , CAST(1099511627776 AS BIGINT), NULL, TRUE, CAST('2.5' AS DOUBLE)"
    assert bind("SELECT '$x', $x, \"$x\"", {"x": "a"}) == "SELECT '$x', 'a', \"$x\""


@pytest.fixture
def sidecar_db(tmp_path):
    settings = Settings(app_id="q", data_dir=tmp_path)
    database_path(settings).parent.mkdir(parents=True)
    store = SparseStore(str(database_path(settings)))
    rows = [r for i in range(10) for r in profile_rows(f"p{i}", ["s1", "s2"] if i < 4 else ["s1"])]
    store.load_manifest(manifest(0, {**write(tmp_path / "f.parquet", rows), "kind": "full",
                                     "offset": 5}))
    store.db.close()
    return settings


def test_the_reader_answers_selects_and_refuses_anything_else(sidecar_db):
    with SidecarReader(sidecar_db) as sidecar:
        assert sidecar.sql("SELECT count(DISTINCT profile_id) AS n FROM journey_state") == \
            [{"n": 10}]
        assert sidecar.in_stage("j", 1, "s2") == {"p0", "p1", "p2", "p3"}
        assert [(c.stage, c.entered, c.to_next) for c in sidecar.funnel("j", 1)] == \
            [("s1", 10, 4), ("s2", 4, 0)]
        for bad in ("DROP TABLE journey_state", "SELECT 1; SELECT 2", "selec"):
            with pytest.raises(ValueError):
                sidecar.sql(bad)
        assert sidecar.sql("SELECT count(*) AS n FROM journey_state")[0]["n"] > 10


def test_a_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(SidecarUnavailable, match="sidecar run --once"):
        SidecarReader(Settings(app_id="none", data_dir=tmp_path))
