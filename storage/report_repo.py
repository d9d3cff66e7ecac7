"""What the demo report and summary read: rollouts with their stage verdicts, models per version, and cost and
quality over time. Rows come back as plain tuples; `starter/report.py` shapes them."""

from __future__ import annotations

from typing import Any

import psycopg


def models_by_version(conn: psycopg.Connection) -> dict[str, str]:
    """`service/version` -> the model that version serves."""
    rows = conn.execute("SELECT service || '/' || version, spec->>'model' FROM config_versions").fetchall()
    return {key: model for key, model in rows}


def live_versions(conn: psycopg.Connection) -> dict[str, str]:
    return {
        service: version
        for service, version in conn.execute("SELECT service, active_version FROM config_assignments").fetchall()
    }


def stage_verdicts(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """(rollout_id, stage, attempt, percent, verdict, judged_at epoch s, reasons), in the order they were judged."""
    return conn.execute(
        "SELECT rollout_id, stage, attempt, percent, verdict, extract(epoch FROM judged_at), reasons "
        "FROM rollout_verdicts ORDER BY judged_at, stage, attempt"
    ).fetchall()


def rollouts(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    """(service, rollout_id, from_version, to_version, state, reason, started epoch s, finished epoch s or None)."""
    return conn.execute(
        "SELECT service, rollout_id, from_version, to_version, state, reason, extract(epoch FROM started_at), "
        "extract(epoch FROM finished_at) FROM rollouts ORDER BY started_at"
    ).fetchall()


def cost_quality_series(conn: psycopg.Connection, service: str, bucket_s: int) -> list[tuple[Any, ...]]:
    """(bucket start epoch s, mean cost, mean quality or None, scored events) per `bucket_s` seconds of the
    service's events."""
    return conn.execute(
        "SELECT floor(extract(epoch FROM ts) / %(b)s) * %(b)s AS b, avg(cost_usd), avg(quality_score), "
        "count(quality_score) "
        "FROM events WHERE service = %(s)s GROUP BY b ORDER BY b",
        {"b": bucket_s, "s": service},
    ).fetchall()


def evaluation_summary(conn: psycopg.Connection, service: str) -> tuple[int, float | None, int]:
    """(events scored by an evaluator, their mean score, ok events still without a score) of a service."""
    row = conn.execute(
        "SELECT count(q.event_id), avg(q.overall_score), "
        "(SELECT count(*) FROM events WHERE service = %(s)s AND quality_score IS NULL AND status = 'ok') "
        "FROM quality_evaluations q WHERE q.service = %(s)s",
        {"s": service},
    ).fetchone()
    assert row is not None  # an aggregate always returns one row
    scored, mean, pending = row
    return int(scored), None if mean is None else float(mean), int(pending)
