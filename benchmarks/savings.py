"""Savings on real outcomes: replay an outcomes table through the real loop and compare with staying put and with
the best single model in hindsight.

    python -m benchmarks.savings --outcomes PATH --quality-floor 0.95      (make bench-savings: the shared table)

Every service starts on its highest-quality model. The fleet simulator sends requests (prompts drawn from the
service's prompts, possibly more than once); each request is served by whatever config the registry assigns it and
carries that model's real quality, tokens and cost for the prompt. Events land in Postgres through the same landing
path as Kafka; the real OptimizationCycle and CanaryRollout workflows run on a real Temporal server, with intervals
and bake times shortened by --time-scale.

Figures, over the whole replay and over its last half (steady state):
- cost reduction against the starting config on the same prompts (1 - cost / cost of staying put),
- quality kept relative to the starting config on the same prompts,
- hindsight: per service, the cheapest single model whose quality is at least the floor times the starting model's
  (over all its prompts), applied to the same prompts. `share_of_hindsight` is null when hindsight saves nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from devstack import LocalStack
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Constraints
from llm_optimizer.payloads import CycleInput
from llm_optimizer.settings import CanaryThresholds, Settings
from runtime.temporal import connect_client, ensure_search_attributes
from simulator.fleet import Fleet
from simulator.outcomes import OutcomeTable
from starter.cycle import register_initial, start_cycle
from storage.config_client import ConfigClient
from storage.db import Database, migrate
from storage.events_repo import land_events

# Shipped with the repository (data/outcomes/README.md: provenance and licence).
DEFAULT_OUTCOMES = Path(__file__).resolve().parent.parent / "data" / "outcomes" / "dev_outcomes.parquet"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.savings", description=__doc__)
    parser.add_argument("--outcomes", type=Path, default=DEFAULT_OUTCOMES)
    parser.add_argument("--quality-floor", type=float, default=0.95)
    parser.add_argument("--minutes", type=float, default=4.0, help="wall-clock length of the replay")
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second per service")
    parser.add_argument("--time-scale", type=float, default=0.02, help="15 min cycle -> 18 s, stages 6/12/18 s")
    return parser.parse_args(argv)


def replay_figures(table: OutcomeTable, served: list[tuple[str, int, str, float, float]], floor: float) -> dict:
    """served: (service, prompt, model, cost, quality) in time order. Pure: the figures of the RESULT line."""
    start_model = {s: table.best_quality_model(s) for s in table.services}
    hindsight = {}
    for service in table.services:
        base = start_model[service]
        eligible = [m for m in table.models(service) if m.quality >= floor * base.quality]
        hindsight[service] = min(eligible, key=lambda m: m.cost_per_request).model

    def figures(rows) -> tuple[float, float, float]:
        cost = quality = stay_cost = stay_quality = hind_cost = 0.0
        for service, prompt, _model, c, q in rows:
            stay = table.outcome(service, prompt, start_model[service].model)
            cost, quality = cost + c, quality + q
            stay_cost, stay_quality = stay_cost + stay.cost_usd, stay_quality + stay.quality
            hind_cost += table.outcome(service, prompt, hindsight[service]).cost_usd
        reduction = 1 - cost / stay_cost if stay_cost else 0.0
        kept = quality / stay_quality if stay_quality else 1.0
        hind = 1 - hind_cost / stay_cost if stay_cost else 0.0
        return reduction, kept, hind

    whole = figures(served)
    steady = figures(served[len(served) // 2 :])
    share = steady[0] / steady[2] if steady[2] > 1e-9 else None
    return {
        "cost_reduction": round(whole[0], 4),
        "quality_ratio": round(whole[1], 4),
        "steady_cost_reduction": round(steady[0], 4),
        "steady_quality_ratio": round(steady[1], 4),
        "hindsight_cost_reduction": round(steady[2], 4),
        "share_of_hindsight": None if share is None else round(share, 4),
        "hindsight_models": hindsight,
    }


async def run(args: argparse.Namespace) -> dict:
    table = OutcomeTable.read(args.outcomes)
    with tempfile.TemporaryDirectory(prefix="bench-savings-") as tmp:
        stack = LocalStack.on_free_ports(Path(tmp))
        stack.up()
        try:
            settings = Settings(
                database={"url": stack.database_url},
                kafka={"brokers": [stack.kafka_bootstrap]},
                temporal={"address": stack.temporal_address, "task_queue": "savings"},
            )
            migrate(stack.database_url)
            client = await connect_client(settings)
            await ensure_search_attributes(client)
            # The worker runs in its own process, as in production; the replay has this one to itself.
            stack.start_worker(
                env={
                    "OPTIMIZER_DATABASE__URL": stack.database_url,
                    "OPTIMIZER_KAFKA__BROKERS": stack.kafka_bootstrap,
                    "OPTIMIZER_TEMPORAL__ADDRESS": stack.temporal_address,
                    "OPTIMIZER_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
                    "OPTIMIZER_METRICS__PORT": "0",
                    "OPTIMIZER_METRICS__TEMPORAL_PORT": "0",
                }
            )
            for service in table.services:
                best = table.best_quality_model(service)
                register_initial(settings, service, ConfigSpec(model=best.model, provider=best.provider))
                await start_cycle(
                    client,
                    settings.temporal.task_queue,
                    CycleInput(
                        service=service,
                        candidate_models=[m.model for m in table.models(service) if m.model != best.model],
                        time_scale=args.time_scale,
                        constraints=Constraints(quality_floor_ratio=args.quality_floor),
                        canary=CanaryThresholds(min_samples=100, quality_decrease=1 - args.quality_floor),
                    ),
                )
            served = replay(stack.database_url, table, args.rate, args.minutes * 60)
            rollouts = _rollouts(stack.database_url)
            fates = _fates(stack.database_url)
        finally:
            stack.down()
    result = replay_figures(table, served, args.quality_floor)
    result["rollouts"] = rollouts
    result["fates"] = fates
    result["requests"] = len(served)
    return result


def replay(
    database_url: str, table: OutcomeTable, rate: float, duration: float, stop: threading.Event | None = None
) -> list:
    """Send traffic for `duration` seconds (or until `stop` is set); returns what each request was served (in
    order)."""
    db = Database(Settings(database={"url": database_url}), name="savings-fleet")
    configs = ConfigClient(db, ttl_s=0.5)
    fleet = Fleet(table, configs, seed=11)
    served = []
    started = time.monotonic()
    sent = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while (t := time.monotonic() - started) < duration and not (stop is not None and stop.is_set()):
            due = int(rate * t) - sent
            events = [fleet.request(service, t) for _ in range(due) for service in table.services]
            if events:
                with conn.transaction():
                    land_events(conn, events, source="replay")
                served += [
                    (e.service, int(e.attributes["prompt"]), e.model, e.cost_usd or 0.0, e.quality_score or 0.0)
                    for e in events
                    if e.status == "ok"
                ]
            sent += due
            time.sleep(0.1)
    db.close()
    return served


def _fates(database_url: str) -> list[str]:
    """Every offered candidate's last word: its last exploration's fate, else its fate in the last decision."""
    with psycopg.connect(database_url) as conn:
        explored = conn.execute(
            "SELECT DISTINCT ON (service, arm->>'key') service, arm->>'key', arm->>'fate', arm->>'reason' "
            "FROM optimization_events, jsonb_array_elements(details->'arms') AS arm "
            "WHERE event_type = 'exploration_round' ORDER BY service, arm->>'key', ts DESC"
        ).fetchall()
        decided = conn.execute(
            "SELECT DISTINCT ON (service, c->>'key') service, c->>'key', c->>'fate', c->>'reason' "
            "FROM decisions, jsonb_array_elements(candidates) AS c ORDER BY service, c->>'key', made_at DESC"
        ).fetchall()
    last = {(s, k): (f"explored: {f}", r) for s, k, f, r in explored}
    for s, k, f, r in decided:
        last.setdefault((s, k), (f"decision: {f}", r))
    return [f"{s} {k}: {fate} ({reason})" for (s, k), (fate, reason) in sorted(last.items())]


def _rollouts(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT r.service, r.to_version, v.spec->>'model', r.state, r.reason FROM rollouts r "
            "LEFT JOIN config_versions v ON v.service = r.service AND v.version = r.to_version ORDER BY r.started_at"
        ).fetchall()
    return [f"{s} -> {v} ({model}): {state} ({reason})" for s, v, model, state, reason in rows]


def main(argv=None) -> None:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    for line in result.pop("rollouts"):
        print("rollout", line)
    for line in result.pop("fates"):
        print("candidate", line)
    print("requests served ok:", result.pop("requests"))
    print("hindsight models:", result.pop("hindsight_models"))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
