"""Start, inspect or stop the ingestion workflow of a topic.

    llm-optimizer ingest start [--topic llm-events]   # idempotent: an existing run is kept
    llm-optimizer ingest status [--topic llm-events]
    llm-optimizer ingest stop [--topic llm-events]

One Ingestion workflow per topic consumes it for ever into Postgres (docs/integrations.md); `status` says how many
runs failed in a row and whether the lag keeps rising (docs/troubleshooting.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from llm_optimizer.ids import ingestion_id
from llm_optimizer.payloads import IngestionInput, IngestionStatus
from llm_optimizer.settings import Settings, load_settings
from runtime.temporal import connect_client, exit_process


async def start_ingestion(client: Client, settings: Settings, topic: str | None = None) -> WorkflowHandle:
    topic = topic or settings.kafka.topic
    return await client.start_workflow(
        "Ingestion",
        IngestionInput(
            topic=topic,
            group_id=settings.kafka.group_id,
            run_s=settings.kafka.consume_run_s,
            consumers=settings.kafka.consumer_count,
        ),
        id=ingestion_id(topic),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Ingestion of the Kafka topic {topic} into Postgres (group {settings.kafka.group_id})",
        static_details=f"Consumes `{topic}` for ever, in runs of {settings.kafka.consume_run_s:g} s: decodes each "
        "message, lands valid events in `events` (invalid ones in `dead_letters`, with the reason), then commits the "
        "offsets. The `status` query says how many runs failed in a row and whether the lag keeps rising "
        "(docs/troubleshooting.md).",
    )


async def ingestion_status(client: Client, topic: str) -> IngestionStatus:
    handle = client.get_workflow_handle(ingestion_id(topic))
    return await handle.query("status", result_type=IngestionStatus)


async def main_async(args: argparse.Namespace) -> int:
    settings = load_settings()
    client = await connect_client(settings)
    topics = [args.topic] if args.topic else [settings.kafka.topic, settings.kafka.anomaly_topic]
    for topic in topics:
        if args.command == "start":
            handle = await start_ingestion(client, settings, topic)
            print(f"ingestion of {topic!r} running as workflow {handle.id}")
        elif args.command == "status":
            print(json.dumps((await ingestion_status(client, topic)).model_dump(mode="json"), indent=2))
        else:
            await client.get_workflow_handle(ingestion_id(topic)).cancel()
            print(f"cancelled {ingestion_id(topic)}")
    return 0


def build_parser(prog: str = "python -m starter.ingest") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["start", "status", "stop"], help="start, inspect or stop the ingestion")
    parser.add_argument("--topic", help="default: kafka.topic and kafka.anomaly_topic")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m starter.ingest") -> int:
    return asyncio.run(main_async(build_parser(prog).parse_args(argv)))


if __name__ == "__main__":
    exit_process(main())
