"""The judge_stage activity on real Postgres compares the arms over the same moments: a service-wide error burst
during the last stage of a healthy canary does not roll it back (llm_optimizer/concurrent_control.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from helpers.fixture_prices import fixture_book
from helpers.servers import settings_for
from temporalio.testing import ActivityEnvironment

from activities import LoopActivitySet
from llm_optimizer.canary_judge import JudgeThresholds
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.events import LLMEvent
from llm_optimizer.payloads import JudgeRequest, RolloutRecord
from llm_optimizer.resolution import Assignment
from storage import audit_repo, configs_repo
from storage.events_repo import land_events

SERVICE = "burst"
SPAN_S = 1000


def _events(end: datetime, seed: int) -> list[LLMEvent]:
    """The promotion gate's window: v2 serves 5% for the first half, 50% for the second; from 700 s to 800 s a
    provider incident fails 20% of every request of the service, whichever version serves it."""
    rng = np.random.default_rng(seed)
    start = end - timedelta(seconds=SPAN_S)
    events = []
    for offset in np.sort(rng.uniform(0, SPAN_S, 5 * SPAN_S)):
        version = "v2" if rng.random() < (0.05 if offset < 500 else 0.5) else "v1"
        failed = rng.random() < (0.20 if 700 <= offset < 800 else 0.024)
        events.append(
            LLMEvent(
                event_id=str(uuid.UUID(int=int(rng.integers(2**63)))),
                timestamp=start + timedelta(seconds=float(offset)),
                service=SERVICE,
                endpoint="/v1/chat/completions",
                model="gpt-4o" if version == "v1" else "gpt-4o-mini",
                provider="openai",
                config_version=version,
                latency_ms=float(rng.lognormal(np.log(800), 0.3)),
                tokens_in=500,
                tokens_out=100,
                cost_usd=(0.002 if version == "v1" else 0.0006) * float(rng.uniform(0.8, 1.2)),
                status="error" if failed else "ok",
                error_type="server_error" if failed else None,
                quality_score=None if failed else float(rng.binomial(1, 0.9)),
            )
        )
    return events


async def test_a_service_wide_burst_in_the_last_stage_does_not_roll_back_a_healthy_canary(stack, database_url):
    end = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, SERVICE, ConfigSpec(model="gpt-4o-mini", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=SERVICE, active_version="v1"), updated_by="test")
        land_events(conn, _events(end, seed=4), source="test")
        audit_repo.record_rollout(
            conn,
            RolloutRecord(
                rollout_id="r1", service=SERVICE, from_version="v1", to_version="v2", strategy="canary", state="running"
            ),
        )
        conn.commit()
    loop = LoopActivitySet(settings_for(stack, database_url), fixture_book())
    try:
        verdict = await ActivityEnvironment().run(
            loop.rollout.judge_stage,
            JudgeRequest(
                rollout_id="r1",
                service=SERVICE,
                baseline_version="v1",
                canary_version="v2",
                window_start=end - timedelta(seconds=SPAN_S),
                window_end=end + timedelta(seconds=1),
                stage=2,
                attempt=0,
                percent=50,
                thresholds=JudgeThresholds(promotion_gate=True),
                data_wait_s=1,
            ),
        )
    finally:
        loop.close()
    # Before: "degraded", error_rate 0.033 -> 0.055 (p=0.0002): the pooled arms put the canary in the burst.
    assert verdict.verdict != "degraded", verdict.reasons
    errors = next(c for c in verdict.checks if c.metric == "error_rate")
    assert not errors.degraded and abs(errors.canary - errors.baseline) < 0.015
    assert verdict.comparison.startswith("baseline sampled to the canary's time profile")
    with psycopg.connect(database_url) as conn:
        recorded = conn.execute("SELECT verdict FROM rollout_verdicts WHERE rollout_id = 'r1'").fetchone()
    assert recorded == (verdict.verdict,)
