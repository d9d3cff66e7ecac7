"""Landing events and dead letters in Postgres, fast and exactly once per event id.

Events are COPYed into a temporary staging table and moved with `INSERT .. ON CONFLICT DO NOTHING`, so one
transaction writes a whole batch and a redelivered event id is written once. The caller owns the transaction:
Kafka offsets are committed only after it commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

import psycopg

from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.events import DeadLetter, LLMEvent
from llm_optimizer.ingest import Anomaly, DecodedBatch, IngestCounts

EVENT_COLUMNS = (
    "event_id",
    "ts",
    "service",
    "endpoint",
    "model",
    "provider",
    "config_version",
    "variant",
    "latency_ms",
    "ttft_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "status",
    "error_type",
    "quality_score",
    "user_feedback",
    "request_key",
    "attributes",
    "source",
)
_COLS = ", ".join(EVENT_COLUMNS)


def event_row(event: LLMEvent, source: str) -> tuple:
    return (
        event.event_id,
        event.timestamp,
        event.service,
        event.endpoint,
        event.model,
        event.provider,
        event.config_version,
        event.variant.value if event.variant else None,
        event.latency_ms,
        event.ttft_ms,
        event.tokens_in,
        event.tokens_out,
        event.cost_usd,
        event.status.value,
        event.error_type,
        event.quality_score,
        event.user_feedback,
        event.request_key,
        json.dumps(event.attributes),
        source,
    )


def land(
    conn: psycopg.Connection, batch: DecodedBatch, *, source: str, texts: TextPolicy | None = None
) -> IngestCounts:
    """Write a decoded batch inside the caller's transaction; says how many were new, duplicate, dead-lettered.

    Events' texts are kept (redacted) only if `texts` says so."""
    accepted = _land_events(conn, batch.events, source) if batch.events else 0
    if texts is not None and texts.store:
        _land_texts(conn, [row for e in batch.events if (row := texts.row(e)) is not None])
    dead = _land_dead_letters(conn, batch.dead_letters) if batch.dead_letters else 0
    anomalies = _land_anomalies(conn, batch.anomalies) if batch.anomalies else 0
    return IngestCounts(
        accepted=accepted, duplicates=len(batch.events) - accepted, dead_lettered=dead, anomalies=anomalies, batches=1
    )


def land_events(conn: psycopg.Connection, events: Sequence[LLMEvent], *, source: str) -> IngestCounts:
    return land(conn, DecodedBatch(events=list(events)), source=source)


def _land_events(conn: psycopg.Connection, events: Sequence[LLMEvent], source: str) -> int:
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS events_stage (LIKE events INCLUDING DEFAULTS)")
        with cur.copy(f"COPY events_stage ({_COLS}) FROM STDIN") as copy:
            for event in events:
                copy.write_row(event_row(event, source))
        # DISTINCT ON: the same id twice inside one batch is also written once.
        cur.execute(
            f"INSERT INTO events ({_COLS}) SELECT DISTINCT ON (event_id) {_COLS} FROM events_stage "
            "ON CONFLICT (event_id) DO NOTHING"
        )
        inserted = cur.rowcount
        cur.execute("TRUNCATE events_stage")
    return inserted


def _land_texts(conn: psycopg.Connection, rows: list[tuple]) -> None:
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO event_texts (event_id, request_text, response_text, reference_text) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                rows,
            )


def _land_dead_letters(conn: psycopg.Connection, dead_letters: Sequence[DeadLetter]) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (source, position, reason, raw) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (source, position) DO NOTHING",
            [(d.source, d.position, d.reason, d.raw) for d in dead_letters],
        )
        return cur.rowcount  # psycopg sums the statements: a redelivered poison message counts 0


def _land_anomalies(conn: psycopg.Connection, anomalies: Sequence[Anomaly]) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO anomalies (anomaly_id, service, severity, anomaly_type, payload, detected_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (anomaly_id) DO NOTHING",
            [
                (
                    a.anomaly_id,
                    a.service,
                    a.alert.severity.value,
                    a.alert.anomaly_type,
                    a.alert.model_dump_json(),
                    a.detected_at,
                )
                for a in anomalies
            ],
        )
        return cur.rowcount


def read_events(conn: psycopg.Connection, service: str, start: datetime, end: datetime) -> Iterable[LLMEvent]:
    """The events of `service` with start <= timestamp < end, oldest first."""
    columns = [c for c in EVENT_COLUMNS if c != "source"]
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(columns)} FROM events WHERE service = %s AND ts >= %s AND ts < %s "
            "ORDER BY ts, event_id",
            (service, start, end),
        )
        for row in cur:
            record = dict(zip(columns, row, strict=True))
            record["timestamp"] = record.pop("ts")
            yield LLMEvent.model_validate({k: v for k, v in record.items() if v is not None})
