"""Reads for analysis: per-model profiles of a service over a window, and the samples a canary stage is judged on.

Aggregates are computed in Postgres (one pass over the (service, ts) index), so only summaries leave the database.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import psycopg

from llm_optimizer.assessment import Samples
from llm_optimizer.decision import Profile
from llm_optimizer.exploration import ArmStats, QualityEstimate
from llm_optimizer.tuning import OutputStats
from storage.db import one


def profiles(conn: psycopg.Connection, service: str, start: datetime, end: datetime) -> list[Profile]:
    """One profile per (model, provider, config version) seen in the window."""
    rows = conn.execute(
        """
        SELECT model, provider, config_version, count(*),
               avg((status <> 'ok')::int),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
               avg(quality_score), stddev_samp(quality_score), count(quality_score),
               avg(cost_usd), stddev_samp(cost_usd), avg(tokens_in), avg(tokens_out)
        FROM events
        WHERE service = %s AND ts >= %s AND ts < %s
        GROUP BY model, provider, config_version
        """,
        (service, start, end),
    ).fetchall()
    return [
        Profile(
            model=r[0],
            provider=r[1],
            config_version=r[2],
            requests=r[3],
            error_rate=float(r[4]),
            latency_p95_ms=float(r[5]),
            quality_mean=_float(r[6]),
            quality_sd=_float(r[7]),
            quality_n=r[8],
            cost_per_request=_float(r[9]),
            cost_sd=_float(r[10]),
            tokens_in_mean=_float(r[11]),
            tokens_out_mean=_float(r[12]),
        )
        for r in rows
    ]


def spent_since(conn: psycopg.Connection, service: str, start: datetime, end: datetime) -> float:
    """What `service` spent in [start, end): from the hourly rollups where they are complete, then the raw events
    (which expire after the retention, so a month's spend needs the rollups). `start` is whole hours."""
    row = one(
        conn.execute(
            """
        WITH mark AS (
            SELECT least(greatest(coalesce(
                (SELECT complete_until FROM rollup_watermarks WHERE rollup = 'rollups_1h'), %(start)s), %(start)s),
                %(end)s) AS t
        )
        SELECT (SELECT coalesce(sum(cost_sum_usd), 0) FROM rollups_1h, mark
                WHERE service = %(service)s AND bucket >= %(start)s AND bucket < mark.t)
             + (SELECT coalesce(sum(cost_usd), 0) FROM events, mark
                WHERE service = %(service)s AND ts >= mark.t AND ts < %(end)s)
        """,
            {"service": service, "start": start, "end": end},
        )
    )
    return float(row[0])


def _float(value) -> float | None:
    return None if value is None else float(value)


def samples(
    conn: psycopg.Connection, service: str, version: str, start: datetime, end: datetime, limit: int | None = 2000
) -> Samples:
    """The latest `limit` requests (None: all) of a config in [start, end), oldest first (an index-only scan)."""
    rows = conn.execute(
        "SELECT extract(epoch FROM ts), status = 'ok', latency_ms, quality_score, cost_usd FROM events "
        "WHERE service = %s AND ts >= %s AND ts < %s AND config_version = %s ORDER BY ts DESC LIMIT %s",
        (service, start, end, version, limit),
    ).fetchall()
    if not rows:
        return Samples.empty()
    ts, ok, latency, quality, cost = (np.array(column, dtype=float) for column in zip(*reversed(rows), strict=True))
    return Samples(ts=ts, ok=ok.astype(bool), latency_ms=latency, quality=quality, cost_usd=cost)


def output_stats(conn: psycopg.Connection, service: str, version: str, max_tokens: int) -> OutputStats:
    """The last hour of a config's successful answers: how many, how many stopped at `max_tokens`, their p99 length."""
    row = one(
        conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE tokens_out >= %s), "
            "coalesce(percentile_cont(0.99) WITHIN GROUP (ORDER BY tokens_out), 0) FROM events "
            "WHERE service = %s AND config_version = %s AND status = 'ok' AND ts >= now() - interval '1 hour'",
            (max_tokens, service, version),
        )
    )
    return OutputStats(requests=row[0], truncated=row[1], tokens_out_p99=float(row[2]))


def arm_stats(
    conn: psycopg.Connection, service: str, versions: list[str], start: datetime, end: datetime
) -> dict[str, ArmStats]:
    """Per config version in [start, end): requests, errors, quality (mean, sd, n of the scored), cost and tokens.
    One aggregate query: an exploration round reads summaries, never the requests."""
    rows = conn.execute(
        """
        SELECT config_version, count(*), count(*) FILTER (WHERE status <> 'ok'),
               avg(quality_score), stddev_samp(quality_score), count(quality_score),
               avg(cost_usd), avg(tokens_in), avg(tokens_out),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
        FROM events
        WHERE service = %s AND config_version = ANY(%s) AND ts >= %s AND ts < %s
        GROUP BY config_version
        """,
        (service, versions, start, end),
    ).fetchall()
    return {
        r[0]: ArmStats(
            key=r[0],
            version=r[0],
            requests=r[1],
            errors=r[2],
            quality=None if r[3] is None else QualityEstimate(mean=float(r[3]), sd=float(r[4] or 0.0), n=r[5]),
            cost_per_request=_float(r[6]),
            tokens_in_mean=_float(r[7]),
            tokens_out_mean=_float(r[8]),
            latency_p95_ms=_float(r[9]),
        )
        for r in rows
    }
