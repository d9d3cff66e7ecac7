"""Landing decoded batches in Postgres: one COPY when every id is new, exactly once per event id when some are not."""

from __future__ import annotations

import json

import psycopg
from fixture_prices import fixture_book

from llm_optimizer.events import to_cloudevent
from llm_optimizer.ingest import Decoder
from llm_optimizer.samples import sample_events
from storage.events_repo import EVENT_COLUMNS, land

CATALOG = fixture_book()


def decode(values: list[bytes], *, columnar: bool = True):
    decoder = Decoder(CATALOG, source="kafka", max_message_bytes=1 << 16, columnar_from=1 if columnar else None)
    return decoder.decode([(f"t/0/{i}", v, []) for i, v in enumerate(values)])


def stored(conn: psycopg.Connection) -> list[tuple]:
    columns = ", ".join(c for c in EVENT_COLUMNS if c != "source")
    return conn.execute(f"SELECT {columns} FROM events ORDER BY event_id").fetchall()


def test_a_redelivered_batch_and_an_overlapping_one_land_each_event_once(db):
    values = [json.dumps(to_cloudevent(e)).encode() for e in sample_events(400, seed=11)]
    first = land(db, decode(values[:300]), source="kafka")
    assert (first.accepted, first.duplicates) == (300, 0)
    again = land(db, decode(values[:300]), source="kafka")  # the same batch after a crash before the commit
    assert (again.accepted, again.duplicates) == (0, 300)
    overlapping = land(db, decode(values[200:]), source="kafka")
    assert (overlapping.accepted, overlapping.duplicates) == (100, 100)
    within = land(db, decode([values[0], values[0], *values[:1]]), source="kafka")  # known, and twice in a batch
    assert (within.accepted, within.duplicates) == (0, 3)
    db.commit()
    assert db.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone() == (400, 400)


def test_rows_from_both_paths_store_the_same_values(database_url):
    """Strings with CSV's special characters, unicode, extreme numbers: the columnar rows and the per-message
    events read back identical."""
    events = list(sample_events(6, seed=12))
    odd = [
        {"endpoint": "say 'hi', then\\leave"},
        {"request_key": "ключ-é-🙂"},
        {"endpoint": "/v1/a,b;c", "quality_score": 1e-300, "latency_ms": 3_600_000},
        {"error_type": "timeout", "status": "timeout", "tokens_in": 10_000_000, "cost_usd": 0},
        {"config_version": "v1.2+build@x:y/z", "user_feedback": -1, "ttft_ms": 0.1},
        {"endpoint": "  stripped  ", "timestamp": "2026-11-01T00:00:00.000001-09:30"},
    ]
    values = [
        json.dumps({**e.model_dump(mode="json", exclude_none=True), **changes}, ensure_ascii=False).encode()
        for e, changes in zip(events, odd, strict=True)
    ]
    results = []
    for columnar in (True, False):
        batch = decode(values, columnar=columnar)
        assert (batch.rows.height, len(batch.events)) == ((6, 0) if columnar else (0, 6))
        with psycopg.connect(database_url) as conn:
            conn.execute("DELETE FROM events")
            assert land(conn, batch, source="kafka").accepted == 6
            results.append(stored(conn))
    assert results[0] == results[1]
    assert "say 'hi', then\\leave" in [row[3] for row in results[0]]
