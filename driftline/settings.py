"""Settings: one pydantic model per concern, read from ``DRIFTLINE_*`` variables and an optional TOML file.

Precedence, highest first: environment variables, the TOML file, the defaults below. A variable names its
concern and field: ``DRIFTLINE_KAFKA_BOOTSTRAP`` sets ``[kafka] bootstrap``; ``DRIFTLINE_DATA_DIR`` sets the
top-level ``data_dir``. The TOML file is ``driftline.toml`` in the working directory when it exists, or the
path given by ``--config`` or ``DRIFTLINE_CONFIG``. A bad value raises :class:`ConfigError` naming the
variable, the value and what is expected. :func:`~driftline.settings_report.setting_sources` tells which source
set each setting.
"""

from __future__ import annotations

import difflib
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from driftline.kafka.client_hooks import KAFKA_LOG, RefusedConnection
from driftline.schemas.errors import ConfigError
from driftline.schemas.model_contracts import ModelContract
from driftline.schemas.monitoring import MonitorSettings
from driftline.schemas.policy import PolicySettings

ENV_PREFIX = "DRIFTLINE_"
DEFAULT_CONFIG_FILE = Path("driftline.toml")

Port = Annotated[int, Field(ge=1, le=65535)]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """Where the Kafka cluster is and how driftline's topics are laid out on it."""

    bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Kafka bootstrap servers, comma-separated host:port (default: the local broker).",
        min_length=1,
    )
    topic_prefix: str = Field(
        "driftline.",
        description="Prefix of every topic name, so several deployments can share one cluster.",
        pattern=r"^[A-Za-z0-9._-]*$",
    )
    partitions: int = Field(
        4, ge=1, le=1024, description="Partitions of each data topic; predictions and feedback share it."
    )
    replication_factor: int = Field(1, ge=1, description="Replication factor of the topics driftline creates.")
    max_message_bytes: int = Field(
        1_048_576,
        ge=1024,
        description=(
            "Largest message driftline sends or reads: the producer client keeps its envelopes under it; larger "
            "messages are dead letters (oversized) for the worker and the sink."
        ),
    )
    security_protocol: SecurityProtocol = Field(
        "PLAINTEXT",
        description="How clients talk to Kafka: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (TLS + SASL login).",
    )
    sasl_mechanism: SaslMechanism = Field(
        "PLAIN", description="SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    sasl_username: str | None = Field(None, description="SASL user; required with SASL_*.", validate_default=True)
    sasl_password: SecretStr | None = Field(
        None, description="SASL password; required with SASL_* (never logged).", validate_default=True
    )
    ssl_ca_location: FilePath | None = Field(
        None,
        description="PEM file of the CA that signed the brokers' certificates, with SSL and SASL_SSL "
        "(default: the system's CAs).",
    )
    ssl_check_hostname: bool = Field(
        True, description="With SSL and SASL_SSL, require a broker's certificate to name the host it is reached at."
    )

    @field_validator("sasl_username", "sasl_password")
    @classmethod
    def _credentials_match_protocol(cls, value: object, info: ValidationInfo) -> object:
        protocol = info.data.get("security_protocol")
        if protocol is None:  # the protocol itself is invalid and reported
            return value
        if protocol.startswith("SASL_") and not value:
            raise ValueError(f"required when security_protocol is {protocol}")
        if not protocol.startswith("SASL_") and value:
            raise ValueError(f"set, but security_protocol is {protocol}: it would not be used (set SASL_SSL?)")
        return value

    @property
    def uses_sasl(self) -> bool:
        """True for SASL_PLAINTEXT and SASL_SSL."""
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """True for SSL and SASL_SSL."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def client_config(self) -> dict[str, Any]:
        """The librdkafka configuration every confluent-kafka client of driftline starts from.

        It holds the bootstrap servers, the security settings and an ``error_cb`` that turns the failures
        retrying cannot cure (authentication refused, TLS handshake failed) into a :class:`BrokerError`
        naming the bootstrap and the cause, raised from the client's next ``poll``, ``consume`` or ``flush``
        instead of a silent retry loop; and a ``logger``: librdkafka's own log lines go through the
        ``driftline.kafka`` logger (its notices of what it retries at INFO). Other connection errors are left
        to librdkafka, which logs them and reconnects. Callers add their own keys (group id, idempotence, ...).
        The password is in the returned dict only: never log it.
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
            "error_cb": RefusedConnection(self.bootstrap, self._who()),
            "logger": KAFKA_LOG,
        }
        if self.uses_sasl and self.sasl_password is not None:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.uses_tls:
            if self.ssl_ca_location is not None:
                config["ssl.ca.location"] = str(self.ssl_ca_location)
            config["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_check_hostname else "none"
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for Python Kafka clients (aiokafka, under Faust); None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_ca_location) if self.ssl_ca_location is not None else None
        )
        context.check_hostname = self.ssl_check_hostname
        return context

    def _who(self) -> str:
        if self.uses_sasl:
            return f"{self.security_protocol} {self.sasl_mechanism} as user {self.sasl_username!r}"
        return self.security_protocol


class BrokerSettings(_Section):
    """The local Apache Kafka broker that ``driftline kafka start`` runs for development and tests."""

    kafka_version: str = Field(
        "4.1.1", pattern=r"^\d+\.\d+\.\d+$", description="Apache Kafka release resolved from Maven Central."
    )
    port: Port = Field(9092, description="Port of the PLAINTEXT listener on 127.0.0.1.")
    controller_port: Port = Field(9093, description="Port of the KRaft controller listener on 127.0.0.1.")
    heap: str = Field("512m", pattern=r"^\d+[kmgKMG]$", description="Java heap of the broker (-Xmx).")
    java: str = Field("java", description="Java 17+ executable (a name on PATH or a path).")
    maven: str = Field("mvn", description="Maven executable used to resolve the broker's jars.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "driftline" / "kafka",
        description="Where resolved broker jars are kept between runs, one folder per Kafka version.",
    )
    start_timeout_s: float = Field(90.0, gt=0, description="Seconds to wait for the broker to answer.")


class ClickHouseSettings(_Section):
    """The ClickHouse database that the sink loads and analysts query."""

    dsn: str | None = Field(
        None,
        description=(
            "clickhouse-connect DSN: chdb:///absolute/path (embedded) or http(s)://user@host:8123 "
            "(server). Default: the embedded engine under <data_dir>/clickhouse."
        ),
    )
    database: str = Field(
        "driftline",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Database that holds driftline's tables.",
    )
    password: SecretStr | None = Field(None, description="Password for a ClickHouse server (never logged).")
    raw_ttl_days: int | None = Field(
        None,
        ge=1,
        description="Delete raw predictions and feedback this many days after their event time (default: keep).",
    )
    store_raw_features: bool = Field(
        True,
        description="Privacy: false stores raw predictions without their feature values (empty maps); window "
        "results, computed by the worker from Kafka, keep every feature.",
    )


class SinkSettings(_Section):
    """The bulk loader from Kafka into ClickHouse (``driftline sink``)."""

    group_id: str = Field("driftline-sink", min_length=1, description="Kafka consumer group of the sink.")
    batch_rows: int = Field(20_000, ge=1, description="Insert once this many messages are buffered ...")
    batch_seconds: float = Field(1.0, gt=0, description="... or once this many seconds have passed.")
    results_seconds: float = Field(
        0.1,
        gt=0,
        description="A batch holding window results or triggers is inserted at most this many seconds after the first.",
    )
    retry_max_seconds: float = Field(
        30.0, gt=0, description="Longest wait between retries while ClickHouse is unreachable."
    )
    sql_port: Port = Field(
        8124, description="Local port where the process holding embedded ClickHouse serves read-only SQL."
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address the sink's /metrics endpoint binds (0.0.0.0 in containers)."
    )
    metrics_port: Port = Field(6067, description="Port of the sink's Prometheus /metrics endpoint.")


class WorkerSettings(_Section):
    """The stream-processing worker (Faust app)."""

    app_id: str = Field("driftline", min_length=1, description="Faust app id, also its consumer group.")
    web_host: str = Field("127.0.0.1", description="Address the worker's web endpoint binds (0.0.0.0 in containers).")
    web_port: Port = Field(6066, description="Port of the worker's /health and /metrics endpoint.")


class Settings(BaseSettings):
    """All of driftline's settings; build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(
        Path(".driftline"), description="Directory for local state: the broker's data, embedded ClickHouse."
    )
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    sink: SinkSettings = SinkSettings()
    monitor: MonitorSettings = MonitorSettings()
    worker: WorkerSettings = WorkerSettings()
    policy: PolicySettings = PolicySettings()
    models: dict[str, ModelContract] = Field(
        default_factory=dict,
        description="Per-model pins, [models.<model_id>] task / positive_label in the TOML file (optional).",
    )

    @property
    def data_path(self) -> Path:
        """The data directory as an absolute path."""
        return self.data_dir.expanduser().resolve()

    @property
    def clickhouse_dsn(self) -> str:
        """The configured DSN, or the embedded engine's, built from an absolute path.

        ``chdb:///`` followed by a relative path would resolve under ``/``, so the default is absolute.
        """
        return self.clickhouse.dsn or f"chdb://{self.data_path / 'clickhouse'}"

    def topic(self, name: str) -> str:
        """The full name of one of driftline's topics, e.g. ``driftline.predictions``."""
        return f"{self.kafka.topic_prefix}{name}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


class _ConfigFileLocation(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")
    config: Path | None = None


def env_var_name(loc: tuple[str | int, ...]) -> str:
    """The environment variable of a setting: ``("kafka", "bootstrap")`` → ``DRIFTLINE_KAFKA_BOOTSTRAP``."""
    return ENV_PREFIX + "_".join(str(part) for part in loc).upper()


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Resolve the settings from overrides, the environment and the TOML file, or raise :class:`ConfigError`."""
    config_file = config_file_in_force(config_file)
    _refuse_unknown_environment(os.environ)
    try:
        return settings_class(config_file)(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = env_var_name(error["loc"])
            if config_file is not None:
                where += f" (or {'.'.join(map(str, error['loc']))} in {config_file})"
            problems.append(f"{where}={_shown(error['loc'], error.get('input'))}: {error['msg']}")
        raise ConfigError("invalid setting: " + "; ".join(problems)) from None
    except ValueError as exc:  # pydantic-settings reports undecodable TOML and env values this way
        raise ConfigError(f"invalid settings{f' in {config_file}' if config_file else ''}: {exc}") from None


def config_file_in_force(config_file: Path | None) -> Path | None:
    """The TOML file in force: ``config_file``, else ``DRIFTLINE_CONFIG``, else ``./driftline.toml`` when it
    exists, else none; :class:`ConfigError` when the one named does not exist."""
    if config_file is None:
        config_file = _ConfigFileLocation().config
    if config_file is None and DEFAULT_CONFIG_FILE.is_file():
        config_file = DEFAULT_CONFIG_FILE
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} (DRIFTLINE_CONFIG or --config) does not exist")
    return config_file


def settings_class(config_file: Path | None) -> type[Settings]:
    """:class:`Settings`, reading ``config_file`` too when there is one."""
    if config_file is None:
        return Settings
    config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})
    return cast(type[Settings], type("SettingsFromFile", (Settings,), {"model_config": config}))


def _refuse_unknown_environment(environment: Mapping[str, str]) -> None:
    """A ``DRIFTLINE_<SECTION>_...`` variable that names no setting is a typo (``DRIFTLINE_KAFKA_PARTITONS``):
    a :class:`ConfigError` naming it and the closest setting, as an unknown key in the config file is."""
    known: set[str] = set()
    prefixes: list[str] = []
    for section, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            prefixes.append(env_var_name((section,)) + "_")
            known.update(env_var_name((section, name)) for name in field.annotation.model_fields)
    unknown = sorted(name for name in environment if name.startswith(tuple(prefixes)) and name not in known)
    if unknown:
        hints = [
            f"{name}" + (f" (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, known, 1)) else "")
            for name in unknown
        ]
        raise ConfigError(f"unknown setting in the environment: {'; '.join(hints)}")


def _secret_fields() -> frozenset[str]:
    """Names of the settings that hold secrets (typed ``SecretStr``)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names.update(name for name, sub in section.model_fields.items() if "SecretStr" in repr(sub.annotation))
    return frozenset(names)


SECRET_MASK = "****"


def _shown(loc: tuple[str | int, ...], value: Any) -> str:
    """A rejected value as an error message may show it: secrets masked, also inside a whole section."""
    secrets = _secret_fields()

    def masked(item: Any, name: str | int | None) -> Any:
        if name in secrets and item is not None:
            return SECRET_MASK
        if isinstance(item, dict):
            return {key: masked(sub, key) for key, sub in item.items()}
        return item

    return repr(masked(value, loc[-1] if loc else None))
