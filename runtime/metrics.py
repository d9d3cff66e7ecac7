"""The product's Prometheus metrics, recorded by the activities in the worker process.

Names follow Prometheus conventions (`optimizer_rollbacks_total`, ...); docs/grafana/ charts them. The Temporal
SDK's own runtime metrics are exported separately by the worker (see `worker.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge

from llm_optimizer.decoding import DecodedBatch
from llm_optimizer.events import DeadLetterCode
from llm_optimizer.payloads import IngestCounts, QualityReport

EVENTS_INGESTED = Counter("optimizer_events_ingested_total", "Events landed in Postgres", ["source"])
EVENTS_DUPLICATE = Counter("optimizer_events_duplicate_total", "Events already present (redeliveries)", ["source"])
# `reason` is the dead letter's `DeadLetterCode` (a few values, whatever the input); the text is in the table.
DEAD_LETTERS = Counter(
    "optimizer_dead_letters_total", "Inputs refused into the dead-letter table", ["source", "reason"]
)
CONSUMER_LAG = Gauge(
    "optimizer_consumer_lag", "Messages behind the end of the partition after the last commit", ["topic", "partition"]
)
DECISIONS = Counter("optimizer_decisions_total", "Decisions made by the loop", ["service", "action"])
ROLLOUTS = Counter(
    "optimizer_rollouts_total", "Rollouts by outcome (started, promoted, rolled_back)", ["service", "outcome"]
)
ROLLBACKS = Counter("optimizer_rollbacks_total", "Rollouts rolled back and operator rollbacks", ["service"])
DATA_LATE_SECONDS = Gauge(
    "optimizer_data_late_seconds",
    "How far the service's landed events were behind the window its last judge or observation needed (0: complete)",
    ["service"],
)
WORKER_LAST_POLL = Gauge(
    "optimizer_worker_last_poll_timestamp_seconds",
    "When the Temporal server last saw this worker poll its task queue (unix time), by task type",
    ["task_type"],
)
EMERGENCY_STOPS = Counter("optimizer_emergency_stops_total", "Emergency stops accepted", ["service"])
COST_PER_REQUEST = Gauge("optimizer_cost_per_request_usd", "Cost per request of the live config", ["service"])
ESTIMATED_SAVINGS = Gauge(
    "optimizer_estimated_savings_ratio", "Expected relative cost change of the last canary decision", ["service"]
)

QUALITY_EVALUATIONS = Counter(
    "optimizer_quality_evaluations_total",
    "Events scored by evaluators, by outcome (evaluated, skipped, unavailable)",
    ["service", "evaluator", "outcome"],
)
EVALUATION_COST = Counter(
    "optimizer_evaluation_cost_usd_total", "What evaluations cost (LLM judge tokens)", ["service"]
)


def record_landed(source: str, batch: DecodedBatch, counts: IngestCounts) -> None:
    """Count one landed batch (from Kafka, HTTP or OTLP)."""
    EVENTS_INGESTED.labels(source).inc(counts.accepted)
    EVENTS_DUPLICATE.labels(source).inc(counts.duplicates)
    for dead in batch.dead_letters:
        DEAD_LETTERS.labels(source, dead.code.value).inc()


# Every span an OTLP export carries, by what became of it (api/otlp.py): landed or duplicate (reason ""),
# dead_lettered (reason: the dead letter's `DeadLetterCode`), ignored (reason: not_genai, agent, workflow, tool, ...).
OTLP_SPANS = Counter(
    "optimizer_otlp_spans_total", "Spans received on /v1/traces, by outcome and reason", ["outcome", "reason"]
)


def record_otlp_spans(
    landed: int, duplicates: int, dead_letter_codes: list[DeadLetterCode], ignored: Mapping[str, int]
) -> None:
    OTLP_SPANS.labels("landed", "").inc(landed)
    OTLP_SPANS.labels("duplicate", "").inc(duplicates)
    for code in dead_letter_codes:
        OTLP_SPANS.labels("dead_lettered", code.value).inc()
    for reason, count in ignored.items():
        OTLP_SPANS.labels("ignored", reason).inc(count)


def record_evaluations(report: QualityReport) -> None:
    for outcome in ("evaluated", "skipped", "unavailable"):
        QUALITY_EVALUATIONS.labels(report.service, report.evaluator, outcome).inc(getattr(report, outcome))
    EVALUATION_COST.labels(report.service).inc(report.cost_usd)


# Stuck is visible (docs/troubleshooting.md): failed runs of the consumer of a topic, in a row and in all, by the
# type of the error (the error itself is in the Ingestion workflow's `status` and in /health/detailed).
INGESTION_CONSECUTIVE_FAILURES = Gauge(
    "optimizer_ingestion_consecutive_failures",
    "Runs of the consumer of a topic that failed since its last successful one, in this worker",
    ["topic"],
)
INGESTION_FAILURES = Counter(
    "optimizer_ingestion_failures_total", "Failed runs of the consumer of a topic, by error type", ["topic", "error"]
)
INGESTION_LAST_SUCCESS = Gauge(
    "optimizer_ingestion_last_success_timestamp_seconds",
    "When a run of the consumer of a topic last succeeded (Unix time)",
    ["topic"],
)
LANDING_SPLITS = Counter(
    "optimizer_landing_splits_total",
    "Batches Postgres refused for their data, split to dead-letter the messages at fault",
    ["source"],
)


def record_ingestion_failure(topic: str, error: BaseException) -> None:
    INGESTION_CONSECUTIVE_FAILURES.labels(topic).inc()
    INGESTION_FAILURES.labels(topic, type(error).__name__).inc()


def record_ingestion_success(topic: str, at: float) -> None:
    INGESTION_CONSECUTIVE_FAILURES.labels(topic).set(0)
    INGESTION_LAST_SUCCESS.labels(topic).set(at)
