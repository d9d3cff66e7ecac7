"""Recovery from faults: how soon ingestion resumes after Postgres comes back and after a worker restart.

    python -m benchmarks.faults [--tries 5] [--outage-s 30] [--faults postgres,kill,term]      (make bench-faults)

Starts its own embedded stack on free ports and the real worker as its own process (`python worker.py`), with the
default Kafka settings but `kafka.consume_run_s` (`--run-s`, 20 s): a topic of `kafka.partitions` partitions and
`kafka.consumers` unset, so the Ingestion runs one consumer per partition in one group, with the default session
and join timeouts. It starts the Ingestion workflow and produces CloudEvents at a steady `--rate` for the whole run,
round robin over the partitions, each stamped with the time it is sent. Once ingestion is steady it runs `--tries`
of each fault, one after the other:

- postgres: `stack.postgres.down()`, `--outage-s` seconds, `up()`. T0 is the first moment a new connection to
  Postgres succeeds (tried every 0.1 s while `up()` runs).
- kill: SIGKILL the worker (a crash) and start a new one at once. T0 is the new worker's start.
- term: SIGTERM the worker (a graceful restart: it finishes or cancels its activities within its 10 s shutdown
  timeout), then start a new one once it has exited. T0 is the new worker's start.

T1 is the first moment (polled every 0.1 s) an event produced after the fault took hold (Postgres stopped, the old
worker gone) is visible in `events`: nothing produced then can have landed before the recovery. "All partitions"
is when every partition's watermark (`ingestion_watermarks`) has passed that moment too: every consumer is back,
not only the first. Each try reports T1 - T0, T1 - the fault itself (the stop, the signal), and what the worker
logged meanwhile: aiokafka's group (re)joins ("(Re-)joining group", "Joined group", "Successfully synced group"),
the activity runs that failed, with their error types, and, after T0, when a new worker logged "worker serving" and
when the group first synced; and the load average (the machine may be shared).

Tries do not overlap: after each, ingestion must be steady again before the next, i.e. every partition's watermark
within `--steady-lag-s` of now and no consumer in back-off (the Ingestion's `status`: `consecutive_failures` 0,
each consumer's last run succeeded) for `--settle-s` in a row. Every wait is bounded: a try that does not recover
within `--recover-timeout-s` of T0, or does not settle within `--settle-timeout-s` after that, is reported as such,
and the worker is restarted (SIGTERM) to bring ingestion back before the next try; if even that does not settle,
the remaining tries are skipped. The worker's log is copied to `--worker-log`. Last line: RESULT {...}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiokafka import AIOKafkaProducer
from temporalio.client import Client

from activities.ingestion import ensure_topic
from benchmarks.soak import templates
from devstack import LocalStack
from devstack.processes import pid_alive
from llm_optimizer.settings import Settings
from runtime.temporal import connect_client
from starter.ingest import ingestion_status, start_ingestion
from storage.db import migrate

FAULTS = ("postgres", "kill", "term")
POLL_S = 0.1
TERM_WAIT_S = 60.0  # the worker's graceful shutdown takes 10 s; past this long it is killed
# What the worker's log says during a try: aiokafka's group coordinator (INFO) and the Temporal SDK's failed runs.
LOG_COUNTS = {
    "rejoins": "(Re-)joining group",
    "joined": "Joined group",
    "synced": "Successfully synced group",
    "failed_runs": "Completing activity as failed",
}
FAILED_RUN = "temporalio.exceptions.ApplicationError: "  # the failed run's error, as the SDK logs it


@dataclass
class Trial:
    fault: str
    index: int
    t0: float = 0.0  # time.time()
    t0_after_s: float = 0.0  # T0 - the fault
    resume_s: float | None = None  # T1 - T0, None: not within --recover-timeout-s
    all_s: float | None = None  # every partition past the fault - T0
    from_fault_s: float | None = None  # T1 - the fault (Postgres stopping, the signal)
    settled: bool = False
    restored: bool = False  # the worker was restarted afterwards to bring ingestion back
    log: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # the failed runs' error types
    serving_s: float | None = None  # the new worker's "worker serving" line - T0 (imports, migrations, Temporal)
    synced_s: float | None = None  # the first "Successfully synced group" line after T0 - T0
    load: float = 0.0  # the 1-minute load average at the end of the try
    notes: list[str] = field(default_factory=list)

    def line(self, tries: int, partitions: int) -> str:
        head = f"  {self.fault:8} {self.index + 1}/{tries}:"
        if self.resume_s is None:
            text = f"{head} NOT RECOVERED (T0 {self.t0_after_s:.1f}s after the fault)"
        else:
            every = "never" if self.all_s is None else f"{self.all_s:.1f}s"
            text = (
                f"{head} resumed {self.resume_s:5.1f}s after T0, all {partitions} partitions {every} "
                f"({self.from_fault_s:.1f}s after the fault, T0 {self.t0_after_s:.1f}s after it)"
            )
        counts = ", ".join(f"{k} {v}" for k, v in self.log.items())
        errors = (
            " (" + ", ".join(f"{kind} x{n}" for kind, n in sorted(self.errors.items())) + ")" if self.errors else ""
        )
        tail = "" if self.settled else "; DID NOT SETTLE" + (", worker restarted" if self.restored else "")
        notes = "".join(f"; {note}" for note in self.notes)
        after = [f"worker serving {self.serving_s:.1f}s"] if self.serving_s is not None else []
        after += [f"first group sync {self.synced_s:.1f}s"] if self.synced_s is not None else []
        when = f"; after T0: {', '.join(after)}" if after else ""
        return f"{text}; log: {counts}{errors}{when}{tail}{notes}; load {self.load:.1f}"


@dataclass
class Bench:
    stack: LocalStack
    client: Client
    topic: str
    partitions: int
    env: dict[str, str]
    args: argparse.Namespace
    probe: Probe
    produced: int = 0
    send_errors: int = 0


class Probe:
    """Polls Postgres from the benchmark on one autocommit connection, made again after it broke; a failed query
    answers None (Postgres is down)."""

    def __init__(self, url: str, topic: str, partitions: int):
        self.url, self.topic, self.partitions = url, topic, partitions
        self.conn: psycopg.AsyncConnection | None = None

    async def one(self, sql: str, *params: object) -> tuple | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=2)
            cursor = await self.conn.execute(sql, params)
            return await cursor.fetchone()
        except psycopg.Error:
            await self.close()
            return None

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close()
            self.conn = None

    async def landed_after(self, marker: datetime) -> bool:
        return await self.one("SELECT 1 FROM events WHERE ts > %s LIMIT 1", marker) is not None

    async def partitions_after(self, marker: datetime) -> int:
        row = await self.one(
            "SELECT count(*) FROM ingestion_watermarks WHERE topic = %s AND complete_until > %s", self.topic, marker
        )
        return row[0] if row else 0

    async def partitions_fresh(self, within_s: float) -> int:
        row = await self.one(
            "SELECT count(*) FROM ingestion_watermarks WHERE topic = %s "
            "AND complete_until > clock_timestamp() - make_interval(secs => %s)",
            self.topic,
            within_s,
        )
        return row[0] if row else 0


async def first_connection(url: str, timeout_s: float) -> float | None:
    """The first moment (time.time()) a new connection succeeds and answers, tried every POLL_S."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=1)
            async with conn:
                await conn.execute("SELECT 1")
            return time.time()
        except psycopg.Error:
            await asyncio.sleep(POLL_S)
    return None


async def produce(bench: Bench, stop: asyncio.Event) -> None:
    """`--rate` messages a second in 20 ms ticks, each tick's messages stamped with its time (event time and Kafka
    timestamp), round robin over the partitions. A tick sends at most 200 ms of messages (benchmarks/soak.py)."""
    rate = bench.args.rate
    producer = AIOKafkaProducer(bootstrap_servers=bench.stack.kafka_bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    pool = templates()
    run = uuid.uuid4().hex[:8]
    started = time.monotonic()
    scheduled = 0
    try:
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            count = min(due - scheduled, max(1, rate // 5))
            scheduled = due
            if count > 0:
                now = time.time()
                stamp = datetime.fromtimestamp(now, UTC).isoformat().encode()
                for _ in range(count):
                    i = bench.produced
                    payload = pool[i % len(pool)].replace(b"@ID@", f"faults-{run}-{i}".encode()).replace(b"@TS@", stamp)
                    try:
                        await producer.send(
                            bench.topic, payload, partition=i % bench.partitions, timestamp_ms=int(now * 1000)
                        )
                    except Exception:  # Kafka is not the fault under test: count it, go on
                        bench.send_errors += 1
                    bench.produced += 1
            await asyncio.sleep(0.02)
    finally:
        with contextlib.suppress(Exception):
            await producer.flush()
        await producer.stop()


async def steady(bench: Bench) -> bool:
    """Every partition landed within --steady-lag-s, and no consumer's last run failed (none in back-off)."""
    if await bench.probe.partitions_fresh(bench.args.steady_lag_s) < bench.partitions:
        return False
    try:
        status = await asyncio.wait_for(ingestion_status(bench.client, bench.topic), 5)
    except Exception:  # no worker answers the query yet
        return False
    return status.consecutive_failures == 0


async def settle(bench: Bench, timeout_s: float) -> bool:
    """steady() for --settle-s in a row, within `timeout_s`."""
    since = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = time.monotonic()
        if await steady(bench):
            since = since or now
            if now - since >= bench.args.settle_s:
                return True
        else:
            since = None
        await asyncio.sleep(0.5)
    return False


async def observe(bench: Bench, trial: Trial, fault_at: float, marker_at: float, t0: float) -> None:
    """Waits for T1 and every partition (polled every POLL_S, at most --recover-timeout-s after T0), then for
    ingestion to settle (at most --settle-timeout-s more); fills in the try's figures."""
    args, probe = bench.args, bench.probe
    marker = datetime.fromtimestamp(marker_at, UTC)
    trial.t0, trial.t0_after_s = t0, t0 - fault_at
    first = every = None
    deadline = t0 + args.recover_timeout_s
    while time.time() < deadline and (first is None or every is None):
        if first is None and await probe.landed_after(marker):
            first = time.time()
        if every is None and await probe.partitions_after(marker) >= bench.partitions:
            every = time.time()
        if first is None or every is None:
            await asyncio.sleep(POLL_S)
    if first is not None:
        trial.resume_s, trial.from_fault_s = first - t0, first - fault_at
    if every is not None:
        trial.all_s = every - t0
        trial.settled = await settle(bench, args.settle_timeout_s)


async def exited(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # the worker is our child (devstack's spawn): reap it
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def restart_worker(bench: Bench, sig: signal.Signals, notes: list[str]) -> tuple[float, float]:
    """Signals the worker, waits for it to exit, starts a new one: (the signal, the new worker's start)."""
    worker = bench.stack.worker
    pid = worker.pid()
    if pid is None or not pid_alive(pid):
        raise RuntimeError(f"the worker is not running; its log: {worker.log_path}")
    fault_at = time.time()
    os.killpg(pid, sig)
    if not await exited(pid, TERM_WAIT_S):
        os.killpg(pid, signal.SIGKILL)
        notes.append(f"the worker did not exit within {TERM_WAIT_S:.0f}s of {sig.name}: killed")
        if not await exited(pid, 10):
            raise RuntimeError(f"the worker {pid} did not exit after SIGKILL")
    t0 = time.time()
    await asyncio.to_thread(bench.stack.start_worker, bench.env)
    return fault_at, t0


async def postgres_outage(bench: Bench, trial: Trial) -> None:
    stack = bench.stack
    fault_at = time.time()
    await asyncio.to_thread(stack.postgres.down)
    await bench.probe.close()
    marker_at = time.time()  # Postgres has stopped: nothing produced from now on has landed before it
    await asyncio.sleep(bench.args.outage_s)
    starting = asyncio.create_task(asyncio.to_thread(stack.postgres.up))
    t0 = await first_connection(stack.database_url, bench.args.recover_timeout_s)
    await starting  # raises when Postgres did not start
    if t0 is None:
        raise RuntimeError("Postgres accepted no connection after up()")
    await observe(bench, trial, fault_at, marker_at, t0)


async def worker_restart(bench: Bench, trial: Trial) -> None:
    sig = signal.SIGKILL if trial.fault == "kill" else signal.SIGTERM
    fault_at, t0 = await restart_worker(bench, sig, trial.notes)
    # The old worker is gone before T0: nothing produced from then on has landed before the new one.
    await observe(bench, trial, fault_at, t0, t0)


def log_size(bench: Bench) -> int:
    path = bench.stack.worker.log_path
    return path.stat().st_size if path.exists() else 0


def logged_at(line: str) -> float | None:
    """The time.time() of a plain log line ("2026-12-07 23:54:41,106 INFO ...", local time), None for others."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


def read_log(bench: Bench, trial: Trial, offset: int) -> None:
    """The try's counts of LOG_COUNTS in the worker's log since `offset`, the failed runs' error types, and when
    (after T0) a new worker served and the group first synced."""
    text = bench.stack.worker.log_path.read_bytes()[offset:].decode(errors="replace")
    trial.log = {name: text.count(needle) for name, needle in LOG_COUNTS.items()}
    for line in text.splitlines():
        if line.startswith(FAILED_RUN):  # "...ApplicationError: KafkaJoinTimeout: the consumer group ..."
            kind = line[len(FAILED_RUN) :].split(":", 1)[0].strip()
            trial.errors[kind] = trial.errors.get(kind, 0) + 1
            continue
        at = logged_at(line)
        if at is None or at < trial.t0:
            continue
        if trial.fault != "postgres" and trial.serving_s is None and " worker serving task queue " in line:
            trial.serving_s = at - trial.t0
        if trial.synced_s is None and LOG_COUNTS["synced"] in line:
            trial.synced_s = at - trial.t0


async def one_try(bench: Bench, fault: str, index: int) -> Trial:
    trial = Trial(fault, index)
    offset = log_size(bench)
    if fault == "postgres":
        await postgres_outage(bench, trial)
    else:
        await worker_restart(bench, trial)
    if not trial.settled:  # the next try would measure this one's tail: a fresh worker brings ingestion back
        await restart_worker(bench, signal.SIGTERM, trial.notes)
        trial.restored = True
    read_log(bench, trial, offset)
    trial.load = os.getloadavg()[0]
    return trial


def summary(trials: list[Trial]) -> dict:
    def stats(values: list[float | None]) -> dict:
        known = [v for v in values if v is not None]
        if not known:
            return {"min": None, "median": None, "max": None}
        return {
            "min": round(min(known), 1),
            "median": round(statistics.median(known), 1),
            "max": round(max(known), 1),
        }

    def rounded(values: list[float | None]) -> list[float | None]:
        return [None if v is None else round(v, 1) for v in values]

    resume = [t.resume_s for t in trials]
    every = [t.all_s for t in trials]
    return {
        "resume_s": rounded(resume),
        "resume": stats(resume),
        "all_partitions_s": rounded(every),
        "all_partitions": stats(every),
        "from_fault_s": rounded([t.from_fault_s for t in trials]),
        "unrecovered": sum(1 for t in trials if t.resume_s is None),
        "unsettled": sum(1 for t in trials if not t.settled),
        "rejoins": [t.log.get("rejoins", 0) for t in trials],
        "synced": [t.log.get("synced", 0) for t in trials],
        "failed_runs": [t.log.get("failed_runs", 0) for t in trials],
        "worker_serving_s": rounded([t.serving_s for t in trials]),
        "first_sync_s": rounded([t.synced_s for t in trials]),
        "load": [round(t.load, 1) for t in trials],
    }


def ingestion_commit() -> tuple[str, bool]:
    """The last commit of activities/ingestion.py, and whether the file differs from it here."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", "activities/ingestion.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "--", "activities/ingestion.py"], cwd=root).returncode != 0
        return commit or "unknown", dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def worker_env(stack: LocalStack, settings: Settings) -> dict[str, str]:
    kafka = settings.kafka
    return {
        "OPTIMIZER_DATABASE__URL": stack.database_url,
        "OPTIMIZER_KAFKA__BROKERS": stack.kafka_bootstrap,
        "OPTIMIZER_KAFKA__TOPIC": kafka.topic,
        "OPTIMIZER_KAFKA__PARTITIONS": str(kafka.partitions),
        "OPTIMIZER_KAFKA__SESSION_TIMEOUT_MS": str(kafka.session_timeout_ms),
        "OPTIMIZER_KAFKA__HEARTBEAT_INTERVAL_MS": str(kafka.heartbeat_interval_ms),
        "OPTIMIZER_KAFKA__CONSUME_RUN_S": str(kafka.consume_run_s),
        "OPTIMIZER_TEMPORAL__ADDRESS": stack.temporal_address,
        "OPTIMIZER_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "OPTIMIZER_METRICS__PORT": "0",
        "OPTIMIZER_METRICS__TEMPORAL_PORT": "0",
    }


def settings_for(stack: LocalStack, args: argparse.Namespace, topic: str) -> Settings:
    kafka: dict[str, object] = {"brokers": [stack.kafka_bootstrap], "topic": topic, "consume_run_s": args.run_s}
    if args.session_timeout_ms:
        kafka["session_timeout_ms"] = args.session_timeout_ms
        kafka["heartbeat_interval_ms"] = max(1, args.session_timeout_ms // 3)
    return Settings(
        database={"url": stack.database_url},
        kafka=kafka,
        temporal={"address": stack.temporal_address, "task_queue": "faults"},
    )


async def run(args: argparse.Namespace) -> dict:
    commit, dirty = ingestion_commit()
    commit = args.commit or commit
    code = f"activities/ingestion.py at {commit}" + (" with uncommitted changes" if dirty else "")
    results: dict[str, list[Trial]] = {}
    aborted = None
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        stack = LocalStack.on_free_ports(Path(tmp))
        stack.up()
        stop = asyncio.Event()
        producing: asyncio.Task | None = None
        bench: Bench | None = None
        try:
            topic = f"faults-{uuid.uuid4().hex[:6]}"
            settings = settings_for(stack, args, topic)
            kafka = settings.kafka
            migrate(stack.database_url)
            await ensure_topic(settings, topic)
            env = worker_env(stack, settings)
            await asyncio.to_thread(stack.start_worker, env)
            client = await connect_client(settings)
            await start_ingestion(client, settings, topic)
            probe = Probe(stack.database_url, topic, kafka.partitions)
            bench = Bench(stack, client, topic, kafka.partitions, env, args, probe)
            print(
                f"{code}; {kafka.partitions} partitions, {kafka.consumer_count} consumers, session timeout "
                f"{kafka.session_timeout_ms} ms, join timeout {kafka.join_timeout_s} s, runs of "
                f"{kafka.consume_run_s} s; producing {args.rate} events/s; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            producing = asyncio.create_task(produce(bench, stop))
            started = time.monotonic()
            if not await settle(bench, args.recover_timeout_s + args.settle_timeout_s):
                raise RuntimeError("ingestion was not steady after its start")
            print(f"steady after {time.monotonic() - started:.1f}s", flush=True)
            for fault in args.faults:
                trials = results.setdefault(fault, [])
                for index in range(args.tries):
                    if producing.done():
                        producing.result()  # the producer failed: its error
                        raise RuntimeError("the producer stopped")
                    trial = await one_try(bench, fault, index)
                    trials.append(trial)
                    print(trial.line(args.tries, kafka.partitions), flush=True)
                    if trial.restored and not await settle(bench, args.recover_timeout_s + args.settle_timeout_s):
                        aborted = f"ingestion did not settle after {fault} try {index + 1}, even with a new worker"
                        break
                if aborted:
                    print(f"  {aborted}: the remaining tries are skipped", flush=True)
                    break
        finally:
            stop.set()
            if producing is not None:
                with contextlib.suppress(Exception):
                    await producing
            if bench is not None:
                await bench.probe.close()
            if args.worker_log and stack.worker.log_path.exists():
                args.worker_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(stack.worker.log_path, args.worker_log)
            stack.down()
    assert bench is not None
    print(f"produced {bench.produced:,} events ({bench.send_errors} sends failed); {code}")
    if args.worker_log:
        print(f"worker log: {args.worker_log}")
    out: dict = {
        "ingestion_commit": commit,
        "ingestion_uncommitted": dirty,
        "rate": args.rate,
        "partitions": kafka.partitions,
        "consumers": kafka.consumer_count,
        "session_timeout_ms": kafka.session_timeout_ms,
        "run_s": kafka.consume_run_s,
        "outage_s": args.outage_s,
        "recover_timeout_s": args.recover_timeout_s,
        "tries": args.tries,
    }
    for fault, trials in results.items():
        s = out[fault] = summary(trials)
        r, a = s["resume"], s["all_partitions"]
        print(
            f"{fault:8} T1 - T0 min / median / max: {r['min']} / {r['median']} / {r['max']} s; all partitions "
            f"{a['min']} / {a['median']} / {a['max']} s; not recovered within {args.recover_timeout_s:g} s: "
            f"{s['unrecovered']} of {len(trials)}; rejoins per try {s['rejoins']}"
        )
    if aborted:
        out["aborted"] = aborted
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.faults", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tries", type=int, default=5, help="tries of each fault")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"which, in this order (of {', '.join(FAULTS)})")
    parser.add_argument("--outage-s", type=float, default=30.0, help="how long Postgres stays down")
    parser.add_argument("--rate", type=int, default=200, help="events per second produced throughout")
    parser.add_argument("--recover-timeout-s", type=float, default=180.0, help="longest wait from T0 for T1")
    parser.add_argument("--settle-timeout-s", type=float, default=120.0, help="longest wait for steady after T1")
    parser.add_argument("--settle-s", type=float, default=5.0, help="steady this long before the next try")
    parser.add_argument("--steady-lag-s", type=float, default=5.0, help="steady: every partition landed within this")
    parser.add_argument(
        "--run-s",
        type=int,
        default=20,
        help="kafka.consume_run_s (a consumer's first good run "
        "after a fault ends its back-off: the next try waits for it)",
    )
    parser.add_argument(
        "--session-timeout-ms", type=int, default=None, help="kafka.session_timeout_ms (default: the setting's)"
    )
    parser.add_argument(
        "--worker-log", default=".data/bench/faults-worker.log", help="where to copy the worker's log ('' for nowhere)"
    )
    parser.add_argument("--commit", default="", help="the commit to report, when run from a tree outside git")
    args = parser.parse_args()
    args.faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    if unknown := [f for f in args.faults if f not in FAULTS]:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; choose among {', '.join(FAULTS)}")
    if args.tries <= 0 or args.rate <= 0 or args.outage_s < 0 or args.run_s <= 0:
        parser.error("--tries, --rate and --run-s must be positive, --outage-s not negative")
    args.worker_log = Path(args.worker_log) if args.worker_log else None
    result = asyncio.run(run(args))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
