"""Shared fixtures. Integration tests run against one real Kafka broker for the session,
started with the same deploy/ code a user runs; when it cannot start, they fail with the reason."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cjo.settings import Settings
from deploy.ports import free_port, free_port_pair

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """The session's Kafka broker. Never skipped: a broker that cannot start fails the test."""
    from deploy.broker import BrokerError, LocalBroker

    base = Settings.from_env()
    settings = base.with_(
        broker_url=f"kafka://127.0.0.1:{free_port_pair()}",
        data_dir=tmp_path_factory.mktemp("kafka"),
    )
    local = LocalBroker.from_settings(settings)
    try:
        local.start(timeout=120)
    except BrokerError as exc:
        pytest.fail(f"the Kafka broker could not start: {exc}", pytrace=False)
    yield local
    local.stop()


@pytest.fixture
def settings(broker, tmp_path, request) -> Settings:
    """Settings of a fresh app on the session broker: its own topics, tables and web port."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]
    return Settings.from_env().with_(
        app_id=f"t-{name}-{uuid.uuid4().hex[:6]}",
        broker_url=f"kafka://{broker.bootstrap}",
        data_dir=tmp_path / "data",
        partitions=8,
        web_port=free_port(),
        kafka_version=broker.version,
        read_tokens=(READ_TOKEN,),
        admin_tokens=(ADMIN_TOKEN,),
    )


READ_TOKEN = "test-read-token-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.fixture
def workers(settings, tmp_path):
    """Start real `cjo worker` processes; all are stopped at the end of the test."""
    from cjo.processes import WorkerProcess

    started: list[WorkerProcess] = []

    def start(s: Settings = settings, name: str = "worker", extra_env=None) -> WorkerProcess:
        w = WorkerProcess(s, tmp_path / f"{name}-{len(started)}.log", extra_env).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def still_clock(tmp_path):
    """The worker's clock stopped at the workload's start: journey waits of the example
    definitions never fall due unless a test moves it (the reference model does not wake)."""
    from cjo.clock import Clock
    from cjo.workload import Workload

    clock = Clock(str(tmp_path / "clock"))
    clock.set(Workload().start_ms)
    return {"CJO_CLOCK_FILE": clock.path}
