"""Quality evaluations (`quality_evaluations` rows): the sampled events still waiting for an evaluator, and the
scores it gave them, which are also written into the events so that aggregates and the canary judge see them.

Idempotent: an event is scored once per evaluator (primary key), and an event's own score is never overwritten.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from llm_optimizer.evaluation import Evaluation

_PENDING = """
SELECT e.event_id, e.config_version, t.request_text, t.response_text, t.reference_text, e.user_feedback, e.attributes
FROM events e
LEFT JOIN event_texts t ON t.event_id = e.event_id AND t.ts = e.ts
WHERE e.service = %(service)s AND e.ts >= %(since)s AND e.quality_score IS NULL
  AND (hashtext(e.event_id) & 2147483647) %% 10000 < %(per_10k)s
  AND NOT EXISTS (SELECT 1 FROM quality_evaluations q WHERE q.event_id = e.event_id AND q.evaluator = %(evaluator)s)
ORDER BY e.ts
LIMIT %(limit)s
"""


class Pending(NamedTuple):
    """An event to score, with its texts (None when they were not kept) and its feedback."""

    event_id: str
    config_version: str | None
    request: str | None
    response: str | None
    reference: str | None
    user_feedback: float | None
    attributes: dict[str, Any] | None


class Scored(NamedTuple):
    """What an evaluator made of one event: a result, or why it could not score it."""

    event_id: str
    evaluator: str
    service: str
    config_version: str | None
    result: Evaluation | None = None  # None: not scored (skipped_reason says why)
    skipped_reason: str | None = None

    def row(self) -> tuple:
        r = self.result
        return (
            self.event_id,
            self.evaluator,
            self.service,
            self.config_version,
            r.overall if r else None,
            Jsonb(r.dimensions if r else {}),
            r.method if r else self.evaluator,
            r.confidence if r else None,
            r.cost_usd if r else 0.0,
            self.skipped_reason,
        )


def pending(
    conn: psycopg.Connection, service: str, evaluator: str, *, since: datetime, per_10k: int, limit: int
) -> list[Pending]:
    """Up to `limit` of the service's unscored events since `since`, oldest first, that `evaluator` has not seen:
    the sample of `per_10k` in 10,000 chosen by a hash of the event id, so that a retried round picks the same."""
    rows = conn.execute(
        _PENDING,
        {"service": service, "since": since, "per_10k": per_10k, "evaluator": evaluator, "limit": limit},
        prepare=False,
    ).fetchall()
    return [Pending(*row) for row in rows]


def record(conn: psycopg.Connection, scored: list[Scored]) -> None:
    """Each evaluation once (a retried round writes nothing twice), and each score into its event unless the event
    has one of its own."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO quality_evaluations (event_id, evaluator, service, config_version, overall_score, "
            "dimension_scores, evaluation_method, confidence, cost_usd, skipped_reason) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (event_id, evaluator) DO NOTHING",
            [s.row() for s in scored],
        )
        cur.executemany(
            "UPDATE events SET quality_score = %s WHERE event_id = %s AND quality_score IS NULL",
            [(s.result.overall, s.event_id) for s in scored if s.result is not None],
        )
