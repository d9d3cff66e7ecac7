"""The whole loop on a fleet it has never seen: ten made-up models no price source knows, priced only by the cost
their events report, with good candidates 3-5 points above the quality floor and traps just under it. The real
cycle, exploration and canary on the dev server and Postgres, with the replay's traffic."""

from __future__ import annotations

import asyncio
import threading

import psycopg
from helpers.servers import settings_for

from benchmarks.savings import replay
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Constraints
from llm_optimizer.payloads import CycleInput, CycleStatus
from llm_optimizer.settings import CanaryThresholds
from simulator.outcomes import OutcomeTable
from simulator.synthetic import synthetic_fleet
from starter.cycle import register_initial, start_cycle
from storage import configs_repo
from worker import serving

FLOOR = 0.9


async def test_a_fleet_of_unknown_models_settles_on_a_good_candidate_and_never_on_a_trap(
    stack, database_url, temporal_client
):
    fleet = synthetic_fleet(seed=5, services=1, models_per_service=10, prompts=2000, floor=FLOOR)
    table = OutcomeTable(fleet.frame)
    (service,) = table.services
    roles = fleet.roles(service)
    start = table.best_quality_model(service)
    settings = settings_for(stack, database_url)
    register_initial(settings, service, ConfigSpec(model=start.model, provider=start.provider))
    inp = CycleInput(
        service=service,
        candidate_models=[m.model for m in table.models(service) if m.model != start.model],
        time_scale=0.01,  # cycle every 9 s, exploration rounds of 3 s, canary stages of 3/6/9 s
        constraints=Constraints(quality_floor_ratio=FLOOR),
        canary=CanaryThresholds(min_samples=60, quality_decrease=1 - FLOOR),
    )
    done = threading.Event()
    async with serving(temporal_client, settings):
        handle = await start_cycle(temporal_client, settings.temporal.task_queue, inp)
        traffic = asyncio.create_task(asyncio.to_thread(replay, database_url, table, 400.0, 150.0, done))
        try:
            while not traffic.done():
                status = await handle.query("status", result_type=CycleStatus)
                if status.active_version not in (None, "v1") and status.rollout is None:
                    break  # something was promoted and nothing is in flight
                await asyncio.sleep(1)
        finally:
            done.set()
            await traffic
            status = await handle.query("status", result_type=CycleStatus)
            await handle.terminate("test over")
    with psycopg.connect(database_url) as conn:
        live = configs_repo.get_version(conn, service, configs_repo.get_assignment(conn, service).active_version)
        fates = conn.execute(
            "SELECT DISTINCT ON (arm->>'key') arm->>'key', arm->>'fate' FROM optimization_events, "
            "jsonb_array_elements(details->'arms') arm WHERE event_type = 'exploration_round' "
            "ORDER BY arm->>'key', ts DESC"
        ).fetchall()
        offered = conn.execute(
            "SELECT count(DISTINCT c->>'key') FROM decisions, jsonb_array_elements(candidates) c"
        ).fetchone()[0]
    assert roles[live.spec.model] == "good", (live.spec.model, roles, status)
    fate = dict(fates)
    assert all(fate[m] != "qualified" for m, role in roles.items() if role in ("trap", "bad") and m in fate), fate
    assert all(fate.get(m) == "below_floor" for m, role in roles.items() if role == "bad"), fate
    assert offered == 9  # every candidate had its fate recorded
