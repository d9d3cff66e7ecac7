"""`llm-optimizer demo` (`make demo`): the whole loop on the embedded stack, replaying real LLM outcomes, in a few
minutes.

Starts Postgres, Temporal and Kafka, the worker, the ingestion and one OptimizationCycle per service of the
outcomes table; every service starts on its highest-quality model. The fleet simulator then sends one CloudEvent
per request to Kafka, each request served by whatever config the registry assigns it, carrying that model's real
quality, tokens and cost for the prompt. Two incidents are scheduled. Live progress is printed; at the end the
report compares cost and quality before and after, lists the rollouts with their reasons, and is written to
reports/demo.html. The stack keeps running for the Temporal UI; `llm-optimizer stack down` (`make down`) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from devstack import LocalStack
from llm_optimizer.configs import ConfigSpec
from llm_optimizer.decision import Constraints
from llm_optimizer.events import to_cloudevent
from llm_optimizer.ids import canary_id, cycle_id
from llm_optimizer.payloads import CycleInput, CycleStatus, QualityReport
from llm_optimizer.settings import CanaryThresholds, load_settings
from runtime.temporal import connect_client, ensure_search_attributes, exit_process
from simulator.fleet import Fleet, Incident
from simulator.outcomes import OutcomeTable
from starter import evaluation, periodic, report
from starter.cycle import register_initial, start_cycle
from starter.ingest import start_ingestion
from storage import configs_repo, report_repo
from storage.config_client import ConfigClient
from storage.db import Database, connect, migrate

# Shipped with the repository (data/outcomes/README.md: provenance and licence).
DEFAULT_OUTCOMES = Path(__file__).resolve().parent.parent / "data" / "outcomes" / "dev_outcomes.parquet"
TIME_SCALE = 0.03  # 15 min cycle -> 27 s; canary stages bake 9 s, 18 s, 27 s
# GSM8K's events carry the answer and the reference, not a score: the reference evaluator grades the final number.
EVALUATED_SERVICE = "gsm8k"
DEMO_EVALUATION = {
    "store_text": True,
    "interval_s": 5,
    "services": {
        EVALUATED_SERVICE: {
            "evaluator": "reference",
            "options": {"metrics": ["exact_match"], "extract": r"-?\d+(?:\.\d+)?"},
        }
    },
}


def build_parser(prog: str = "python -m starter.demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n    llm-optimizer demo --minutes 2 --quality-floor 0.9   # a shorter run, a lower floor",
    )
    parser.add_argument(
        "--outcomes", type=Path, default=DEFAULT_OUTCOMES, help="the outcomes table replayed (default: the shipped one)"
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the fleet sends traffic")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second per service")
    parser.add_argument("--quality-floor", type=float, default=0.8, help="of each service's starting quality")
    parser.add_argument("--report", type=Path, default=Path("reports/demo.html"), help="where the page is written")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete the local stack's data first (as `make clean`): a second demo on the same data would go on "
        "from where the first ended, so without it the demo stops and says so",
    )
    return parser


def parse_args(argv: list[str] | None, prog: str = "python -m starter.demo") -> argparse.Namespace:
    return build_parser(prog).parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    settings = load_settings(evaluation=DEMO_EVALUATION)
    table = OutcomeTable.read(args.outcomes)
    stack = LocalStack(settings.stack)
    if args.fresh:
        for path in stack.wipe():
            print(f"removed the earlier data: {path}", flush=True)
    print("starting the embedded stack (Postgres, Temporal, Kafka) ...", flush=True)
    stack.up()
    migrate(settings.database_url)
    if earlier := _earlier_run(settings.database_url, table.services):
        print(
            f"error: the local stack holds an earlier run ({', '.join(earlier)} already registered): the demo would go "
            "on from where it ended. Run `make clean` first (stops the stack, deletes its data), or "
            "`llm-optimizer demo --fresh`.",
            file=sys.stderr,
        )
        return 1
    stack.worker.down()  # a worker left by an earlier run would not have the demo's evaluation settings
    stack.start_worker(env=_evaluation_env())
    client = await connect_client(settings)
    await ensure_search_attributes(client)
    await start_ingestion(client, settings)
    await start_ingestion(client, settings, settings.kafka.anomaly_topic)
    if EVALUATED_SERVICE in table.services:
        await periodic.create_schedule(client, settings, evaluation.JOB)
        print(f"  {EVALUATED_SERVICE}: events carry texts, no score; the reference evaluator scores them", flush=True)

    for service in table.services:
        best = table.best_quality_model(service)
        register_initial(settings, service, ConfigSpec(model=best.model, provider=best.provider))
        candidates = [m.model for m in table.models(service) if m.model != best.model]
        cycle = CycleInput(
            service=service,
            candidate_models=candidates,
            time_scale=TIME_SCALE,
            constraints=Constraints(quality_floor_ratio=args.quality_floor),
            # The floor is the limit here: a canary may lose what the floor allows, judged on 50 requests.
            canary=CanaryThresholds(min_samples=50, quality_decrease=round(1 - args.quality_floor, 6)),
        )
        await start_cycle(client, settings.temporal.task_queue, cycle)
        print(f"  {service}: starts on {best.model} (quality {best.quality:.3f}); candidates {candidates}", flush=True)

    duration = args.minutes * 60
    incidents = _incidents(table, duration)
    for incident in incidents:
        print(
            f"  incident scheduled: {incident.describe()}, from {incident.start_s:.0f} s to {incident.end_s:.0f} s",
            flush=True,
        )
    started = time.monotonic()
    await _send_traffic(settings, table, incidents, args.rate, duration, client)
    print(f"\ntraffic done after {time.monotonic() - started:.0f}s; writing the report ...", flush=True)
    await asyncio.sleep(5)  # the last batches land
    if EVALUATED_SERVICE in table.services:  # score what the rounds have not reached yet, so the report sees it
        await client.execute_workflow(
            "QualityEvaluation",
            evaluation.evaluation_round(settings),
            id=f"quality-evaluation/demo-final-{int(time.time())}",
            task_queue=settings.temporal.task_queue,
            static_summary="Quality evaluation: the last round of the demo, before its report",
            result_type=list[QualityReport],
        )
    notes = [_note(incident) for incident in incidents]
    # The same goal for every service.
    summary = report.build(settings.database_url, table, args.report, report.Goal.of(cycle), notes)
    print(summary)
    print(_evaluation_summary(settings.database_url))
    print(
        f"\nTemporal UI: {stack.temporal_ui_url}  (workflows {cycle_id('<service>')}, "
        f"{canary_id('<service>', '<version>')})"
    )
    print(f"report: {args.report.resolve()}")
    metrics = settings.metrics
    if metrics.port:
        print(
            f"metrics: http://{metrics.host}:{metrics.port}/metrics (product), "
            f"http://{metrics.host}:{metrics.temporal_port}/metrics (Temporal SDK)"
        )
    print("the stack keeps running; `make down` stops it")
    return 0


def _earlier_run(database_url: str, services: list[str]) -> list[str]:
    """The demo's services that already have a live config in this database: an earlier run's."""
    with connect(database_url) as conn:
        return [s for s in services if configs_repo.get_assignment(conn, s) is not None]


def _evaluation_env() -> dict[str, str]:
    return {
        "OPTIMIZER_EVALUATION__STORE_TEXT": "true",
        "OPTIMIZER_EVALUATION__INTERVAL_S": str(DEMO_EVALUATION["interval_s"]),
        "OPTIMIZER_EVALUATION__SERVICES": json.dumps(DEMO_EVALUATION["services"]),
    }


def _evaluation_summary(database_url: str) -> str:
    with connect(database_url) as conn:
        scored, mean, pending = report_repo.evaluation_summary(conn, EVALUATED_SERVICE)
    return (
        f"\nquality evaluation: {scored:,} {EVALUATED_SERVICE} events scored by the reference evaluator "
        f"(mean {mean or 0:.3f}); {pending:,} still waiting for a round"
    )


def _incidents(table: OutcomeTable, duration: float) -> list[Incident]:
    """A latency spike at the provider of the first service's starting model, and an error burst elsewhere."""
    services = table.services
    provider = table.best_quality_model(services[0]).provider
    burst_service = services[-1]
    return [
        Incident("latency_spike", duration * 0.55, duration * 0.7, target=provider, factor=2.5),
        Incident("error_burst", duration * 0.75, duration * 0.8, target=burst_service, factor=0.2),
    ]


def _note(incident: Incident) -> report.IncidentNote:
    """The incident for the report: a service by name, or a provider or model (which services it hit depends on
    what served them when it started)."""
    text, when = incident.describe(), (incident.start_s, incident.end_s)
    if incident.kind in ("error_burst", "budget_overrun"):
        return report.IncidentNote(text, *when, services=(incident.target,))
    if incident.kind == "latency_spike":
        return report.IncidentNote(text, *when, provider=incident.target)
    return report.IncidentNote(text, *when, model=incident.target)


async def _send_traffic(settings, table, incidents, rate, duration, client) -> None:
    db = Database(settings, name="demo-fleet")  # the fleet's config resolution: one pool for the traffic
    configs = ConfigClient(db, ttl_s=1.0)
    fleet = Fleet(table, configs, seed=1, incidents=incidents, text_services=frozenset({EVALUATED_SERVICE}))
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_brokers, enable_idempotence=settings.kafka.enable_idempotence, linger_ms=20
    )
    await producer.start()
    started = time.monotonic()
    next_report, sent = 0.0, 0
    try:
        while (t := time.monotonic() - started) < duration:
            due = int(rate * t) - sent  # catch up after a slow tick, so the rate holds on a busy machine
            for _ in range(due):
                for service in table.services:
                    event = fleet.request(service, t)
                    await producer.send(settings.kafka.topic, json.dumps(to_cloudevent(event, "demo-fleet")).encode())
            sent += due
            if t >= next_report:
                await _progress(client, table, incidents, t, sent / max(t, 1e-9))
                next_report = t + 10
            await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
        db.close()


async def _progress(client, table: OutcomeTable, incidents: list[Incident], t: float, rate: float) -> None:
    now = [i.describe() for i in incidents if i.active(t)]
    lines = [f"[{t:5.0f}s] {rate:,.0f} requests/s per service" + (f"; incident now: {'; '.join(now)}" if now else "")]
    for service in table.services:
        status = await client.get_workflow_handle(cycle_id(service)).query("status", result_type=CycleStatus)
        decision = status.last_decision.action.value if status.last_decision else "-"
        line = (
            f"  {service:<12} {status.state.value:<11} live {status.active_version or '-':<4}"
            f" cycles done {status.cycles_done:<3} last decision {decision:<10}"
        )
        if status.rollout:
            line += f" canary {status.rollout.to_version} at {status.rollout.percent:g}%"
        elif finished := [r for r in status.rollouts if r.outcome]:
            last = finished[-1]
            line += f" last {last.kind} {last.target}: {last.outcome.split(':')[0]}"
        if status.alerts:
            line += f" ALERT {status.alerts[-1][:60]}"
        lines.append(line)
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None, prog: str = "python -m starter.demo") -> int:
    args = parse_args(argv, prog)
    if not args.outcomes.exists():
        print(f"error: outcomes table {args.outcomes} not found (pass --outcomes PATH)", file=sys.stderr)
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    exit_process(main())
