"""The Postgres schema as SQLAlchemy Core tables. Migrations under `storage/migrations` create it; a test checks
that the migrated database matches these tables exactly."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, **kwargs) -> Column:
    return Column(name, DateTime(timezone=True), **kwargs)


def _now(name: str) -> Column:
    return _ts(name, nullable=False, server_default=func.now())


# One row per LLM request, identified by (event_id, ts): a redelivered event (same id, same time) is written once.
# Partitioned by range of ts (storage/partitions_repo.py; a key of a partitioned table must hold the partition key).
PROFILE_COLUMNS = [
    "model",
    "provider",
    "config_version",
    "status",
    "latency_ms",
    "quality_score",
    "cost_usd",
    "tokens_in",
    "tokens_out",
]

events = Table(
    "events",
    metadata,
    Column("event_id", Text, primary_key=True),
    _ts("ts", primary_key=True),
    Column("service", Text, nullable=False),
    Column("endpoint", Text),
    Column("model", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("config_version", Text),
    Column("variant", Text),
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("tokens_in", Integer),  # NULL: the source did not report usage (migration 0007)
    Column("tokens_out", Integer),
    Column("cost_usd", Float),
    Column("status", Text, nullable=False),
    Column("error_type", Text),
    Column("quality_score", Float),
    Column("user_feedback", Float),
    Column("request_key", Text),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("source", Text, nullable=False),
    _now("ingested_at"),
    # Covers the loop's reads (profiles, the judge's samples, spend): an index-only scan of a service's window
    # instead of one heap page per event, since services' events interleave in the heap.
    Index(None, "service", "ts", postgresql_include=PROFILE_COLUMNS),
    Index(None, "ts"),
    # Each partition vacuums after every 50,000 inserts (partitions_repo.STORAGE): recent pages stay all-visible.
    postgresql_partition_by="RANGE (ts)",
)

# Input that could not become an event, kept with its code and reason. (source, position) makes a redelivered
# poison message land once.
dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("position", Text, nullable=False),
    Column("code", Text, nullable=False),  # a DeadLetterCode (llm_optimizer/events.py): what to group by
    Column("reason", Text, nullable=False),  # the text: the field, the value and why
    Column("raw", LargeBinary, nullable=False),
    _now("received_at"),
    UniqueConstraint("source", "position"),
    Index(None, "received_at"),
)

# Sentinel anomaly alerts, one row per alert id.
anomalies = Table(
    "anomalies",
    metadata,
    Column("anomaly_id", Text, primary_key=True),
    Column("service", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("anomaly_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    _ts("detected_at", nullable=False),
    _now("received_at"),
    Column("handled_by", Text),
    Index(None, "service", "received_at"),
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("service", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("parent_version", Text),
    Column("spec", JSONB, nullable=False),
    Column("fingerprint", Text, nullable=False),
    _now("created_at"),
    Column("created_by", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    PrimaryKeyConstraint("service", "version"),
    UniqueConstraint("service", "fingerprint"),
    ForeignKeyConstraint(["service", "parent_version"], ["config_versions.service", "config_versions.version"]),
)

# The live assignment of a service: one active version, at most one canary with its share of traffic, and the arms
# of an exploration (version -> share of traffic).
config_assignments = Table(
    "config_assignments",
    metadata,
    Column("service", Text, primary_key=True),
    Column("active_version", Text, nullable=False),
    Column("canary_version", Text),
    Column("canary_percent", Float, nullable=False, server_default="0"),
    Column("explore", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_by", Text, nullable=False),
    _now("updated_at"),
    CheckConstraint("canary_percent >= 0 AND canary_percent <= 100", name="canary_percent_range"),
    CheckConstraint(
        "(canary_version IS NULL AND canary_percent = 0) OR canary_version IS NOT NULL",
        name="no_share_without_canary",
    ),
    ForeignKeyConstraint(
        ["service", "active_version"],
        ["config_versions.service", "config_versions.version"],
        name="fk_config_assignments_active_version",
    ),
    ForeignKeyConstraint(
        ["service", "canary_version"],
        ["config_versions.service", "config_versions.version"],
        name="fk_config_assignments_canary_version",
    ),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("rollout_id", Text, primary_key=True),
    Column("service", Text, nullable=False),
    Column("from_version", Text, nullable=False),
    Column("to_version", Text, nullable=False),
    Column("strategy", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    _now("started_at"),
    _ts("finished_at"),
    Index(None, "service", "started_at"),
)

# One row per judgement of a stage, keyed by the workflow's count of judgements within it (`attempt`): a retry of the
# same judgement rewrites the row with its verdict and time (storage/audit_repo.record_verdict).
rollout_verdicts = Table(
    "rollout_verdicts",
    metadata,
    Column("rollout_id", Text, nullable=False),
    Column("stage", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("percent", Float, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("metrics", JSONB, nullable=False),
    _now("judged_at"),
    # Which try of its judge wrote the row (Temporal's activity attempt): a later try's write wins (migration 0012).
    Column("judged_by_try", Integer, nullable=False, server_default="1"),
    PrimaryKeyConstraint("rollout_id", "stage", "attempt"),
    ForeignKeyConstraint(["rollout_id"], ["rollouts.rollout_id"]),
)

# Every decision, "no action" included, with its rationale and every rule and constraint checked.
decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", Text, primary_key=True),
    Column("service", Text, nullable=False),
    Column("cycle_id", Text, nullable=False),
    _now("made_at"),
    Column("action", Text, nullable=False),
    Column("rationale", Text, nullable=False),
    Column("confidence", Float),
    Column("current_version", Text),
    Column("proposed_version", Text),
    Column("expected_impact", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("checks", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # Every offered candidate and its fate (proposed, exploring, or skipped with the reason).
    Column("candidates", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Index(None, "service", "made_at"),
)

# The audit trail of the control loop: state transitions, signals, triggers (`optimization_events`).
optimization_events = Table(
    "optimization_events",
    metadata,
    Column("id", Text, primary_key=True),
    Column("service", Text, nullable=False),
    _now("ts"),
    Column("event_type", Text, nullable=False),
    Column("triggered_by", Text, nullable=False),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index(None, "service", "ts"),
)

# Rules, constraints and governance policies as data.
policies = Table(
    "policies",
    metadata,
    Column("name", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("service", Text),
    Column("definition", JSONB, nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    _now("created_at"),
    _now("updated_at"),
    CheckConstraint("kind IN ('rule', 'constraint', 'governance')", name="known_kind"),
)


def _rollup(name: str) -> Table:
    """Sums per bucket, so that any longer period is a sum of buckets (means and rates follow; p95 is per bucket)."""
    return Table(
        name,
        metadata,
        _ts("bucket", nullable=False),
        Column("service", Text, nullable=False),
        Column("model", Text, nullable=False),
        Column("config_version", Text, nullable=False),  # '' when the events carried none
        Column("variant", Text, nullable=False),
        Column("requests", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("timeouts", BigInteger, nullable=False),
        Column("latency_sum_ms", Float, nullable=False),
        Column("latency_p95_ms", Float, nullable=False),
        Column("tokens_in_sum", BigInteger, nullable=False),
        Column("tokens_out_sum", BigInteger, nullable=False),
        Column("cost_sum_usd", Float, nullable=False),
        Column("quality_sum", Float, nullable=False),
        Column("quality_n", BigInteger, nullable=False),
        Column("feedback_n", BigInteger, nullable=False),
        PrimaryKeyConstraint("bucket", "service", "model", "config_version", "variant"),
        Index(None, "service", "bucket"),
    )


# Kept incrementally from the raw events, which expire after database.event_retention_days: a year of history
# stays queryable at 1-hour resolution.
rollups_1m = _rollup("rollups_1m")
rollups_1h = _rollup("rollups_1h")

# How far each rollup is complete: raw events older than every watermark (and than the retention) may go.
rollup_watermarks = Table(
    "rollup_watermarks",
    metadata,
    Column("rollup", Text, primary_key=True),
    _ts("complete_until", nullable=False),
)

# API keys of the HTTP API: only a SHA-256 of the secret is kept; the key is shown once, when created.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("rate_limit_per_s", Float),  # None: server.rate_limit_per_s
    _now("created_at"),
    _ts("revoked_at"),
    CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="known_role"),
)


# Texts of events, kept only when `evaluation.store_text` allows it, redacted; they go with their event's partition
# (no foreign key: one to a partitioned table would stop its partitions from being dropped).
event_texts = Table(
    "event_texts",
    metadata,
    Column("event_id", Text, primary_key=True),
    _ts("ts", primary_key=True),
    Column("request_text", Text),
    Column("response_text", Text),
    Column("reference_text", Text),
    Index(None, "ts"),
)

# Quality scores produced by evaluators (`quality_evaluations`); the score is also written into the event.
quality_evaluations = Table(
    "quality_evaluations",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("evaluator", Text, nullable=False),
    Column("service", Text, nullable=False),
    Column("config_version", Text),
    _now("evaluated_at"),
    Column("overall_score", Float),  # None: the evaluator could not score it (see skipped_reason)
    Column("dimension_scores", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("evaluation_method", Text, nullable=False),
    Column("confidence", Float),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("skipped_reason", Text),
    PrimaryKeyConstraint("event_id", "evaluator"),
    Index(None, "service", "evaluated_at"),
)

# How far each Kafka partition has landed (docs/architecture.md "Complete windows"): the event time before which
# every record of the partition is in `events`. Written in the landing's own transaction, or when the consumer is
# caught up; the judge of a canary stage waits for the minimum over the topics that feed its service.
ingestion_watermarks = Table(
    "ingestion_watermarks",
    metadata,
    Column("topic", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    _ts("complete_until", nullable=False),
    Column("committed_offset", BigInteger),
    _now("updated_at"),
    PrimaryKeyConstraint("topic", "partition"),
)

# Which topics carry a service's events (learned from the events each topic lands): only those hold its judge back.
ingestion_feeds = Table(
    "ingestion_feeds",
    metadata,
    Column("topic", Text, nullable=False),
    Column("service", Text, nullable=False),
    _ts("last_event_at", nullable=False),
    PrimaryKeyConstraint("topic", "service"),
    Index(None, "service"),
)
