"""Landing decoded batches in Postgres: one COPY when every id is new, exactly once per event id when some are not."""

from __future__ import annotations

import json
import re

import psycopg
from helpers.fixture_prices import fixture_book

from llm_optimizer.decoding import Decoder
from llm_optimizer.events import to_cloudevent
from simulator.samples import sample_events
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


# ---- what Postgres refuses for its data costs only the messages at fault (issue 19) ----

POISON = "CHECK (endpoint IS DISTINCT FROM '/poison')"  # data the model accepts and this database refuses


def test_a_batch_postgres_refuses_is_split_and_only_the_refused_messages_are_dead_lettered(db):
    db.execute(f"ALTER TABLE events ADD CONSTRAINT test_poison {POISON}")
    events = list(sample_events(200, seed=13))
    values = [json.dumps(to_cloudevent(e)).encode() for e in events]
    poisoned = {37: {"endpoint": "/poison"}, 150: {"endpoint": "/poison", "attributes": {"region": "eu"}}}
    for i, changes in poisoned.items():
        values[i] = json.dumps({**events[i].model_dump(mode="json", exclude_none=True), **changes}).encode()
    batch = decode(values)
    assert batch.rows.height > 0 and len(batch.events) == 1  # the poison goes both ways: a row and an event
    counts = land(db, batch, source="kafka")
    assert (counts.accepted, counts.duplicates, counts.dead_lettered) == (198, 0, 2)
    refused = {d.position: d for d in batch.dead_letters}
    assert set(refused) == {"t/0/37", "t/0/150"}
    for i in poisoned:
        dead = refused[f"t/0/{i}"]
        assert dead.raw == values[i]
        # The relation Postgres names is the partition of `events` the row went to.
        refusal = r'Postgres refused it: new row for relation "events(_\w+)?" violates check constraint'
        assert re.match(refusal, dead.reason), dead.reason
        assert "test_poison" in dead.reason and "SQLSTATE 23514" in dead.reason
    db.commit()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 198
    assert db.execute("SELECT position FROM dead_letters ORDER BY position").fetchall() == [("t/0/150",), ("t/0/37",)]

    again = land(db, decode(values), source="kafka")  # redelivered: nothing lands twice, no dead letter twice
    assert (again.accepted, again.duplicates, again.dead_lettered) == (0, 198, 0)
    db.commit()
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 198
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 2


def test_events_that_slipped_past_the_model_are_dead_lettered_with_the_database_reason(db):
    """Belt and braces: events made without validation, holding what the model now refuses."""
    from datetime import datetime, timedelta, timezone

    from llm_optimizer.decoding import DecodedBatch
    from llm_optimizer.events import LLMEvent

    good = list(sample_events(5, seed=14))
    nul = LLMEvent.model_construct(**{**dict(good[1]), "event_id": "nul", "endpoint": "a\x00b"})
    nan = LLMEvent.model_construct(**{**dict(good[2]), "event_id": "nan", "attributes": {"x": float("nan")}})
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))  # year 0 in UTC
    old = LLMEvent.model_construct(**{**dict(good[3]), "event_id": "old", "timestamp": early})
    batch = DecodedBatch(events=[good[0], nul, nan, old, good[4]])
    counts = land(db, batch, source="file")
    assert (counts.accepted, counts.dead_lettered) == (2, 3)
    reasons = {d.position: d.reason for d in batch.dead_letters}
    assert set(reasons) == {"event/nul", "event/nan", "event/old"}
    assert all(r.startswith("Postgres refused it: ") for r in reasons.values())
    assert "0x00" in reasons["event/nul"]
    assert "json" in reasons["event/nan"].lower()
    assert "old" in [json.loads(d.raw)["event_id"] for d in batch.dead_letters]  # the bytes it was to store
    assert {r[0] for r in db.execute("SELECT event_id FROM events")} == {good[0].event_id, good[4].event_id}


def test_a_failure_that_is_not_about_the_data_lands_nothing_and_propagates(database_url):
    values = [json.dumps(to_cloudevent(e)).encode() for e in sample_events(50, seed=15)]
    batch = decode([*values, b"{not json"])
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as conn:
        holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # held until `holder` commits
        conn.execute("SET lock_timeout = '200ms'")
        conn.commit()
        try:
            land(conn, batch, source="kafka")
        except psycopg.errors.LockNotAvailable:
            conn.rollback()
        else:
            raise AssertionError("a lock timeout must propagate: it is not about the data")
        holder.commit()
        assert [d.reason for d in batch.dead_letters] == [batch.dead_letters[0].reason]  # only the decoder's
        assert conn.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM dead_letters)").fetchone() == (
            0,
            0,
        )
        assert land(conn, batch, source="kafka").accepted == 50  # the retry lands it all
