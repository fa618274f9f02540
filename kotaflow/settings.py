"""kotaflow's one settings model: defaults < YAML file < ``KOTAFLOW_*`` environment.

Every stage reads its configuration from :class:`Settings`. The YAML file is optional and
named by ``--config`` or ``KOTAFLOW_CONFIG``; nested fields are set from the environment
with a double underscore, e.g. ``KOTAFLOW_KAFKA__BOOTSTRAP_SERVERS``. Validation happens
once, at start: :func:`load_settings` raises :class:`SettingsError` naming each bad field
and where its value came from, so an operator can fix it without reading a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from kotaflow.alerting_settings import AlertingSettings

ENV_PREFIX = "KOTAFLOW_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV_VAR = "KOTAFLOW_CONFIG"


def default_state_dir() -> Path:
    """Where the local stack keeps data and logs (one directory, easy to purge)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "kotaflow"


def default_cache_dir() -> Path:
    """Where built or downloaded service binaries live, outside the repository."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kotaflow"


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class MqttSettings(_Section):
    """The broker and how to log in; ``kotaflow/mqtt.py`` turns this into a client's access.

    Unset ``username``: each kotaflow client logs in with its own account from
    ``credentials_file`` (default: the local stack's generated file), so the bridge, the
    simulator and the health check need no password in the settings.
    """

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535, description="plain MQTT (the local stack: loopback)")
    tls_port: int = Field(8883, ge=1, le=65535, description="MQTT over TLS")
    tls: bool = Field(False, description="connect to tls_port and verify the server certificate")
    username: str | None = Field(None, description="one account for every client of this process")
    password: SecretStr | None = None
    credentials_file: Path | None = Field(
        None, description="account passwords as `kotaflow devices credentials` writes them"
    )
    ca_file: Path | None = Field(
        None, description="CA that signed the broker's certificate; default: the local stack's"
    )
    keepalive_s: int = Field(30, ge=5)


class KafkaTopics(_Section):
    raw: str = "kotaflow.raw"
    readings: str = "kotaflow.readings"
    deadletter: str = "kotaflow.deadletter"
    alerts: str = "kotaflow.alerts"
    bridge_lease: str = "kotaflow.bridge-lease"
    """One partition, no records: its consumer groups elect the active bridge per MQTT
    session (ingest/lease.py)."""

    @field_validator("*")
    @classmethod
    def _legal_topic(cls, name: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not name or len(name) > 249 or not set(name) <= allowed:
            raise ValueError("a Kafka topic name is 1-249 characters of [a-zA-Z0-9._-]")
        return name


class TopicPartitions(_Section):
    """Partitions per topic role. ``raw`` and ``readings`` carry every reading, keyed by
    device: one batch in flight per partition and one consumer per partition, so they get
    the most. Raising a count later moves devices between partitions (per-device order
    breaks for a moment); ``kotaflow kafka topics create`` reports it, never does it."""

    raw: int = Field(6, ge=1)
    readings: int = Field(6, ge=1)
    deadletter: int = Field(3, ge=1)
    alerts: int = Field(3, ge=1)


class TopicLayout(_Section):
    """How ``kotaflow kafka topics create`` lays out kotaflow's topics on the cluster.

    ``null`` replication follows the cluster: min(3, brokers), so one broker gets 1 and a
    3-broker cluster 3; ``null`` min ISR is replication - 1 (at least 1), so with RF 3 an
    ``acks=all`` write survives one broker lost and stalls, never drops, when two are."""

    partitions: TopicPartitions = TopicPartitions()
    replication_factor: int | None = Field(None, ge=1, description="null: min(3, brokers)")
    min_insync_replicas: int | None = Field(
        None, ge=1, description="acks=all needs this many replicas; null: replication - 1, >= 1"
    )
    retention_hours: float = Field(168.0, gt=0, description="retention.ms of every topic")
    max_message_bytes: int | None = Field(
        None, ge=1024, description="max.message.bytes of every topic; null: the broker's"
    )

    @model_validator(mode="after")
    def _isr_within_replicas(self) -> TopicLayout:
        rf, isr = self.replication_factor, self.min_insync_replicas
        if rf is not None and isr is not None and isr > rf:
            raise ValueError(f"min_insync_replicas {isr} > replication_factor {rf}: no write fits")
        return self


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topics: KafkaTopics = KafkaTopics()
    layout: TopicLayout = TopicLayout()
    security_protocol: str = Field("PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    sasl_mechanism: str | None = Field(None, pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password; default: the local stack's"
    )
    ca_file: Path | None = Field(
        None, description="CA that signed the brokers' certificates; default: the local stack's"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value


class InfluxSettings(_Section):
    url: str = Field("http://127.0.0.1:8086", pattern=r"^https?://")
    org: str = "kotaflow"
    telemetry_bucket: str = "telemetry"
    rollups_bucket: str = "rollups"
    telemetry_retention_days: int = Field(
        90, ge=0, description="raw readings kept a season; 0: forever (`kotaflow influxdb setup`)"
    )
    rollups_retention_days: int = Field(
        730, ge=0, description="long enough for year-over-year dashboards; 0: forever"
    )
    token: SecretStr | None = None


class StackSettings(_Section):
    state_dir: Path = Field(default_factory=default_state_dir)
    cache_dir: Path = Field(default_factory=default_cache_dir)
    kafka_brokers: int = Field(
        1,
        description="1: one KRaft node; 3: a cluster of 3 combined controller+broker nodes on "
        "the bootstrap port and the next ones (deploy/local/kafka_cluster.py)",
    )

    @field_validator("kafka_brokers")
    @classmethod
    def _one_or_three(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError("the local stack runs 1 Kafka node or a cluster of 3")
        return value


class BridgeSettings(_Section):
    """The MQTT -> Kafka bridge (``kotaflow bridge``); see ingest/bridge.py for the guarantees."""

    client_id: str = Field(
        "kotaflow-bridge-1",
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        description="the bridge's one MQTT session on this broker: every replica uses the same "
        "id, a lease through Kafka picks the one that connects (ingest/lease.py). A listener "
        "with use_username_as_clientid (production, the local TLS one) names the session after "
        "the account (kotaflow-bridge) instead; the id still names the lease group, so one id "
        "per broker",
    )
    share_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.\-]{1,64}$",
        description="DEPRECATED (issue 16): subscribe through $share/<group>/; a device "
        "account or a stopped member then takes messages away. null (default): plain",
    )
    session_expiry_s: int = Field(86_400, ge=1, description="broker keeps the session this long")
    receive_maximum: int = Field(10_000, ge=1, le=65_535, description="MQTT 5 unacked cap")
    max_in_flight: int = Field(
        10_000, ge=1, description="local bound on received, unacked messages (x payload size)"
    )
    max_payload_bytes: int = Field(
        65_536,
        ge=1,
        description="the one size limit: the broker refuses bigger publishes, the bridge "
        "dead-letters them, Kafka's limits follow (ingest/sizes.py)",
    )
    rate_per_s: float | None = Field(5.0, gt=0, description="per-device sustained rate; null: off")
    rate_burst: int | None = Field(
        None,
        ge=1,
        description="per-device burst above the sustained rate; null: a device_buffer_s "
        "backlog of the catalogue's fastest device (ingest/ratelimit.py)",
    )
    device_buffer_s: float = Field(
        86_400.0, gt=0, description="longest outage a device buffers and then flushes at once"
    )
    lease_session_timeout_ms: int = Field(
        8_000,
        ge=6_000,
        le=60_000,
        description="a standby takes over this long after the active bridge dies",
    )
    lease_heartbeat_ms: int = Field(1_000, ge=100, le=20_000)
    linger_ms: int = Field(
        25,
        ge=0,
        le=1000,
        description="at low rates, gather messages this long before forwarding them (one "
        "Kafka request and one wake-up per window, not per message); never waits under load",
    )
    max_batch_bytes: int = Field(524_288, ge=16_384, description="producer batch per partition")
    compression: str = Field("zstd", pattern="^(none|gzip|lz4|zstd|snappy)$")
    metrics_port: int = Field(9108, ge=0, le=65_535, description="Prometheus; 0: off")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    drain_timeout_s: float = Field(30.0, gt=0, description="graceful shutdown waits this long")

    @field_validator("share_group", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        """``KOTAFLOW_BRIDGE__SHARE_GROUP=""`` turns sharing off (env vars cannot be null)."""
        return None if value == "" else value


class StageConsumer(_Section):
    """What every consuming stage has: its consumer group and how much it takes per poll."""

    group_id: str
    max_records: int = Field(5000, ge=1, description="records per getmany() call")
    poll_timeout_ms: int = Field(200, ge=1, le=60_000)
    max_poll_interval_ms: int = Field(
        600_000, ge=10_000, description="longest gap between polls before Kafka evicts us"
    )
    fetch_min_bytes: int = Field(
        1, ge=1, description="a fetch waits for this much data (or fetch_max_wait_ms)"
    )
    fetch_max_wait_ms: int = Field(
        500, ge=0, le=10_000, description="longest a fetch waits for fetch_min_bytes"
    )


FETCH_MIN_BYTES = 256 * 1024
"""What validate, store and aggregate wait for in one fetch: under a backlog a fetch finds
it at once; at a city's rate (a few hundred kB/s) a fetch waits ``fetch_max_wait_ms``
instead of returning after every few records (one request per record or two, each ~0.2 ms
of CPU, was most of the processors' CPU at 2,000 readings/s)."""


class EdgeSettings(_Section):
    """A store-and-forward gateway (``kotaflow edge``, edge/): local broker -> queue file ->
    the central broker (``mqtt.*``, with the edge's own account ``mqtt.username``)."""

    name: str = Field("edge", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    local_host: str = Field("127.0.0.1", description="the gateway's own Mosquitto")
    local_port: int = Field(1883, ge=1, le=65535)
    local_username: str | None = None
    local_password: SecretStr | None = None
    client_id: str = Field("kotaflow-edge", description="persistent session on the local broker")
    central_client_id: str | None = Field(None, description="default: kotaflow-edge-<name>")
    session_expiry_s: int = Field(7 * 86_400, ge=1, description="local broker keeps our session")
    receive_maximum: int = Field(1_000, ge=1, le=65_535)
    queue_file: Path | None = Field(None, description="default: <stack.state_dir>/edge/queue.db")
    budget_bytes: int = Field(1 << 30, ge=1 << 16, description="queue file byte budget")
    alarm_fraction: float = Field(0.5, gt=0, lt=1, description="alarm past this share of budget")
    batch_ms: int = Field(50, ge=1, le=5_000, description="one queue transaction per this long")
    max_in_flight: int = Field(
        20,
        ge=1,
        le=65_535,
        description="central publishes unacked; small so a live reading on a weak link waits "
        "behind at most max_in_flight - live_reserve backlog messages (docs/edge.md)",
    )
    backlog_rate_per_s: float = Field(200.0, gt=0, description="backlog drain cap, messages/s")
    live_reserve: int = Field(5, ge=1, description="in-flight slots backlog may never use")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    metrics_port: int = Field(9110, ge=0, le=65_535, description="Prometheus; 0: off")
    device_id: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$",
        description="the gateway's registry id (type gateway): report metrics as its "
        "readings; unset: none",
    )
    report_every_s: float = Field(60.0, ge=1, description="one gateway reading this often")


class ValidateSettings(StageConsumer):
    group_id: str = "kotaflow-validate"
    fetch_min_bytes: int = Field(FETCH_MIN_BYTES, ge=1)
    fetch_max_wait_ms: int = Field(40, ge=0, le=10_000, description="adds up to this latency")
    linger_ms: int = Field(5, ge=0, le=1000)
    max_batch_bytes: int = Field(1_048_576, ge=16_384, description="producer batch per partition")
    flush_interval_s: float = Field(0.5, gt=0, description="wait for acks and commit this often")


class StoreSettings(StageConsumer):
    group_id: str = "kotaflow-store"
    max_records: int = Field(10_000, ge=1)
    fetch_min_bytes: int = Field(FETCH_MIN_BYTES, ge=1)
    fetch_max_wait_ms: int = Field(80, ge=0, le=10_000, description="adds up to this latency")
    batch_lines: int = Field(5000, ge=1, description="line-protocol lines per InfluxDB write")
    flush_interval_s: float = Field(1.0, gt=0, description="write a partial batch this often")
    idle_flush_s: float = Field(
        0.02, gt=0, description="caught up with the input: write what is buffered this soon"
    )
    commit_interval_s: float = Field(
        1.0, ge=0, description="commit what was written at most this often (0: every write)"
    )


class AggregateSettings(StageConsumer):
    group_id: str = "kotaflow-aggregate"
    fetch_min_bytes: int = Field(1024 * 1024, ge=1)
    fetch_max_wait_ms: int = Field(500, ge=0, le=10_000)
    grace_s: float = Field(10.0, ge=0, description="a window closes this long after its end")
    max_lateness_h: float | None = Field(
        None,
        gt=0,
        description="unset: every stored reading is aggregated, however late; a number: "
        "older readings are dead-lettered and their rollups stay below raw (old configs)",
    )
    flush_interval_s: float = Field(1.0, gt=0)
    wait_for_store: bool = Field(
        True, description="late corrections wait until the store stage has written the points"
    )
    rollup_interval_s: float = Field(
        30.0, gt=0, description="recompute hourly/daily rollups and commit this often"
    )
    day_offset_h: float = Field(
        8.0, ge=-12, le=14, description="daily rollups follow this UTC offset (WITA: +8)"
    )


class RetrySettings(_Section):
    """Backoff for InfluxDB writes and queries (429/5xx/unreachable): retried until success."""

    initial_s: float = Field(0.2, gt=0)
    max_s: float = Field(30.0, gt=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.2, ge=0, le=1)
    max_retry_after_s: float = Field(300.0, gt=0, description="cap on a server's Retry-After")
    timeout_s: float = Field(30.0, gt=0, description="one HTTP request to InfluxDB")


class HealthSettings(_Section):
    interval_s: float = Field(10.0, gt=0, description="how often health points are written")
    measurement: str = "kotaflow_pipeline"
    bucket: str | None = Field(None, description="default: influxdb.rollups_bucket")


class ProcessingSettings(_Section):
    """The processors (``kotaflow process``): one section per stage plus shared policies."""

    validation: ValidateSettings = ValidateSettings()
    store: StoreSettings = StoreSettings()
    aggregate: AggregateSettings = AggregateSettings()
    retry: RetrySettings = RetrySettings()
    health: HealthSettings = HealthSettings()
    influx_token_file: Path | None = Field(
        None, description="file holding one InfluxDB token for every stage (old configs)"
    )
    influx_token_dir: Path | None = Field(
        None,
        description="directory of <role>.token files (store, aggregate, alert, health; "
        "pipeline and grafana as fallbacks); default: the local stack's tokens.json",
    )


OSM_TILES = "osm"
NO_TILES = "none"


class GrafanaSettings(_Section):
    """The generated dashboards (``kotaflow grafana``): what their maps draw under the devices.

    ``osm`` loads openstreetmap.org tiles in each viewer's browser, so it needs outbound
    internet; a data centre without it uses its own tile server's URL, or ``none``.
    """

    map_tiles: str = Field(
        OSM_TILES,
        description="osm (openstreetmap.org, needs internet), a tile server URL with {z}, {x} "
        "and {y}, e.g. https://tiles.example.id/{z}/{x}/{y}.png, or none (a table, no map)",
    )
    map_attribution: str = Field(
        "© OpenStreetMap contributors", description="credit shown on maps from map_tiles' URL"
    )

    @field_validator("map_tiles")
    @classmethod
    def _tiles(cls, value: str) -> str:
        if value in (OSM_TILES, NO_TILES):
            return value
        placeholders = all(p in value for p in ("{z}", "{x}", "{y}"))
        if not value.startswith(("http://", "https://", "/")) or not placeholders:
            raise ValueError(
                "expected osm, none, or a tile URL (http(s):// or a path on Grafana's own "
                "host) with {z}, {x} and {y}"
            )
        return value


class PublicSettings(_Section):
    """``kotaflow public``: the residents' pages and open-data API (docs/public.md)."""

    host: str = Field("127.0.0.1", description="listen address (loopback unless serving HTTPS)")
    port: int = Field(8090, ge=0, le=65535, description="listen port (0: any free one)")
    refresh_s: float = Field(
        30.0, ge=1.0, le=3600.0, description="seconds between reads of InfluxDB (3 queries each)"
    )
    rate_per_s: float = Field(5.0, gt=0, description="requests per second allowed per client")
    burst: float = Field(30.0, ge=1, description="requests a client may burst before the rate")
    trust_forwarded: bool = Field(
        False, description="rate-limit by X-Forwarded-For (only behind our own proxy)"
    )
    tls_cert_file: Path | None = Field(
        None, description="serve HTTPS with this certificate chain (PEM; with tls_key_file)"
    )
    tls_key_file: Path | None = Field(None, description="the certificate's private key (PEM)")


class Settings(BaseSettings):
    """All of kotaflow's configuration. Sections mirror the data flow."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        # `KOTAFLOW_REGISTRY_FILE= kotaflow ...` means "not set", as in any shell; read as a
        # value it made the registry file Path("."), refused deep inside a stage
        env_ignore_empty=True,
        extra="forbid",
        yaml_file=None,
    )

    mqtt: MqttSettings = MqttSettings()
    kafka: KafkaSettings = KafkaSettings()
    influxdb: InfluxSettings = InfluxSettings()
    stack: StackSettings = StackSettings()
    bridge: BridgeSettings = BridgeSettings()
    edge: EdgeSettings = EdgeSettings()
    processing: ProcessingSettings = ProcessingSettings()
    alerting: AlertingSettings = AlertingSettings()
    grafana: GrafanaSettings = GrafanaSettings()
    public: PublicSettings = PublicSettings()
    registry_file: Path | None = None
    catalogue_file: Path | None = None
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    metrics_port: int = Field(0, ge=0, le=65535)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


class SettingsError(Exception):
    """Settings failed validation; the message names every bad field and its source."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings once, at start.

    ``config_file`` wins over ``KOTAFLOW_CONFIG``; ``overrides`` (from the command line)
    win over everything.
    """
    path = config_file or _env_config_path()
    if path is not None and not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    file_data = _read_yaml(path) if path is not None else {}

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        return _FromFile(**overrides)
    except ValidationError as err:
        raise SettingsError(_explain(err, path, file_data)) from None


def _env_config_path() -> Path | None:
    value = os.environ.get(CONFIG_ENV_VAR)
    return Path(value) if value else None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise SettingsError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping at the top level")
    return data


def _explain(err: ValidationError, path: Path | None, file_data: dict[str, Any]) -> str:
    lines = ["invalid settings:"]
    for problem in err.errors():
        loc = [str(part) for part in problem["loc"]]
        field = ".".join(loc)
        lines.append(f"  {field}: {problem['msg']} (from {_source_of(loc, path, file_data)})")
    return "\n".join(lines)


def _source_of(loc: list[str], path: Path | None, file_data: dict[str, Any]) -> str:
    """Name where a field's value came from: an environment variable, the file, or a default."""
    for depth in range(len(loc), 0, -1):
        var = ENV_PREFIX + ENV_NESTED_DELIMITER.join(loc[:depth]).upper()
        for name in os.environ:
            if name.upper() == var:
                return f"environment variable {name}={_quoted_value(name)}"
    node: Any = file_data
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return f"config file {path}"
    return "default or command line"


_SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "KEY")


def _quoted_value(variable: str) -> str:
    """A variable's value for an error message, unless its name says it holds a secret or
    it sets a whole section as JSON (which may hold one)."""
    value = os.environ[variable]
    if any(word in variable.upper() for word in _SECRET_WORDS) or value.lstrip().startswith("{"):
        return "*** (not shown)"
    return json.dumps(value)
