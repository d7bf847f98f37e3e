"""`cjo sidecar run --engine spark --once` and `cjo sidecar check --engine spark`, as the README
shows them, on a real broker: the scenario's snapshot manifests on the snapshots topic and the
example definitions applied; the funnels file and the check's verdict are DuckDB's."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from cjo.cli import main
from cjo.settings import Settings
from schemas.codec import AvroCodec
from sidecar.follower import results_path
from tests.spark.scenario import PARTITIONS, ROOT, Scenario
from topology.pipeline.definitions import apply_file
from topology.pipeline.topics import ensure_topics

pytestmark = pytest.mark.spark


async def _publish(settings: Settings, manifests: list[dict]) -> None:
    topic = settings.topic("snapshots")
    codec = AvroCodec("snapshot_manifest", topic)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for m in manifests:
            await producer.send_and_wait(topic, key=str(m["partition"]).encode(),
                                         value=codec.encode({**m, "created_at": 0}))
    finally:
        await producer.stop()


def test_sidecar_run_and_check_on_spark_give_what_duckdb_gives(broker, spark_driver, tmp_path,
                                                                monkeypatch, capsys):
    env = {"CJO_APP_ID": f"t-spark-cli-{uuid.uuid4().hex[:6]}",
           "CJO_BROKER": f"kafka://{broker.bootstrap}", "CJO_DATA_DIR": str(tmp_path / "data"),
           "CJO_PARTITIONS": str(PARTITIONS)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    ensure_topics(settings)
    apply_file(settings, str(ROOT / "examples" / "definitions.yaml"))
    asyncio.run(_publish(settings, Scenario(tmp_path / "scenario").manifests))

    funnels = {}
    for engine in ("duckdb", "spark"):
        started = time.monotonic()
        assert main(["sidecar", "run", "--once", "--engine", engine]) == 0
        out = capsys.readouterr().out
        assert "journey onboarding v1" in out, out
        result = json.loads(results_path(settings).read_text())
        funnels[engine] = (result["journeys"], result["steps"], result["offsets"])
        print(f"{engine}: run {time.monotonic() - started:.1f} s")
    assert funnels["spark"] == funnels["duckdb"]
    assert sum(s["entered"] for s in funnels["spark"][0][0]) > 50

    assert main(["sidecar", "check", "--engine", "spark", "--percent", "100"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK") and "checked 194 profiles" in out, out
    assert main(["sidecar", "query", "SELECT count(*) AS n FROM journey_state",
                 "--engine", "spark"]) == 0
    assert capsys.readouterr().out.split()[2] == str(funnels_rows(settings))
    assert main(["sidecar", "query", "SELECT * FROM csv.`/etc/passwd`", "--engine", "spark"]) == 2
    assert "names a file" in capsys.readouterr().err


def funnels_rows(settings: Settings) -> int:
    import duckdb

    from sidecar.follower import database_path

    with duckdb.connect(str(database_path(settings)), read_only=True) as db:
        return db.execute("SELECT count(*) FROM journey_state").fetchone()[0]
