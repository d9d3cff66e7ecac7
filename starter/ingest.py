"""Start, inspect or stop the ingestion workflow of a topic.

python -m starter.ingest start [--topic llm-events]   # idempotent: an existing run is kept
python -m starter.ingest status [--topic llm-events]
python -m starter.ingest stop [--topic llm-events]
"""

from __future__ import annotations

import argparse
import asyncio
import json

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from llm_optimizer.payloads import IngestionInput, IngestionStatus
from llm_optimizer.settings import Settings, load_settings
from runtime.temporal import connect_client, exit_process


def ingestion_workflow_id(topic: str) -> str:
    return f"ingestion/{topic}"


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
        id=ingestion_workflow_id(topic),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Ingestion of the Kafka topic {topic} into Postgres (group {settings.kafka.group_id})",
        static_details=f"Consumes `{topic}` for ever, in runs of {settings.kafka.consume_run_s:g} s: decodes each "
        "message, lands valid events in `events` (invalid ones in `dead_letters`, with the reason), then commits the "
        "offsets. The `status` query says how many runs failed in a row and whether the lag keeps rising "
        "(docs/troubleshooting.md).",
    )


async def ingestion_status(client: Client, topic: str) -> IngestionStatus:
    handle = client.get_workflow_handle(ingestion_workflow_id(topic))
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
            await client.get_workflow_handle(ingestion_workflow_id(topic)).cancel()
            print(f"cancelled {ingestion_workflow_id(topic)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m starter.ingest", description=__doc__)
    parser.add_argument("command", choices=["start", "status", "stop"])
    parser.add_argument("--topic", help="default: kafka.topic and kafka.anomaly_topic")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    exit_process(main())
