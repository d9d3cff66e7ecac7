"""One typed settings object, read from defaults, an optional YAML file and environment variables.

Precedence, highest first: keyword arguments, ``OPTIMIZER_<SECTION>__<KEY>`` variables, the
short variables (``DATABASE_URL``, ``KAFKA_BROKERS``, ``TEMPORAL_ADDRESS``, ``LOG_LEVEL``), the YAML file named by
``OPTIMIZER_CONFIG_FILE`` (``docs/configuration.md`` shows one), defaults. ``docs/configuration.md`` lists
every key; a test keeps the two in step.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from llm_optimizer import yamlsafe
from llm_optimizer.errors import SettingsError
from llm_optimizer.patterns import checked_regex
from llm_optimizer.strategies import RolloutKind, Strategy

ENV_PREFIX = "OPTIMIZER_"
CONFIG_FILE_ENV = "OPTIMIZER_CONFIG_FILE"

# Short variables that platform tooling commonly sets (`docs/configuration.md`).
SHORT_ENV_ALIASES: dict[str, tuple[str, str]] = {
    "DATABASE_URL": ("database", "url"),
    "KAFKA_BROKERS": ("kafka", "brokers"),
    "TEMPORAL_ADDRESS": ("temporal", "address"),
    "LOG_LEVEL": ("logging", "level"),
}

Port = Annotated[int, Field(ge=1, le=65535)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class ServerSettings(Section):
    """The HTTP API (`python -m api`)."""

    host: str = "127.0.0.1"
    port: Port = 8080
    # How long a control (a Temporal update) or a health check may take before the API answers 504 / unhealthy.
    timeout_ms: PositiveInt = 30_000
    max_body_bytes: PositiveInt = 5 * 1024 * 1024
    # Per API key (a key may carry its own rate); a key may burst this many seconds' worth of requests.
    rate_limit_per_s: PositiveFloat = 100.0
    rate_limit_burst_s: PositiveFloat = 2.0
    # Assignments and API keys are cached this long: a config change or a revoked key takes effect within it.
    cache_ttl_s: PositiveFloat = 5.0
    # /health/detailed calls the control loop stale when no cycle has decided for this long.
    control_loop_stale_s: PositiveInt = 3_600
    workers: PositiveInt = 1


class DatabaseSettings(Section):
    url: str | None = None  # unset: the local embedded Postgres of the stack section
    pool_size: PositiveInt = 10
    connect_timeout_s: PositiveFloat = 5.0
    event_retention_days: PositiveInt = 7
    # `events` is partitioned by range of time: a partition a day, or an hour (at millions of events an hour).
    event_partition: Literal["day", "hour"] = "day"
    event_partitions_ahead: PositiveInt = 3  # partitions StorageMaintenance keeps made ahead of now

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return url


MAX_DEFAULT_CONSUMERS = 8


class KafkaSettings(Section):
    brokers: list[str] | None = None  # unset: the local Tansu broker of the stack section
    topic: str = "llm-events"
    anomaly_topic: str = "llm.sentinel.anomaly.detected"
    group_id: str = "optimizer-ingest"
    session_timeout_ms: PositiveInt = 10_000
    heartbeat_interval_ms: PositiveInt = 3_000
    max_poll_interval_ms: PositiveInt = 300_000
    # Longest wait for the group to assign partitions to a new consumer: past it the run fails (retried with a
    # fresh consumer) instead of waiting out the whole activity run on a group that never settles.
    join_timeout_s: PositiveInt = 60
    # Tansu has no idempotent producer; Apache Kafka does.
    enable_idempotence: bool = False
    batch_max_events: PositiveInt = 5_000
    batch_max_wait_ms: PositiveInt = 500
    max_message_bytes: PositiveInt = 1024 * 1024
    # Topics the ingestion creates when missing (production clusters usually create them beforehand).
    partitions: PositiveInt = 3
    replication_factor: PositiveInt = 1
    # One consume activity runs this long (many batches, one consumer) before reporting to its workflow.
    consume_run_s: PositiveInt = 60
    # Consume activities one Ingestion runs at once, each a member of the group on any worker; unset: one per
    # kafka.partitions, at most MAX_DEFAULT_CONSUMERS (a consumer beyond the topic's partitions would sit idle).
    consumers: PositiveInt | None = None

    @property
    def consumer_count(self) -> int:
        return self.consumers or min(self.partitions, MAX_DEFAULT_CONSUMERS)

    @field_validator("brokers", mode="before")
    @classmethod
    def _split_brokers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [b.strip() for b in value.split(",") if b.strip()]
        return value


class TemporalSettings(Section):
    address: str | None = None  # unset: the local dev server of the stack section
    namespace: str = "default"
    task_queue: str = "llm-optimizer"


class CanaryThresholds(Section):
    """How a change rolls out, and the relative degradations that make the canary judge roll it back."""

    rollout: RolloutKind = "canary"  # or blue_green: a health check on the first stage, then all traffic at once
    error_rate_increase: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None  # None: the preset's
    latency_increase: PositiveFloat = 0.20
    quality_decrease: Fraction = 0.10
    cost_increase: PositiveFloat = 0.25
    min_samples: PositiveInt = 200
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01  # family-wise false-alarm rate of one judgement
    max_extensions: Annotated[int, Field(ge=0)] = 2  # inconclusive stages are extended at most this often


class ExplorationSettings(Section):
    """Candidates not measured yet are explored on a slice of real traffic, several at once (docs/architecture.md
    "Exploration"); these bound what exploration may risk."""

    enabled: bool = True
    unpriced: bool = True  # explore candidates no price source knows (their events' cost prices them)
    max_arms: PositiveInt = 10  # candidates measured at once
    traffic_percent: Annotated[float, Field(gt=0, le=50, allow_inf_nan=False)] = 30.0  # the slice, all arms together
    # The slice may grow to this once every open arm is credibly within `safe_margin` (of the reference's quality,
    # as a ratio) of the floor: little quality is at stake, and more traffic settles them sooner.
    max_traffic_percent: Annotated[float, Field(gt=0, le=50, allow_inf_nan=False)] = 50.0
    safe_margin: Annotated[float, Field(ge=0, le=0.5, allow_inf_nan=False)] = 0.05
    # An arm is settled by a one-sided test against the quality floor at this level, each way.
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    min_samples: PositiveInt = 100  # scored requests before an arm is tested
    max_samples: PositiveInt = 20_000  # scored requests after which an arm still undecided is left out (unproven)
    round_s: PositiveFloat = 300  # how often the arms are judged and the slice re-split
    max_duration_s: PositiveFloat = 6 * 3600  # then every undecided arm is unproven


class OptimizationSettings(Section):
    enabled: bool = True
    interval_s: PositiveInt = 900
    fast_path_interval_s: PositiveInt = 60
    strategy: Strategy = Strategy.balanced
    change_cooldown_s: PositiveInt = 1_800
    max_rollbacks_per_day: PositiveInt = 3
    rolled_back_retry_after_s: PositiveInt = 86_400
    # Fewer requests of the live config in the analysis window than this: no change is decided (nothing to judge a
    # candidate against, and an exploration's slice of no traffic measures nothing).
    min_live_requests: NonNegativeInt = 30
    canary: CanaryThresholds = CanaryThresholds()
    exploration: ExplorationSettings = ExplorationSettings()
    # Multiplies every bake time and interval of the loop: 1 in production, small in demos and tests.
    time_scale: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1.0


class StackSettings(Section):
    """The local embedded stack (`make up`): where its servers listen and keep their data."""

    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    postgres_port: Port = 5433
    temporal_port: Port = 7233
    temporal_ui_port: Port = 8233
    kafka_port: Port = 9092
    start_timeout_s: PositiveFloat = 60.0


class IntegrationSettings(Section):
    """External systems the loop talks to; each is off while its URL is unset."""

    # Traffic splits are pushed here (PUT /api/v1/configurations/{service}) as well as written to the registry.
    orchestrator_url: str | None = None
    # Model profiles and prices (GET /api/v1/models): they refresh the pricing catalog and the candidates.
    # Unreachable: the local catalog is used, and the decision says so.
    model_registry_url: str | None = None
    model_registry_refresh_s: PositiveInt = 300
    # Policy evaluation before every rollout (POST /api/v1/policies/evaluate): approve, or deny with violations.
    governance_url: str | None = None
    # Unreachable governance denies the rollout unless this is true (then it goes ahead, recorded as unchecked).
    governance_fail_open: bool = False
    timeout_s: PositiveFloat = 5.0
    retries: Annotated[int, Field(ge=0)] = 2
    # Circuit breaker of each integration: 5 failures in a row open it for a minute.
    failure_threshold: PositiveInt = 5
    reset_after_s: PositiveFloat = 60.0


class PricingSettings(Section):
    """Where model prices come from (docs/configuration.md, "Prices"): the model registry, then `price_file`,
    then the genai-prices database, then the cost events reported themselves."""

    # YAML mapping model -> {input_per_1m, output_per_1m} or {per_request}, provider optional; unset: none.
    price_file: Path | None = None
    # The genai-prices package's price database; off leaves models to the registry, the price file and observed cost.
    genai_prices: bool = True
    # Observed prices: events with a reported cost in this window before the decision, at least this many per model.
    observed_window_s: PositiveInt = 7 * 86_400
    observed_min_requests: PositiveInt = 20


class ServiceEvaluation(Section):
    """How one service's events are scored: an evaluator by name (heuristics, reference, feedback, llm_judge),
    its options, and the share of events evaluated (chosen by a hash of the event id, so a re-run picks the same)."""

    evaluator: str
    options: dict[str, Any] = Field(default_factory=dict)
    sampling_rate: Fraction = 1.0


class EvaluationSettings(Section):
    """Quality evaluation of events that arrive without a quality score (the `QualityEvaluation` workflow)."""

    # Request, response and reference texts are kept (for evaluation) only when this is true.
    store_text: bool = False
    # Regular expressions whose matches are replaced by [REDACTED] before a text is stored (emails always are).
    redact_patterns: list[Annotated[str, AfterValidator(checked_regex)]] = Field(default_factory=list)
    interval_s: PositiveInt = 60
    batch_size: PositiveInt = 500
    services: dict[str, ServiceEvaluation] = Field(default_factory=dict)


class MetricsSettings(Section):
    """Prometheus endpoints of the worker: the product's metrics, and the Temporal SDK's own (0 turns one off)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9464
    temporal_port: Annotated[int, Field(ge=0, le=65535)] = 9465
    # /health on `port` fails once the Temporal server has seen no poll of the worker's for this long (an idle
    # worker's long polls last about a minute each).
    poll_stale_s: Annotated[float, Field(ge=90, allow_inf_nan=False)] = 180.0


class TracingSettings(Section):
    """OpenTelemetry tracing of workflows and activities (temporalio's contrib interceptor), exported over OTLP/HTTP."""

    enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "llm-auto-optimizer"


class LoggingSettings(Section):
    level: LogLevel = LogLevel.info
    json_format: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    kafka: KafkaSettings = KafkaSettings()
    temporal: TemporalSettings = TemporalSettings()
    optimization: OptimizationSettings = OptimizationSettings()
    stack: StackSettings = StackSettings()
    integrations: IntegrationSettings = IntegrationSettings()
    pricing: PricingSettings = PricingSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    logging: LoggingSettings = LoggingSettings()

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL (psycopg 3 driver) of the database."""
        url = self.database.url or (f"postgresql://postgres@{self.stack.host}:{self.stack.postgres_port}/optimizer")
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def kafka_brokers(self) -> list[str]:
        return self.kafka.brokers or [f"{self.stack.host}:{self.stack.kafka_port}"]

    @property
    def temporal_address(self) -> str:
        return self.temporal.address or f"{self.stack.host}:{self.stack.temporal_port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _ShortEnvSource(settings_cls),
            _YamlFileSource(settings_cls),
        )


class _ShortEnvSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for name, (section, key) in SHORT_ENV_ALIASES.items():
            if name in os.environ:
                found.setdefault(section, {})[key] = os.environ[name]
        return found


class _YamlFileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(CONFIG_FILE_ENV)
        if not path:
            return {}
        try:
            data = yamlsafe.safe_load(Path(path).read_text(), what="settings file")
        except OSError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}={path!r}: cannot read the file ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"{CONFIG_FILE_ENV}={path!r}: not valid YAML ({exc})") from exc
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise SettingsError(f"{CONFIG_FILE_ENV}={path!r}: the top level must be a mapping of sections")
        return data


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, or fail with every wrong key and value named.

    >>> load_settings(optimization={"interval_s": 60}).optimization.interval_s
    60
    """
    problems = [
        f"  {name} = {value!r}: not a setting (expected {ENV_PREFIX}<SECTION>__<KEY>)"
        for name, value in os.environ.items()
        if name.startswith(ENV_PREFIX)
        and name != CONFIG_FILE_ENV
        and name[len(ENV_PREFIX) :].split("__")[0].lower() not in Settings.model_fields
    ]
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        for err in exc.errors():
            key = ".".join(str(part) for part in err["loc"])
            problems.append(f"  {key} = {err.get('input')!r}: {err['msg']}")
    if problems:
        raise SettingsError(
            "invalid settings (set them with OPTIMIZER_<SECTION>__<KEY> or the YAML file; see "
            "docs/configuration.md):\n" + "\n".join(problems)
        ) from None
    return settings
