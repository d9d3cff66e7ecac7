"""Soak: a steady rate of events through the whole path for minutes, watching lag, latency and the worker's memory.

    python -m benchmarks.soak [--rate 10000] [--minutes 3] [--plot docs/soak.png]      (make bench-soak)

Starts its own embedded stack on free ports and the real worker as its own process (`python worker.py`, so its
RSS is its own), starts the Ingestion workflow, then produces CloudEvents at `--rate` per second for `--minutes`
(each stamped with the time it is sent) and, every `--every` seconds, samples the consumer group's lag (the
partitions' end offsets minus the group's committed offsets), the worker's RSS and how old the newest visible row
is. When the producer stops it waits for the backlog to drain (at most `--drain-s`), then reads every event's
latency, from its event time to the landing transaction that made it visible (`ingested_at - ts`), from Postgres.
If the producer cannot keep up with `--rate` on this machine, the rate it held is what it reports. Last line:
RESULT {...}; the plot (lag and RSS over time) is written with matplotlib.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from activities.ingestion import ensure_topic
from devstack import LocalStack
from llm_optimizer.events import to_cloudevent
from llm_optimizer.settings import Settings
from runtime.temporal import connect_client
from simulator.samples import sample_events
from starter.ingest import start_ingestion
from storage.db import migrate

PARTITIONS = 2


@dataclass
class Sample:
    t_s: float  # since the producer started
    produced: int
    lag: int
    rss_mb: float
    newest_age_s: float | None  # now - the newest visible event's time


@dataclass
class Soak:
    rate: int
    minutes: float
    samples: list[Sample] = field(default_factory=list)
    produced: int = 0
    produce_s: float = 0.0


def templates(count: int = 512) -> list[bytes]:
    """CloudEvents of varied services and models, with their id and time left as placeholders."""
    out = []
    for event in sample_events(count, seed=7):
        document = to_cloudevent(event)
        document["id"] = document["data"]["event_id"] = "@ID@"
        document["time"] = document["data"]["timestamp"] = "@TS@"
        out.append(json.dumps(document).encode())
    return out


async def produce(bootstrap: str, topic: str, soak: Soak, stop_at: float) -> None:
    """`soak.rate` messages a second until `stop_at` (monotonic), in ticks of 20 ms, each tick's messages stamped
    with its time. A tick sends at most 200 ms of messages: a producer that fell behind (the machine is busy) does
    not send a backlog of its own with one old time, which would count its delay as the path's; it holds a lower
    rate, and that rate is what is reported."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=10)
    await producer.start()
    pool = templates()
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    sent_by_schedule = 0  # messages the schedule asked for so far, sent or given up
    try:
        while (now := time.monotonic()) < stop_at:
            due = int((now - started) * soak.rate)
            count = min(due - sent_by_schedule, max(1, soak.rate // 5))
            sent_by_schedule = due
            if count > 0:
                stamp = datetime.now(UTC).isoformat().encode()
                for _ in range(count):
                    i = soak.produced
                    payload = pool[i % len(pool)].replace(b"@ID@", f"soak-{run}-{i}".encode()).replace(b"@TS@", stamp)
                    await producer.send(topic, payload, partition=i % PARTITIONS)
                    soak.produced += 1
            await asyncio.sleep(0.02)
        await producer.flush()
    finally:
        await producer.stop()
    soak.produce_s = time.monotonic() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def lag(consumer: AIOKafkaConsumer, topic: str) -> int:
    """End offsets minus the group's committed offsets: the messages not yet landed and committed. (Tansu's end
    offset of a partition can trail the committed one by a few messages once drained: a partition counts 0 then.)"""
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = await consumer.end_offsets(parts)
    behind = 0
    for tp in parts:
        committed = await consumer.committed(tp)
        behind += max(0, ends[tp] - (committed or 0))
    return behind


def landed(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def newest_age_s(url: str) -> float | None:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT extract(epoch FROM clock_timestamp() - max(ts)) FROM events").fetchone()[0]


async def sample(stack: LocalStack, settings: Settings, topic: str, soak: Soak, until, every: float, started: float):
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, group_id=settings.kafka.group_id, enable_auto_commit=False
    )
    await consumer.start()  # never subscribes: it reads the group's offsets without joining it
    try:
        while not until():
            age = await asyncio.to_thread(newest_age_s, stack.database_url)
            soak.samples.append(
                Sample(
                    t_s=time.monotonic() - started,
                    produced=soak.produced,
                    lag=await lag(consumer, topic),
                    rss_mb=rss_mb(stack.worker.pid()),
                    newest_age_s=None if age is None else float(age),
                )
            )
            s = soak.samples[-1]
            print(
                f"  t={s.t_s:6.1f}s produced={s.produced:>9,} lag={s.lag:>7,} rss={s.rss_mb:6.1f} MB "
                f"newest row {s.newest_age_s or 0:5.1f}s old",
                flush=True,
            )
            await asyncio.sleep(every)
    finally:
        await consumer.stop()


def latencies(url: str) -> tuple[int, float, float, float]:
    """(rows, p50, p99, max) of event time -> landing transaction, in seconds, over every landed event."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY d), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY d), max(d) "
            "FROM (SELECT extract(epoch FROM ingested_at - ts) AS d FROM events) x"
        ).fetchone()


def plot(soak: Soak, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s for s in soak.samples]
    fig, lag_axis = plt.subplots(figsize=(9, 4.5))
    lag_axis.plot(t, [s.lag for s in soak.samples], color="tab:blue", label="consumer lag (messages)")
    lag_axis.set_xlabel("seconds since the producer started")
    lag_axis.set_ylabel("consumer lag (messages)", color="tab:blue")
    lag_axis.axvline(soak.minutes * 60, color="grey", linestyle=":", label="producer stops")
    rss_axis = lag_axis.twinx()
    rss_axis.plot(t, [s.rss_mb for s in soak.samples], color="tab:red", label="worker RSS (MB)")
    rss_axis.set_ylabel("worker RSS (MB)", color="tab:red")
    rss_axis.set_ylim(0, max(s.rss_mb for s in soak.samples) * 1.2)
    lag_axis.set_ylim(0, max(max(s.lag for s in soak.samples) * 1.2, 1))
    held = soak.produced / soak.produce_s if soak.produce_s else 0
    lag_axis.set_title(f"make bench-soak: {held:,.0f} events/s for {soak.minutes:g} min (Kafka -> worker -> Postgres)")
    lines = lag_axis.get_legend_handles_labels()[0] + rss_axis.get_legend_handles_labels()[0]
    lag_axis.legend(lines, [line.get_label() for line in lines], loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def run(rate: int, minutes: float, every: float, drain_s: float, plot_path: Path | None) -> dict:
    soak = Soak(rate=rate, minutes=minutes)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        stack = LocalStack.on_free_ports(Path(tmp))
        stack.up()
        try:
            topic = f"soak-{uuid.uuid4().hex[:6]}"
            queue = "soak"
            settings = Settings(
                database={"url": stack.database_url},
                kafka={
                    "brokers": [stack.kafka_bootstrap],
                    "topic": topic,
                    "partitions": PARTITIONS,
                    "session_timeout_ms": 3000,  # Tansu joins a group in half of it
                    "heartbeat_interval_ms": 1000,
                },
                temporal={"address": stack.temporal_address, "task_queue": queue},
            )
            migrate(stack.database_url)
            await ensure_topic(settings, topic)
            stack.start_worker(
                {
                    "OPTIMIZER_DATABASE__URL": stack.database_url,
                    "OPTIMIZER_KAFKA__BROKERS": stack.kafka_bootstrap,
                    "OPTIMIZER_KAFKA__TOPIC": topic,
                    "OPTIMIZER_KAFKA__PARTITIONS": str(PARTITIONS),
                    "OPTIMIZER_KAFKA__SESSION_TIMEOUT_MS": "3000",
                    "OPTIMIZER_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
                    "OPTIMIZER_TEMPORAL__ADDRESS": stack.temporal_address,
                    "OPTIMIZER_TEMPORAL__TASK_QUEUE": queue,
                    "OPTIMIZER_METRICS__PORT": "0",
                    "OPTIMIZER_METRICS__TEMPORAL_PORT": "0",
                }
            )
            client = await connect_client(settings)
            await start_ingestion(client, settings, topic)
            await asyncio.sleep(5)  # the worker joins the group before the clock starts
            started = time.monotonic()
            stop_at = started + minutes * 60
            producing = asyncio.create_task(produce(stack.kafka_bootstrap, topic, soak, stop_at))
            drain_deadline = stop_at + drain_s

            def done() -> bool:
                if not producing.done():
                    return False
                return landed(stack.database_url) >= soak.produced or time.monotonic() > drain_deadline

            await sample(stack, settings, topic, soak, done, every, started)
            await producing
            rows, p50, p99, worst = await asyncio.to_thread(latencies, stack.database_url)
            rss = [s.rss_mb for s in soak.samples]
            warm = [s.rss_mb for s in soak.samples if s.t_s >= 30] or rss  # the first 30 s: imports, caches
        finally:
            stack.down()
    held = soak.produced / soak.produce_s
    print(f"produced {soak.produced:,} events in {soak.produce_s:.1f}s: {held:,.0f} events/s (asked {rate:,})")
    print(f"landed {rows:,}; event time -> landed p50 {p50:.2f}s, p99 {p99:.2f}s, max {worst:.2f}s")
    print(f"worker RSS {rss[0]:.0f} MB at the start, {warm[0]:.0f} MB after 30 s, {rss[-1]:.0f} MB at the end")
    if plot_path is not None:
        plot(soak, plot_path)
        print(f"plot: {plot_path}")
    return {
        "rate": round(held),
        "minutes": minutes,
        "lag_max": max(s.lag for s in soak.samples),
        "latency_p50_s": round(float(p50), 3),
        "latency_p99_s": round(float(p99), 3),
        "rss_growth_mb": round(max(warm) - warm[0], 1),
        "landed": rows,
        "produced": soak.produced,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--rate", type=int, default=10_000, help="events per second to produce")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to produce")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between samples")
    parser.add_argument("--drain-s", type=float, default=120.0, help="at most this long to wait for the backlog")
    parser.add_argument("--plot", type=Path, default=Path("docs/soak.png"), help="PNG to write ('' for none)")
    args = parser.parse_args()
    if args.rate <= 0 or args.minutes <= 0:
        parser.error(f"--rate {args.rate} and --minutes {args.minutes} must be positive")
    plot_path = args.plot if str(args.plot) else None
    result = asyncio.run(run(args.rate, args.minutes, args.every, args.drain_s, plot_path))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
