"""The local Kafka broker: Apache Kafka's jars from Maven Central, one KRaft process on 127.0.0.1.

install  resolves kafka_2.13 and its runtime closure with Maven into a cache outside the
         repository (CJO_KAFKA_HOME/<version>/lib).
start    formats the storage once, launches broker+controller in one JVM, and returns when the
         broker answers a Kafka metadata request; idempotent; on failure raises BrokerError with
         the tail of the broker's log.
stop     SIGTERM, then SIGKILL after a grace period.

The broker listens on the host:port of CJO_BROKER and its controller on the next port.
"""
from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cjo.settings import Settings

KAFKA_DIR = Path(__file__).resolve().parent / "kafka"
POM = KAFKA_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DIR / "log4j2.properties"
HEAP = os.environ.get("CJO_BROKER_HEAP", "512m")


class BrokerError(RuntimeError):
    """The broker could not be installed, started or stopped; the message says why."""


@dataclass(frozen=True)
class LocalBroker:
    version: str
    lib_dir: Path
    data_dir: Path
    host: str
    port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> "LocalBroker":
        first = settings.bootstrap_servers.split(",")[0]
        host, _, port = first.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise BrokerError(
                f"CJO_BROKER={settings.broker_url!r}: the local broker only runs on 127.0.0.1"
            )
        return cls(
            version=settings.kafka_version,
            lib_dir=settings.kafka_home / settings.kafka_version / "lib",
            data_dir=settings.data_dir / "broker",
            host="127.0.0.1",
            port=int(port),
        )

    # -- paths ------------------------------------------------------------------------------
    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft-logs"

    # -- install ----------------------------------------------------------------------------
    def installed(self) -> bool:
        return (self.lib_dir / ".complete").exists()

    def install(self) -> Path:
        """Resolve the broker's jars with Maven (cached: a second call does nothing)."""
        if self.installed():
            return self.lib_dir
        if shutil.which("mvn") is None:
            raise BrokerError("Maven (mvn) is not on PATH; install Maven 3.8+ to fetch Kafka")
        tmp = self.lib_dir.with_name("lib.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        cmd = [
            "mvn", "-q", "-B", "-f", str(POM),
            f"-Dkafka.version={self.version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(
                f"Maven could not resolve Kafka {self.version}:\n"
                + _tail(proc.stdout + proc.stderr, 30)
            )
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        tmp.rename(self.lib_dir)
        (self.lib_dir / ".complete").write_text(self.version + "\n")
        return self.lib_dir

    # -- run --------------------------------------------------------------------------------
    def _java(self, main_class: str, *args: str, log: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH; install a JDK 17+")
        return [
            java,
            f"-Xmx{HEAP}", f"-Xms{HEAP}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dcjo.broker.log={log}",
            "-cp", str(self.lib_dir / "*"),
            main_class, *args,
        ]

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{self.host}:{self.port},"
                    f"CONTROLLER://{self.host}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.log_dirs}",
                    # One node: every internal topic has one replica.
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=10",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "default.replication.factor=1",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    # Compaction stays on (changelogs, definitions, snapshot manifests are
                    # compacted) with a small dedupe buffer: the default takes 128 MB of heap.
                    "log.cleaner.enable=true",
                    "log.cleaner.dedupe.buffer.size=8388608",
                    "log.cleaner.threads=1",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",  # topics are created with their partition count
                    "",
                ]
            )
        )

    def _format(self) -> None:
        if (self.log_dirs / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        cmd = self._java(
            # `--cluster-id=<id>` in one word: a random id may start with "-", which the tool
            # would take for an option (it failed so about one start in 64).
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
            "-c", str(self.config_file),
            log=str(self.data_dir / "format.log"),
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 and not (self.log_dirs / "meta.properties").exists():
            # It is safe to run again while nothing was written.
            proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            try:
                log = (self.data_dir / "format.log").read_text(errors="replace")
            except FileNotFoundError:
                log = ""
            raise BrokerError(
                f"formatting the broker's storage failed (exit code {proc.returncode}):\n"
                + (_tail(proc.stdout + proc.stderr + log, 30) or "(no output)"))

    def pid(self) -> int | None:
        """The broker's pid if its process is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        if _is_zombie(pid):
            return None
        return pid

    def start(self, timeout: float = 90.0) -> float:
        """Start the broker unless it runs already; returns the seconds it took."""
        began = time.monotonic()
        if self.pid() is not None and _answers(self.bootstrap, 5.0):
            return 0.0
        if self.pid() is None and _port_open(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is taken by another process; "
                "set CJO_BROKER to a free port"
            )
        self.install()
        self._write_config()
        self._format()
        # Truncate the old log so that a failure shows this start's tail only.
        self.log_file.write_text("")
        out = open(self.data_dir / "stdout.log", "ab")
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(self.config_file), log=str(self.log_file)),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # the broker outlives `cjo broker start`
        )
        out.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = began + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            if _port_open(self.host, self.port) and _answers(self.bootstrap, 5.0):
                return time.monotonic() - began
            time.sleep(0.2)
        self.stop()
        raise BrokerError(
            f"the broker did not answer on {self.bootstrap} within {timeout:.0f}s; "
            f"last lines of {self.log_file}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 30.0) -> bool:
        """Stop the broker; returns False when it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.pid() is not None:
            _reap(pid)
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                _reap(pid)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """kill -9 the broker (fault tests)."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                _reap(pid)
                time.sleep(0.05)

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"stopped (Kafka {self.version}, data in {self.data_dir})"
        state = "running" if _port_open(self.host, self.port) else "starting"
        return f"{state}: pid {pid}, Kafka {self.version}, {self.bootstrap}, log {self.log_file}"

    def log_tail(self, lines: int = 40) -> str:
        text = ""
        for path in (self.log_file, self.data_dir / "stdout.log"):
            try:
                text += path.read_text(errors="replace")
            except FileNotFoundError:
                pass
        return _tail(text, lines) or "(the log is empty)"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers(bootstrap: str, timeout: float) -> bool:
    """True when the broker answers a metadata request (a TCP accept alone is too early)."""
    from aiokafka import AIOKafkaClient

    async def probe() -> bool:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), timeout)
            return bool(client.cluster.brokers())
        except Exception:
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False


def _reap(pid: int) -> None:
    """Collect the exit status when the broker is our own child (tests), so it is not a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
