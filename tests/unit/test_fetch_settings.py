"""The worker's Kafka consumer fetches as configured: the broker holds a fetch for at most
`CJO_FETCH_WAIT_MS`, and answers sooner once 16 KiB wait (topology.machinery.faust_fixes)."""
import asyncio

from cjo.settings import Settings
from topology.app import create_app
from topology.machinery.faust_fixes import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES


def consumer_fetch(env: dict) -> tuple[int, int]:
    """(max wait ms, min bytes) of the aiokafka consumer the worker's app makes (not started:
    no broker is needed)."""
    async def make() -> tuple[int, int]:
        app = create_app(Settings.from_env(env)).app
        kafka = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return kafka._fetch_max_wait_ms, kafka._fetch_min_bytes
        finally:
            await kafka.stop()

    return asyncio.run(make())


def test_the_fetch_wait_comes_from_the_settings(tmp_path):
    assert consumer_fetch({"CJO_DATA_DIR": str(tmp_path), "CJO_FETCH_WAIT_MS": "7"}) == (
        7, FETCH_MIN_BYTES)


def test_by_default_a_fetch_waits_20_ms_not_fausts_one_and_a_half_seconds(tmp_path):
    assert FETCH_MAX_WAIT_MS == Settings().fetch_wait_ms == 20
    assert consumer_fetch({"CJO_DATA_DIR": str(tmp_path)}) == (20, 16 * 1024)
