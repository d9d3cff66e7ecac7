"""Migrations: an empty database goes to head and back to base, head matches storage/schema.py, a table of
events with rows in it becomes a partitioned one (and back) without losing a row, and dead letters stored before
codes existed get the one their reason says."""

from __future__ import annotations

import orjson
import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from helpers.fixture_prices import fixture_book
from sqlalchemy import create_engine

from llm_optimizer.decoding import Decoder
from llm_optimizer.events import SENTINEL_ANOMALY_EVENT_TYPE, DeadLetterCode, to_cloudevent
from simulator.samples import sample_events
from storage import partitions_repo
from storage.db import downgrade, migrate, sqlalchemy_url
from storage.schema import metadata


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') "
            "AND NOT relispartition"
        ).fetchall()
    return {r[0] for r in rows}


def test_empty_database_upgrades_to_head_and_back_down(database_url):
    # The fixture already migrated to head.
    assert set(metadata.tables) <= tables(database_url)
    downgrade(database_url, "base")
    assert tables(database_url) <= {"alembic_version"}
    migrate(database_url)
    migrate(database_url)  # idempotent
    assert set(metadata.tables) <= tables(database_url)


def _not_a_partition(partitions: set[str]):
    # The partitions of `events` are made at run time (storage/partitions_repo.py), not declared in code.
    return lambda name, type_, parent: not (type_ == "table" and name in partitions)


def test_migrated_schema_matches_the_tables_in_code(database_url):
    with psycopg.connect(database_url) as conn:
        partitions = {p.name for p in partitions_repo.partitions(conn)}
    assert partitions_repo.DEFAULT in partitions and len(partitions) >= 4  # today, the days ahead, the default
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_server_default": True, "include_name": _not_a_partition(partitions)}
        )
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == [], diff


# 3,000 events a minute apart (about two days, ending now), every tenth with its text: a table in use.
_LOAD = """
INSERT INTO events (event_id, ts, service, model, provider, latency_ms, tokens_in, tokens_out, status, source)
SELECT 'm-' || i, now() - i * interval '1 minute', 'svc-' || (i % 3), 'gpt-4o-mini', 'openai', i, 10, 20, 'ok', 'test'
FROM generate_series(0, 2999) AS i;
INSERT INTO event_texts (event_id, request_text) SELECT 'm-' || i, 'q' || i FROM generate_series(0, 2999, 10) AS i;
"""
_CONTENT = "SELECT event_id, ts, service, latency_ms FROM events ORDER BY event_id"


def test_a_table_with_rows_becomes_partitioned_and_back_without_losing_one(database_url):
    downgrade(database_url, "0008")
    with psycopg.connect(database_url) as conn:
        conn.execute(_LOAD)
        conn.commit()
        before = conn.execute(_CONTENT).fetchall()
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        assert conn.execute(_CONTENT).fetchall() == before
        found = partitions_repo.partitions(conn)
        legacy = [p for p in found if p.start is None and not p.default]
        assert len(legacy) == 1 and legacy[0].end > max(r[1] for r in before)  # the old table is the first one
        assert conn.execute(f"SELECT count(*) FROM {legacy[0].name}").fetchone()[0] == 3000
        texts = conn.execute("SELECT count(*) FROM event_texts JOIN events USING (event_id, ts)").fetchone()[0]
        assert texts == 300  # each text has its event's time
        # A redelivered event is still refused by the key, in the converted partition too.
        conn.execute("INSERT INTO events SELECT * FROM events WHERE event_id = 'm-7' ON CONFLICT DO NOTHING")
        assert conn.execute("SELECT count(*) FROM events WHERE event_id = 'm-7'").fetchone()[0] == 1
        # A new event far from every partition lands in the default one.
        conn.execute(
            "INSERT INTO events (event_id, ts, service, model, provider, latency_ms, tokens_in, tokens_out, status, "
            "source) VALUES ('late', '2001-01-01', 's', 'm', 'p', 1, 1, 1, 'ok', 'test')"
        )
        conn.commit()
        after = conn.execute(_CONTENT).fetchall()
    downgrade(database_url, "0008")
    with psycopg.connect(database_url) as conn:
        assert conn.execute(_CONTENT).fetchall() == after
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'events'").fetchone()[0]
        assert kind == "r"
        assert conn.execute("SELECT count(*) FROM event_texts").fetchone()[0] == 300
    migrate(database_url)


def _old_dead_letters() -> list[tuple[str, str, str, str]]:
    """(source, position, reason, the code 0011 must give it): the decoder's own refusals, so that the backfill's
    patterns are held to the texts the code writes, then what only the text of older rows can say."""
    decoder = Decoder(fixture_book(), source="kafka", max_message_bytes=4096)
    event = next(sample_events(1))
    envelope = to_cloudevent(event)
    binary = [(f"ce_{k}", str(v).encode()) for k, v in envelope.items() if k != "data"]
    alert = {**envelope, "type": SENTINEL_ANOMALY_EVENT_TYPE, "data": {"severity": "?"}}
    messages = [
        (b"\xff\xfe", ()),
        (b"{}", [*binary, ("ce_subject", b"\xff")]),
        (b"{oops", ()),
        (orjson.dumps({**envelope, "data": "{oops"}), ()),
        (b"[1]", ()),
        (orjson.dumps({**envelope, "data": 7}), ()),
        (None, ()),
        (b"x" * 5000, ()),
        (b'{"latency_ms": -1}', ()),
        (orjson.dumps({**envelope, "specversion": "0.3"}), ()),
        (orjson.dumps({**envelope, "type": "com.example.x"}), ()),
        (orjson.dumps(alert), ()),
    ]
    batch = decoder.decode([(f"t/0/{i}", value, list(h)) for i, (value, h) in enumerate(messages)])
    assert len(batch.dead_letters) == len(messages)
    rows = [(d.source, d.position, d.reason, d.code.value) for d in batch.dead_letters]
    return [
        *rows,
        ("kafka", "t/0/98", "Postgres refused it: new row for relation violates check constraint", "db_refused"),
        ("otlp", "otlp/t/s", "status = 'error': expected an object", "unknown"),  # a span's, or the event model's
        ("file", "f:1", "something a version before wrote", "unknown"),
    ]


def test_dead_letters_get_the_code_their_reason_says_and_lose_it_going_back(database_url):
    downgrade(database_url, "0010")
    old = _old_dead_letters()
    with psycopg.connect(database_url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (source, position, reason, raw) VALUES (%s, %s, %s, '')",
                [row[:3] for row in old],
            )
        conn.commit()
    migrate(database_url)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT source, position, reason, code FROM dead_letters ORDER BY id").fetchall()
    assert stored == old
    assert {row[3] for row in old} == set(DeadLetterCode) - {"invalid_span"}  # every code a row can say
    downgrade(database_url, "0010")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT source, position, reason FROM dead_letters ORDER BY id").fetchall() == [
            row[:3] for row in old
        ]
    migrate(database_url)
