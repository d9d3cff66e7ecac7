"""The partitions of `events`: made ahead, given the rows the default partition held for them, dropped whole once
past the retention and every rollup; landing stays exactly once per event across them; the loop's reads stay
index-only scans of the partitions their window touches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from activities.maintenance import MaintenanceActivities
from llm_optimizer.decoding import DecodedBatch
from llm_optimizer.evaluation.texts import TextPolicy
from llm_optimizer.events import LLMEvent
from llm_optimizer.payloads import MaintenanceRequest
from simulator.samples import sample_events
from storage import analysis_repo, partitions_repo
from storage.events_repo import land, land_events

# A fixed day long past, which no partition the migration made covers: every test here sets up its own.
BASE = datetime(2026, 1, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


def spread(count: int, start: datetime, every: timedelta, seed: int) -> list[LLMEvent]:
    events = sample_events(count, start=start, seed=seed)
    return [e.model_copy(update={"timestamp": start + i * every, "cost_usd": 0.001}) for i, e in enumerate(events)]


def names(conn: psycopg.Connection) -> set[str]:
    return {p.name for p in partitions_repo.partitions(conn)}


def count(conn: psycopg.Connection, table: str = "events") -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_new_partitions_take_over_the_rows_the_default_one_held(db):
    events = spread(240, BASE, timedelta(minutes=1), seed=1)  # 4 hours, in the default partition
    with_text = [e.model_copy(update={"request_text": "hi"}) for e in events[::60]]
    land(db, DecodedBatch(events=[*events[:-4], *with_text]), source="test", texts=TextPolicy(store=True))
    db.commit()
    assert count(db, partitions_repo.DEFAULT) == 236

    made = partitions_repo.ensure(db, BASE, BASE + 3 * HOUR, "hour")
    db.commit()
    assert made == [partitions_repo.name_of(BASE + i * HOUR) for i in range(3)]
    assert [count(db, name) for name in made] == [60, 60, 60]
    assert count(db, partitions_repo.DEFAULT) == 56  # the fourth hour has no partition yet
    assert count(db) == 236 and count(db, "event_texts") == 4
    assert partitions_repo.ensure(db, BASE, BASE + 3 * HOUR, "hour") == []  # idempotent

    # Daily now: the rest of that day gets one partition, beside the hourly ones.
    made = partitions_repo.ensure(db, BASE, BASE + HOUR, "day")
    db.commit()
    assert made == [partitions_repo.name_of(BASE + 3 * HOUR)]
    assert count(db, partitions_repo.DEFAULT) == 0 and count(db) == 236
    bounds = {p.name: (p.start, p.end) for p in partitions_repo.partitions(db)}
    assert bounds[made[0]] == (BASE + 3 * HOUR, BASE + timedelta(days=1))


def test_an_unknown_partition_unit_is_refused_by_name():
    with pytest.raises(ValueError, match=r"database\.event_partition = 'week'"):
        partitions_repo.ensure(None, BASE, BASE, "week")


def test_redeliveries_and_in_batch_duplicates_land_once_across_partitions(db):
    partitions_repo.ensure(db, BASE, BASE + 2 * HOUR, "hour")
    # Three hours: two partitions and the default one.
    events = spread(90, BASE + timedelta(minutes=30), timedelta(minutes=2), seed=2)
    doubled = [*events, *events[::7]]  # duplicates inside the batch, in every partition
    first = land_events(db, doubled, source="test")
    assert (first.accepted, first.duplicates) == (90, len(events[::7]))
    again = land_events(db, list(reversed(doubled)), source="test")  # redelivered, in another order
    assert (again.accepted, again.duplicates) == (0, len(doubled))
    db.commit()
    rows = db.execute("SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall()
    assert sum(n for _, n in rows) == 90 and len(rows) == 3
    assert db.execute("SELECT count(DISTINCT event_id) FROM events").fetchone()[0] == 90

    # Identity is (event_id, ts): the same id at another time is another event (docs/deployment.md).
    moved = events[0].model_copy(update={"timestamp": events[0].timestamp + HOUR})
    assert land_events(db, [moved], source="test").accepted == 1


@pytest.fixture
def hourly(stack, database_url) -> MaintenanceActivities:
    settings = settings_for(stack, database_url, database={"event_partition": "hour", "event_partitions_ahead": 2})
    return LoopActivitySet(settings, fixture_book()).maintenance


async def test_expiry_drops_whole_partitions_once_past_the_retention_and_rolled_up(hourly, database_url):
    now = BASE + 6 * HOUR + timedelta(minutes=20)
    with psycopg.connect(database_url) as conn:
        partitions_repo.ensure(conn, BASE, now, "hour")
        events = spread(360, BASE, timedelta(minutes=1), seed=3)  # the first six hours, one a minute
        texts = [e.model_copy(update={"request_text": "q"}) for e in events[::30]]
        land(conn, DecodedBatch(events=[*events, *texts]), source="test", texts=TextPolicy(store=True))
        conn.execute("ANALYZE events")
        conn.commit()
        before = names(conn)

    env = ActivityEnvironment()
    # Rolled up to now - 60 s: the hourly rollup is complete up to 06:00, the minute one to 06:19.
    report = await env.run(hourly.maintain_storage, MaintenanceRequest(now=now, retention_days=2.5 / 24))
    # The cutoff is 03:50: the partitions of hours 0, 1 and 2 end before it and go whole; hour 3 stays whole.
    assert report.expired_events == 180
    with psycopg.connect(database_url) as conn:
        gone = {partitions_repo.name_of(BASE + i * HOUR) for i in range(3)}
        assert names(conn) == (before - gone) | {partitions_repo.name_of(BASE + i * HOUR) for i in (7, 8)}
        assert conn.execute("SELECT min(ts) FROM events").fetchone()[0] == BASE + 3 * HOUR
        assert count(conn) == 180 and count(conn, "event_texts") == 6
        assert conn.execute("SELECT sum(requests) FROM rollups_1m").fetchone()[0] == 360  # nothing lost
    again = await env.run(hourly.maintain_storage, MaintenanceRequest(now=now, retention_days=2.5 / 24))
    assert again.expired_events == 0


async def test_nothing_expires_before_every_rollup_covers_it(hourly, database_url):
    with psycopg.connect(database_url) as conn:
        partitions_repo.ensure(conn, BASE, BASE + 3 * HOUR, "hour")
        land_events(conn, spread(120, BASE, timedelta(minutes=1), seed=4), source="test")
        conn.execute(
            "INSERT INTO rollup_watermarks VALUES ('rollups_1m', %s), ('rollups_1h', %s)", (BASE, BASE + 3 * HOUR)
        )
        conn.commit()
        assert partitions_repo.drop_before(conn, BASE) == 0  # what the minute rollup's watermark allows
        conn.commit()
        assert count(conn) == 120


def _plan(conn: psycopg.Connection, sql: str, params: tuple) -> str:
    rows = conn.execute(f"EXPLAIN (FORMAT TEXT) {sql}", params).fetchall()
    return "\n".join(r[0] for r in rows)


def test_the_loops_reads_are_index_only_scans_of_the_partitions_in_their_window(db):
    partitions_repo.ensure(db, BASE, BASE + 4 * HOUR, "hour")
    land_events(db, spread(4000, BASE, timedelta(seconds=3), seed=5), source="test")
    db.commit()
    db.autocommit = True
    db.execute("VACUUM ANALYZE events")  # all-visible pages, as autovacuum keeps them (partitions_repo.STORAGE)
    window = (BASE + HOUR + timedelta(minutes=10), BASE + HOUR + timedelta(minutes=50))
    profiles = _plan(
        db,
        "SELECT model, provider, config_version, count(*), avg(cost_usd), avg(tokens_in) FROM events "
        "WHERE service = %s AND ts >= %s AND ts < %s GROUP BY 1, 2, 3",
        ("chat", *window),
    )
    samples = _plan(
        db,
        "SELECT ts, status = 'ok', latency_ms, quality_score, cost_usd FROM events "
        "WHERE service = %s AND ts >= %s AND ts < %s AND config_version = %s ORDER BY ts DESC LIMIT 2000",
        ("chat", *window, "v1"),
    )
    for plan in (profiles, samples):
        assert "Index Only Scan" in plan and "Seq Scan" not in plan, plan
        assert partitions_repo.name_of(BASE + HOUR) in plan  # pruned to the one partition of the window
        assert partitions_repo.name_of(BASE) not in plan and partitions_repo.DEFAULT not in plan, plan
    assert analysis_repo.profiles(db, "chat", *window)  # and the real query reads them
