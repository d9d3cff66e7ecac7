"""Backfill from files: same validation as Kafka, streamed in batches, and a re-run adds nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import psycopg
import pytest
from helpers.servers import settings_for

from llm_optimizer.events import to_cloudevent
from simulator.samples import sample_events
from starter.backfill import backfill

EVENTS = list(sample_events(250, seed=7))


def rows(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql).fetchall()


def write_jsonl(path):
    lines = [e.model_dump_json() for e in EVENTS[:100]]
    lines += [json.dumps(to_cloudevent(e)) for e in EVENTS[100:]]
    lines.insert(10, "{broken json")
    lines.insert(20, json.dumps({**json.loads(EVENTS[0].model_dump_json()), "event_id": "x", "status": "maybe"}))
    path.write_text("\n".join(lines) + "\n")


def test_jsonl_backfill_lands_good_lines_dead_letters_bad_ones_and_rerun_adds_nothing(stack, database_url, tmp_path):
    path = tmp_path / "events.jsonl"
    write_jsonl(path)
    settings = settings_for(stack, database_url)
    first = backfill(path, settings, batch_size=64)
    assert (first.accepted, first.duplicates, first.dead_lettered) == (250, 0, 2)
    assert first.batches == 4  # 252 lines in batches of 64: streamed, not loaded whole
    dead = rows(database_url, "SELECT position, code, reason FROM dead_letters ORDER BY position")
    assert dead[0][:2] == ("events.jsonl:11", "not_json") and "not valid JSON" in dead[0][2]
    assert dead[1][:2] == ("events.jsonl:21", "invalid_event") and "status = 'maybe'" in dead[1][2]

    again = backfill(path, settings, batch_size=64)
    assert (again.accepted, again.duplicates) == (0, 250)
    assert rows(database_url, "SELECT count(*) FROM events") == [(250,)]
    assert rows(database_url, "SELECT count(*) FROM dead_letters") == [(2,)]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_backfill(stack, database_url, tmp_path, fmt):
    records = [json.loads(e.model_dump_json(exclude={"attributes"})) for e in EVENTS]
    records[5]["latency_ms"] = -1.0  # a bad row
    frame = pl.DataFrame(records)
    path = tmp_path / f"events.{fmt}"
    frame.write_csv(path) if fmt == "csv" else frame.write_parquet(path)
    settings = settings_for(stack, database_url)
    totals = backfill(path, settings, batch_size=100)
    assert (totals.accepted, totals.dead_lettered) == (249, 1)
    [(position, reason)] = rows(database_url, "SELECT position, reason FROM dead_letters")
    assert position == f"events.{fmt}:row 6" and "latency_ms = " in reason and "greater than or equal to 0" in reason
    stored = dict(rows(database_url, "SELECT event_id, latency_ms FROM events"))
    assert stored[EVENTS[0].event_id] == pytest.approx(EVENTS[0].latency_ms)


def test_backfill_command_prints_a_summary(stack, database_url, tmp_path, repo_root):
    path = tmp_path / "events.jsonl"
    write_jsonl(path)
    result = subprocess.run(
        [sys.executable, "-m", "starter.backfill", str(path)],
        cwd=repo_root,
        env={"PATH": "/usr/bin:/bin", "OPTIMIZER_DATABASE__URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "250 new events, 0 already present, 2 dead-lettered" in result.stdout
    assert "100.0%" in result.stderr
