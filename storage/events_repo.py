"""Landing events and dead letters in Postgres, fast and exactly once per event id.

A batch's events are COPYed straight into `events` (as fast as a plain COPY); if some of their ids are already
there (a redelivered batch), that COPY is undone and the batch goes through a temporary staging table and
`INSERT .. ON CONFLICT DO NOTHING`, so a redelivered event id is written once. `land` writes a whole batch in one
transaction block (a savepoint inside the caller's transaction, if one is open): Kafka offsets are committed only
after the caller's transaction commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime

import polars as pl
import psycopg

from llm_optimizer.columnar import ROW_SCHEMA
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.events import DeadLetter, LLMEvent
from llm_optimizer.ingest import Anomaly, DecodedBatch, IngestCounts

EVENT_COLUMNS = (*ROW_SCHEMA, "source")
_COLS = ", ".join(EVENT_COLUMNS)


def event_row(event: LLMEvent) -> tuple:
    """`event` as a row of `ROW_SCHEMA`."""
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
    )


def event_rows(batch: DecodedBatch) -> pl.DataFrame:
    """All the accepted events of `batch` as rows: the columnar path's, then the per-message path's."""
    if not batch.events:
        return batch.rows
    converted = pl.DataFrame([event_row(e) for e in batch.events], schema=ROW_SCHEMA, orient="row")
    return pl.concat([batch.rows, converted])


def land(
    conn: psycopg.Connection, batch: DecodedBatch, *, source: str, texts: TextPolicy | None = None
) -> IngestCounts:
    """Write a decoded batch in one transaction (the caller's, if one is open); says how many were new, duplicate,
    dead-lettered. Events' texts are kept (redacted) only if `texts` says so."""
    with conn.transaction():
        accepted = _land_rows(conn, event_rows(batch), source) if batch.event_count else 0
        if texts is not None and texts.store:
            _land_texts(conn, [row for e in batch.events if (row := texts.row(e)) is not None])
        dead = _land_dead_letters(conn, batch.dead_letters) if batch.dead_letters else 0
        anomalies = _land_anomalies(conn, batch.anomalies) if batch.anomalies else 0
    return IngestCounts(
        accepted=accepted, duplicates=batch.event_count - accepted, dead_lettered=dead, anomalies=anomalies, batches=1
    )


def land_events(conn: psycopg.Connection, events: Sequence[LLMEvent], *, source: str) -> IngestCounts:
    return land(conn, DecodedBatch(events=list(events)), source=source)


def _land_rows(conn: psycopg.Connection, rows: pl.DataFrame, source: str) -> int:
    rows = rows.unique("event_id", keep="first", maintain_order=True)  # the same id twice in a batch: written once
    csv = rows.with_columns(source=pl.lit(source)).write_csv(
        include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.6f%:z"
    )
    try:
        # A savepoint: a known id undoes just this COPY.
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(f"COPY events ({_COLS}) FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(csv)
        return rows.height
    except psycopg.errors.UniqueViolation:
        pass
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS events_stage (LIKE events INCLUDING DEFAULTS)")
        with cur.copy(f"COPY events_stage ({_COLS}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(csv)
        cur.execute(f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM events_stage ON CONFLICT (event_id) DO NOTHING")
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
