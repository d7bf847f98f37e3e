"""Settings from environment variables, with defaults that run everything on one machine.

Every part (worker, broker control, demo, tests) reads the same `Settings`, so a test or a
user changes behaviour only through the documented variables.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

KAFKA_VERSION = "4.3.1"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "cjo"


def _default_kafka_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cjo" / "kafka"


def _positive(env: dict, name: str, default, kind=int):
    """A positive number from the environment (int or float, as `kind`), else `default`."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    what = "an integer" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {what}") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: expected a positive {what.split()[-1]}")
    return value


def _non_negative(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r}: expected a whole number, 0 or more")
    return int(raw)


MIN_TOKEN_LENGTH = 16  # a guessable token is no protection


def _tokens(env: dict, name: str) -> tuple[str, ...]:
    tokens = tuple(t.strip() for t in (env.get(name) or "").split(",") if t.strip())
    short = [t for t in tokens if len(t) < MIN_TOKEN_LENGTH]
    if short:
        raise ValueError(f"{name}: every token needs at least {MIN_TOKEN_LENGTH} characters")
    return tokens


@dataclass(frozen=True)
class Settings:
    # Faust application id: consumer group, changelog topic prefix, and prefix of our topics,
    # so that two apps (or two tests) on one broker never share a topic.
    app_id: str = "cjo"
    broker_url: str = "kafka://127.0.0.1:9092"
    data_dir: Path = field(default_factory=_default_data_dir)
    partitions: int = 8
    web_port: int = 6066
    web_bind: str = "127.0.0.1"  # interface the web server listens on (0.0.0.0 in a pod)
    web_host: str = "127.0.0.1"  # how other workers reach this one (routed profile requests)
    log_level: str = "info"
    kafka_version: str = KAFKA_VERSION
    kafka_home: Path = field(default_factory=_default_kafka_home)
    max_event_bytes: int = 64 * 1024
    # Per-profile limits (README "Limits"; the reasons for each default are in
    # state.profile.Limits): past them a profile records no more and counts what it left out.
    max_attributes_per_profile: int = 1000  # distinct fields (event name, field)
    max_event_names_per_profile: int = 100  # distinct event names besides the reserved ones
    max_profile_text_bytes: int = 64 * 1024  # UTF-8 bytes of strings kept as latest values
    max_journeys_per_profile: int = 50  # journey records; entering more is refused
    max_clock_skew: float = 86_400.0  # seconds an event's time may be after its record's
    # Duplicate events: an event_id the profile applied within this many seconds (of event
    # time) before its latest event is dropped; at most this many ids kept per profile.
    dedup_window: float = 7 * 86_400.0
    max_event_ids_per_profile: int = 1000
    commit_interval: float = 2.8  # seconds between offset commits (Faust's default)
    session_timeout: float = 10.0  # seconds before a silent worker's partitions move
    # How long the broker may hold a fetch that has less than 16 KiB for the worker: at a
    # moderate flow, what each of the two hops adds to latency; when idle, one empty fetch per
    # wait (topology.machinery.faust_fixes.FETCH_MAX_WAIT_MS says why not Faust's 1.5 s).
    fetch_wait_ms: int = 20
    standby_replicas: int = 1  # workers that keep a warm copy of each table partition
    snapshot_interval: float = 60.0  # seconds between journey-state snapshots
    # Memory of all the worker's RocksDB databases together: block cache, index and filter
    # blocks, memtables (topology.machinery.rocksdb_memory). The state itself stays on disk.
    rocksdb_memory_mb: int = 64
    # glibc malloc (topology.machinery.native_memory): at most this many arenas (0: glibc's
    # default of eight per core), and every this many seconds the free pages go back to the
    # system (0: never).
    malloc_arenas: int = 2
    malloc_trim_interval: int = 10
    snapshot_dir: str = ""  # local path or URI (default: <data dir>/snapshots)
    snapshot_chunk: int = 250  # profiles a snapshot reads between two yields to the agents
    audience_interval: float = 300.0  # seconds between the sidecar's batch audience runs
    # Bearer tokens of the web views (comma-separated in the environment): read-only ones may
    # GET, admin ones may also POST. None configured: every protected view answers 401.
    read_tokens: tuple[str, ...] = ()
    admin_tokens: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024  # larger request bodies are refused (413)

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        defaults = cls()
        return cls(
            app_id=env.get("CJO_APP_ID") or defaults.app_id,
            broker_url=env.get("CJO_BROKER") or defaults.broker_url,
            data_dir=Path(env.get("CJO_DATA_DIR") or defaults.data_dir),
            partitions=_positive(env, "CJO_PARTITIONS", defaults.partitions),
            web_port=_positive(env, "CJO_WEB_PORT", defaults.web_port),
            web_bind=env.get("CJO_WEB_BIND") or defaults.web_bind,
            web_host=env.get("CJO_WEB_HOST") or defaults.web_host,
            log_level=env.get("CJO_LOG_LEVEL") or defaults.log_level,
            kafka_version=env.get("CJO_KAFKA_VERSION") or defaults.kafka_version,
            kafka_home=Path(env.get("CJO_KAFKA_HOME") or defaults.kafka_home),
            max_event_bytes=_positive(env, "CJO_MAX_EVENT_BYTES", defaults.max_event_bytes),
            max_attributes_per_profile=_positive(env, "CJO_MAX_ATTRIBUTES_PER_PROFILE",
                                                 defaults.max_attributes_per_profile),
            max_event_names_per_profile=_positive(env, "CJO_MAX_EVENT_NAMES_PER_PROFILE",
                                                  defaults.max_event_names_per_profile),
            max_profile_text_bytes=_positive(env, "CJO_MAX_PROFILE_TEXT_BYTES",
                                             defaults.max_profile_text_bytes),
            max_journeys_per_profile=_positive(env, "CJO_MAX_JOURNEYS_PER_PROFILE",
                                               defaults.max_journeys_per_profile),
            max_clock_skew=_positive(env, "CJO_MAX_CLOCK_SKEW", defaults.max_clock_skew, float),
            dedup_window=_positive(env, "CJO_DEDUP_WINDOW", defaults.dedup_window, float),
            max_event_ids_per_profile=_positive(env, "CJO_MAX_EVENT_IDS_PER_PROFILE",
                                                defaults.max_event_ids_per_profile),
            commit_interval=_positive(env, "CJO_COMMIT_INTERVAL", defaults.commit_interval, float),
            session_timeout=_positive(env, "CJO_SESSION_TIMEOUT", defaults.session_timeout, float),
            fetch_wait_ms=_positive(env, "CJO_FETCH_WAIT_MS", defaults.fetch_wait_ms),
            standby_replicas=_non_negative(env, "CJO_STANDBY_REPLICAS",
                                           defaults.standby_replicas),
            snapshot_interval=_positive(env, "CJO_SNAPSHOT_INTERVAL", defaults.snapshot_interval,
                                        float),
            rocksdb_memory_mb=_positive(env, "CJO_ROCKSDB_MEMORY_MB", defaults.rocksdb_memory_mb),
            malloc_arenas=_non_negative(env, "CJO_MALLOC_ARENAS", defaults.malloc_arenas),
            malloc_trim_interval=_non_negative(env, "CJO_MALLOC_TRIM_INTERVAL",
                                               defaults.malloc_trim_interval),
            snapshot_dir=env.get("CJO_SNAPSHOT_DIR") or "",
            snapshot_chunk=_positive(env, "CJO_SNAPSHOT_CHUNK", defaults.snapshot_chunk),
            audience_interval=_positive(env, "CJO_AUDIENCE_INTERVAL", defaults.audience_interval,
                                        float),
            read_tokens=_tokens(env, "CJO_READ_TOKENS"),
            admin_tokens=_tokens(env, "CJO_ADMIN_TOKENS"),
            max_body_bytes=_positive(env, "CJO_MAX_BODY_BYTES", defaults.max_body_bytes),
        )

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process."""
        return {
            "CJO_APP_ID": self.app_id,
            "CJO_BROKER": self.broker_url,
            "CJO_DATA_DIR": str(self.data_dir),
            "CJO_PARTITIONS": str(self.partitions),
            "CJO_WEB_PORT": str(self.web_port),
            "CJO_WEB_BIND": self.web_bind,
            "CJO_WEB_HOST": self.web_host,
            "CJO_LOG_LEVEL": self.log_level,
            "CJO_KAFKA_VERSION": self.kafka_version,
            "CJO_KAFKA_HOME": str(self.kafka_home),
            "CJO_MAX_EVENT_BYTES": str(self.max_event_bytes),
            "CJO_MAX_ATTRIBUTES_PER_PROFILE": str(self.max_attributes_per_profile),
            "CJO_MAX_EVENT_NAMES_PER_PROFILE": str(self.max_event_names_per_profile),
            "CJO_MAX_PROFILE_TEXT_BYTES": str(self.max_profile_text_bytes),
            "CJO_MAX_JOURNEYS_PER_PROFILE": str(self.max_journeys_per_profile),
            "CJO_MAX_CLOCK_SKEW": str(self.max_clock_skew),
            "CJO_DEDUP_WINDOW": str(self.dedup_window),
            "CJO_MAX_EVENT_IDS_PER_PROFILE": str(self.max_event_ids_per_profile),
            "CJO_COMMIT_INTERVAL": str(self.commit_interval),
            "CJO_SESSION_TIMEOUT": str(self.session_timeout),
            "CJO_FETCH_WAIT_MS": str(self.fetch_wait_ms),
            "CJO_STANDBY_REPLICAS": str(self.standby_replicas),
            "CJO_SNAPSHOT_INTERVAL": str(self.snapshot_interval),
            "CJO_ROCKSDB_MEMORY_MB": str(self.rocksdb_memory_mb),
            "CJO_MALLOC_ARENAS": str(self.malloc_arenas),
            "CJO_MALLOC_TRIM_INTERVAL": str(self.malloc_trim_interval),
            "CJO_SNAPSHOT_DIR": self.snapshot_dir,
            "CJO_SNAPSHOT_CHUNK": str(self.snapshot_chunk),
            "CJO_AUDIENCE_INTERVAL": str(self.audience_interval),
            "CJO_READ_TOKENS": ",".join(self.read_tokens),
            "CJO_ADMIN_TOKENS": ",".join(self.admin_tokens),
            "CJO_MAX_BODY_BYTES": str(self.max_body_bytes),
        }

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def bootstrap_servers(self) -> str:
        """The broker URL in the host:port form that aiokafka and Kafka tools take."""
        return ",".join(
            part.split("://", 1)[-1] for part in self.broker_url.split(";") if part
        )

    @property
    def worker_dir(self) -> Path:
        """A worker's RocksDB tables. Faust's paths name neither the app nor the worker, so
        both go into the directory: two apps or two local workers never share a store."""
        return self.data_dir / "workers" / self.app_id / str(self.web_port)

    @property
    def funnels_file(self) -> Path:
        """Where the sidecar writes the journeys' funnels, read by the workers' views."""
        return self.data_dir / "sidecar" / f"{self.app_id}.funnels.json"

    @property
    def snapshots(self) -> str:
        """Where snapshot files go: CJO_SNAPSHOT_DIR (path or URI), else <data dir>/snapshots."""
        return self.snapshot_dir or str(self.data_dir / "snapshots")

    def topic(self, name: str) -> str:
        return f"{self.app_id}.{name}"
