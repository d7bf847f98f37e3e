"""The local broker is real Apache Kafka, started and stopped by the project's deploy code."""
import socket

import pytest

from cjo.settings import Settings
from deploy.broker import BrokerError, LocalBroker
from deploy.ports import free_port_pair


def test_start_is_idempotent(broker):
    pid = broker.pid()
    assert pid is not None
    assert broker.start() == 0.0
    assert broker.pid() == pid
    assert broker.status().startswith(f"running: pid {pid}, Kafka {broker.version}")


def test_the_broker_runs_the_installed_kafka_version(broker):
    jars = {p.name for p in broker.lib_dir.glob("*.jar")}
    assert f"kafka_2.13-{broker.version}.jar" in jars
    assert f"kafka-clients-{broker.version}.jar" in jars
    assert any(j.startswith("log4j-slf4j-impl-") for j in jars)
    assert "Kafka Server started" in broker.log_file.read_text()


def _other_broker(broker, tmp_path) -> LocalBroker:
    s = Settings.from_env().with_(broker_url=f"kafka://127.0.0.1:{free_port_pair()}",
                                  data_dir=tmp_path, kafka_version=broker.version)
    return LocalBroker.from_settings(s)


def test_a_taken_port_is_a_clear_error(broker, tmp_path):
    other = _other_broker(broker, tmp_path)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", other.port))
        s.listen()
        with pytest.raises(BrokerError, match=f"port {other.port} on 127.0.0.1 is taken"):
            other.start(timeout=30)


def test_a_broker_that_cannot_start_reports_its_log(broker, tmp_path):
    other = _other_broker(broker, tmp_path)
    other._write_config()
    other._format()
    # Storage formatted for another node: Kafka refuses to start and says why in its log.
    meta = other.log_dirs / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=7"))
    with pytest.raises(BrokerError) as info:
        other.start(timeout=60)
    message = str(info.value)
    assert "exited with code" in message
    assert "node" in message.split("last lines of", 1)[1].lower()
    assert other.pid() is None


def test_stop_and_start_again_keeps_topics(broker, tmp_path):
    """A stopped broker restarts on its own storage (later issues restart it under load)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    other = _other_broker(broker, tmp_path)
    other.start(timeout=120)
    try:
        async def create_and_list():
            admin = AIOKafkaAdminClient(bootstrap_servers=other.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic("kept", 2, 1)])
            finally:
                await admin.close()

        async def listed():
            admin = AIOKafkaAdminClient(bootstrap_servers=other.bootstrap)
            await admin.start()
            try:
                return await admin.list_topics()
            finally:
                await admin.close()

        asyncio.run(create_and_list())
        assert other.stop() is True
        assert other.pid() is None
        assert other.stop() is False
        other.start(timeout=120)
        assert "kept" in asyncio.run(listed())
    finally:
        other.stop()
