"""Landing events and dead letters in Postgres, fast and exactly once per event id.

A batch's events are COPYed straight into `events` (as fast as a plain COPY); if some of their ids are already
there (a redelivered batch), that COPY is undone and the batch goes through a temporary staging table and
`INSERT .. ON CONFLICT DO NOTHING`, so a redelivered event is written once. An event is identified by its id and
its time, (event_id, ts): the key of the partitioned `events` must hold the partition key, and a redelivery carries
the same time (docs/deployment.md, "Partitioned events"). `land` writes a whole batch in one
transaction block (a savepoint inside the caller's transaction, if one is open): Kafka offsets are committed only
after the caller's transaction commits.

The event model refuses everything Postgres cannot store, but should Postgres still refuse a batch because of its
data (`DATA_ERRORS`), the batch is split in halves, each landed in its own savepoint, down to the messages it
refuses: those become dead letters with the database's reason, and the rest lands, in the same transaction. A
failure that is not about the data (the server is down, the connection broke) propagates, nothing is committed
and the caller retries the whole batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import psycopg

from llm_optimizer.columnar import ROW_SCHEMA
from llm_optimizer.decoding import Anomaly, DecodedBatch, Origin
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.events import DeadLetter, DeadLetterCode, LLMEvent
from llm_optimizer.payloads import IngestCounts

EVENT_COLUMNS = (*ROW_SCHEMA, "source")
_COLS = ", ".join(EVENT_COLUMNS)

# Refusals about the data itself, from the server (22xxx, 23xxx, an index row too large) or from psycopg while it
# adapts a value: landing the same rows again can never succeed, so the rows at fault are found and dead-lettered.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    UnicodeEncodeError,
    OverflowError,
)


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
    dead-lettered. Events' texts are kept (redacted) only if `texts` says so. Items Postgres refuses for their data
    are added to `batch.dead_letters` (so that callers report them like any other refusal) and landed as such."""
    with conn.transaction():
        try:
            with conn.transaction():  # a savepoint: a refused batch is undone, then split
                landed = _land_items(conn, batch, source, texts)
            refused: list[DeadLetter] = []
        except DATA_ERRORS as exc:
            landed, refused = _land_split(conn, batch, _items(batch), source, texts, exc)
        known = {d.position for d in batch.dead_letters}
        for letter in refused:  # several anomalies of one message refused: one dead letter
            if letter.position not in known:
                known.add(letter.position)
                batch.dead_letters.append(letter)
        dead = _land_dead_letters(conn, batch.dead_letters) if batch.dead_letters else 0
    return IngestCounts(
        accepted=landed.accepted,
        duplicates=landed.events - landed.accepted,
        dead_lettered=dead,
        anomalies=landed.anomalies,
        batches=1,
    )


@dataclass
class _Landed:
    events: int = 0  # events written or found already there
    accepted: int = 0  # of which new
    anomalies: int = 0

    def __add__(self, other: _Landed) -> _Landed:
        return _Landed(self.events + other.events, self.accepted + other.accepted, self.anomalies + other.anomalies)


def _land_items(conn: psycopg.Connection, batch: DecodedBatch, source: str, texts: TextPolicy | None) -> _Landed:
    """The events (and their texts) and anomalies of `batch`; its dead letters are the caller's."""
    accepted = _land_rows(conn, event_rows(batch), source) if batch.event_count else 0
    if texts is not None and texts.store:
        _land_texts(conn, [(*row, e.timestamp) for e in batch.events if (row := texts.row(e)) is not None])
    anomalies = _land_anomalies(conn, batch.anomalies) if batch.anomalies else 0
    return _Landed(events=batch.event_count, accepted=accepted, anomalies=anomalies)


_Item = tuple[str, int]  # ("row" | "event" | "anomaly", its index in the batch)


def _items(batch: DecodedBatch) -> list[_Item]:
    return [
        *(("row", i) for i in range(batch.rows.height)),
        *(("event", i) for i in range(len(batch.events))),
        *(("anomaly", i) for i in range(len(batch.anomalies))),
    ]


def _land_split(
    conn: psycopg.Connection,
    batch: DecodedBatch,
    items: list[_Item],
    source: str,
    texts: TextPolicy | None,
    error: BaseException,
) -> tuple[_Landed, list[DeadLetter]]:
    """`items` of `batch`, which Postgres refused together with `error`: each half in its own savepoint, and so on
    down to single items, which are dead-lettered with the error they alone caused. A batch of n items with one
    bad item costs about 2·log2(n) more statements."""
    if len(items) == 1:
        return _Landed(), [_refused(batch, items[0], source, error)]
    landed, refused = _Landed(), []
    half = len(items) // 2
    for part in (items[:half], items[half:]):
        try:
            with conn.transaction():
                landed += _land_items(conn, _subset(batch, part), source, texts)
        except DATA_ERRORS as exc:
            more, dead = _land_split(conn, batch, part, source, texts, exc)
            landed += more
            refused += dead
    return landed, refused


def _subset(batch: DecodedBatch, items: list[_Item]) -> DecodedBatch:
    picked: dict[str, list[int]] = {"row": [], "event": [], "anomaly": []}
    for kind, i in items:
        picked[kind].append(i)
    return DecodedBatch(
        rows=batch.rows[picked["row"]] if picked["row"] else batch.rows.clear(),
        events=[batch.events[i] for i in picked["event"]],
        anomalies=[batch.anomalies[i] for i in picked["anomaly"]],
    )


def _refused(batch: DecodedBatch, item: _Item, source: str, error: BaseException) -> DeadLetter:
    """The dead letter of one item Postgres refused: its message's position and bytes when the batch knows them;
    otherwise the item is named by its id and its bytes are what was to be stored."""
    kind, i = item
    origins = {"row": batch.row_origins, "event": batch.event_origins, "anomaly": batch.anomaly_origins}[kind]
    origin: Origin | None = origins[i] if i < len(origins) else None
    index = None
    if origin is not None:
        position, raw, index = origin.position, origin.raw_bytes(), origin.index
    elif kind == "row":
        row = batch.rows.row(i, named=True)
        position, raw = f"event/{row['event_id']}", json.dumps(row, default=str).encode()
    elif kind == "event":
        event = batch.events[i]
        position, raw = f"event/{event.event_id}", event.model_dump_json().encode()
    else:
        anomaly = batch.anomalies[i]
        position, raw = f"anomaly/{anomaly.anomaly_id}", anomaly.alert.model_dump_json().encode()
    return DeadLetter(
        source=source,
        position=position,
        index=index,
        code=DeadLetterCode.db_refused,
        reason=f"Postgres refused it: {describe_db_error(error)}",
        raw=raw,
    )


def describe_db_error(error: BaseException) -> str:
    """The database's own words (message, SQLSTATE, and for a COPY the column and value at fault), or psycopg's."""
    if isinstance(error, psycopg.Error) and error.diag.message_primary:
        diag = error.diag
        text = f"{diag.message_primary} (SQLSTATE {diag.sqlstate})"
        if diag.message_detail:
            text += f"; {diag.message_detail}"
        if diag.context:
            text += f"; {diag.context.splitlines()[0]}"
    else:
        text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 600 else text[:597] + "..."


def land_events(conn: psycopg.Connection, events: Sequence[LLMEvent], *, source: str) -> IngestCounts:
    return land(conn, DecodedBatch(events=list(events)), source=source)


def _land_rows(conn: psycopg.Connection, rows: pl.DataFrame, source: str) -> int:
    # The same event twice in a batch (id and time: its identity) is written once.
    rows = rows.unique(["event_id", "ts"], keep="first", maintain_order=True)
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
        cur.execute(
            f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM events_stage ON CONFLICT (event_id, ts) DO NOTHING"
        )
        inserted = cur.rowcount
        cur.execute("TRUNCATE events_stage")
    return inserted


def _land_texts(conn: psycopg.Connection, rows: list[tuple]) -> None:
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO event_texts (event_id, request_text, response_text, reference_text, ts) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id, ts) DO NOTHING",
                rows,
            )


def _land_dead_letters(conn: psycopg.Connection, dead_letters: Sequence[DeadLetter]) -> int:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dead_letters (source, position, code, reason, raw) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (source, position) DO NOTHING",
            [(d.source, d.position, d.code.value, d.reason, d.raw) for d in dead_letters],
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
