"""Settings come from environment variables, with defaults that run on one machine."""
from pathlib import Path

import pytest

from cjo.settings import Settings


def test_defaults():
    s = Settings.from_env({"HOME": "/home/someone"})
    assert s.broker_url == "kafka://127.0.0.1:9092"
    assert s.partitions == 8
    assert s.web_port == 6066
    assert s.topic("events") == "cjo.events"


def test_variables_override_defaults():
    s = Settings.from_env({"CJO_APP_ID": "shop", "CJO_BROKER": "kafka://127.0.0.1:19092",
                           "CJO_PARTITIONS": "16", "CJO_DATA_DIR": "/srv/cjo",
                           "CJO_WEB_PORT": "7000"})
    assert (s.app_id, s.partitions, s.web_port) == ("shop", 16, 7000)
    assert s.bootstrap_servers == "127.0.0.1:19092"
    assert s.worker_dir == Path("/srv/cjo/workers/shop/7000")
    assert s.topic("events") == "shop.events"


def test_settings_survive_the_trip_to_a_child_process():
    s = Settings.from_env({"CJO_APP_ID": "x", "CJO_PARTITIONS": "3", "CJO_DATA_DIR": "/d",
                           "CJO_FETCH_WAIT_MS": "5"})
    assert s.fetch_wait_ms == 5
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize("value", ["eight", "0", "-2"])
def test_a_bad_number_is_a_clear_error(value):
    with pytest.raises(ValueError, match=f"CJO_PARTITIONS={value!r}"):
        Settings.from_env({"CJO_PARTITIONS": value})


def test_zero_turns_the_malloc_measures_off():
    s = Settings.from_env({"CJO_MALLOC_ARENAS": "0", "CJO_MALLOC_TRIM_INTERVAL": "0"})
    assert (s.malloc_arenas, s.malloc_trim_interval) == (0, 0)
    with pytest.raises(ValueError, match="CJO_MALLOC_TRIM_INTERVAL='-1'"):
        Settings.from_env({"CJO_MALLOC_TRIM_INTERVAL": "-1"})
