"""A worker at WARNING must not pay for aiokafka's DEBUG logging (Faust's spinner would set the
root logger to DEBUG, and aiokafka's loggers inherit it)."""
import logging

import faust

from cjo.settings import Settings
from topology.app import create_app


def test_library_loggers_follow_the_worker_level_not_the_root(tmp_path):
    saved = {n: logging.getLogger(n).level for n in ("", "aiokafka", "faust", "mode")}
    saved_handlers = list(logging.root.handlers)
    try:
        settings = Settings.from_env({"CJO_DATA_DIR": str(tmp_path), "CJO_LOG_LEVEL": "warning"})
        app = create_app(settings).app
        worker = faust.Worker(app, loglevel="warning", logfile=str(tmp_path / "w.log"))
        worker._setup_logging()
        # What Faust does when it draws its spinner on a terminal:
        logging.root.setLevel(logging.DEBUG)
        assert logging.getLogger("aiokafka.consumer.fetcher").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("faust.transport").getEffectiveLevel() == logging.WARNING
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        logging.root.handlers[:] = saved_handlers
