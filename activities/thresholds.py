"""The cycles' fast path: the live config against its hard limits, and Sentinel's high and critical alerts. A cycle
checks itself (`check_thresholds`, the histories recorded before the watcher), or the task queue's
`ThresholdWatcher` watches every idle cycle off their histories (`watch_thresholds`) and signals a breach.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import psycopg
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError

from activities.heartbeats import heartbeating
from llm_optimizer.decision import broken_limits, violations
from llm_optimizer.ids import THRESHOLD_BREACHED, running_cycles_query
from llm_optimizer.payloads import (
    CycleState,
    ThresholdBreach,
    ThresholdCheck,
    ThresholdRequest,
    ThresholdWatch,
    WatchInput,
    WatchReport,
)
from runtime.search_attributes import CYCLE_STATE
from storage import analysis_repo, anomalies_repo, configs_repo
from storage.db import Database

# A breach of the same limits by the same version is signalled again only after this many of its windows: each
# signal runs a cycle, and one that can do nothing more would otherwise run every window while the breach lasts.
REPEAT_BREACH_WINDOWS = 10


class ThresholdActivities:
    """`check_thresholds` and `watch_thresholds`, on the worker's pool."""

    def __init__(self, db: Database):
        self.db = db

    @activity.defn(name="check_thresholds")
    @heartbeating
    async def check_thresholds(self, request: ThresholdRequest) -> ThresholdCheck:
        """The fast path: the live config against the hard limits, and Sentinel's high and critical alerts."""

        def work(conn: psycopg.Connection) -> ThresholdCheck:
            taken = anomalies_repo.take(conn, request.service, activity.info().workflow_id or "")
            reasons = [_alert_text(alert) for alert in taken]
            assignment = configs_repo.get_assignment(conn, request.service)
            if assignment is not None:
                for p in analysis_repo.profiles(conn, request.service, request.window_start, request.window_end):
                    if p.config_version == assignment.active_version and p.requests >= 50:
                        reasons += violations(p, request.constraints, None)
            return ThresholdCheck(violated=bool(reasons), reasons=reasons)

        return await self.db.run(work)

    @activity.defn(name="watch_thresholds")
    async def watch_thresholds(self, request: WatchInput) -> WatchReport:
        """The fast path of every running cycle on a task queue, off their histories (`ThresholdWatcher`): each
        idle cycle's live config is checked against its hard limits, and its Sentinel alerts looked at, every
        `window_s` of its memo; only a cycle with a breach is signalled (`threshold_breached`). Runs `run_s`,
        heartbeating; a retry after a crash starts over (a breach is signalled again at worst, and the cycle
        ignores a repeated `request_id`)."""
        client = activity.client()
        clock = asyncio.get_running_loop().time
        report = WatchReport()
        end, next_list = clock() + request.run_s, 0.0
        due: dict[str, float] = {}
        cycles: dict[str, tuple[ThresholdWatch, str | None]] = {}
        # Per cycle, the broken limits last signalled and until when the same ones are not signalled again.
        signalled: dict[str, tuple[tuple[str | None, frozenset[str]], float]] = {}
        while (now := clock()) < end:
            if now >= next_list:
                cycles = await _watched_cycles(client, request.task_queue)
                next_list = now + request.list_every_s
                due = {wid: due.get(wid, now + watch.window_s) for wid, (watch, _) in cycles.items()}
            for wid, (watch, state) in cycles.items():
                if state not in (None, CycleState.IDLE.value):  # busy: its next check is a window after it idles
                    due[wid] = now + watch.window_s
                    continue
                if due[wid] > now:
                    continue
                due[wid] = now + watch.window_s
                report.checks += 1
                found = await self.db.run(lambda conn, w=watch: _breach(conn, w))
                if found is None:
                    continue
                breach, anomaly_ids = found.breach, found.anomaly_ids
                last = signalled.get(wid)
                if not anomaly_ids and last is not None and last[0] == found.limits and now < last[1]:
                    # The same limits of the same version, already signalled: the cycle acted on them (a rollback,
                    # a backup, or an alert it does not repeat), and its own runs see them in their window.
                    report.repeats_held += 1
                    continue
                try:
                    await client.get_workflow_handle(wid).signal(THRESHOLD_BREACHED, breach)
                except RPCError as err:  # closed meanwhile: its alerts stay unclaimed for the next cycle
                    activity.logger.warning("could not signal %s: %s", wid, err)
                    continue
                signalled[wid] = (found.limits, now + REPEAT_BREACH_WINDOWS * watch.window_s)
                if anomaly_ids:  # each alert is acted on once: by the cycle it was signalled to
                    await self.db.run(anomalies_repo.claim, anomaly_ids, wid)
                found_text = "; ".join([*breach.alerts, *breach.reasons])
                report.breaches = [*report.breaches, f"{watch.service}: {found_text}"[:300]][-20:]
            activity.heartbeat(report.checks)
            try:  # a worker shutting down ends the watch at once (the workflow starts the next on another worker)
                await asyncio.wait_for(
                    activity.wait_for_worker_shutdown(),
                    timeout=max(0.05, min([next_list, end, *due.values()]) - clock()),
                )
                break
            except TimeoutError:
                pass
        report.cycles = sorted(watch.service for watch, _ in cycles.values())
        return report


async def _watched_cycles(client: Client, task_queue: str) -> dict[str, tuple[ThresholdWatch, str | None]]:
    """Running cycles on `task_queue` that publish what to watch (memo `thresholds`), with their CycleState."""
    cycles = {}
    async for execution in client.list_workflows(running_cycles_query(task_queue)):
        watch = await execution.memo_value("thresholds", None, type_hint=ThresholdWatch)
        if watch is not None:  # a cycle started before the watcher existed watches itself
            cycles[execution.id] = (watch, execution.typed_search_attributes.get(CYCLE_STATE))
    return cycles


class _Found(NamedTuple):
    """What one watch found of a cycle: the breach to signal, its Sentinel alerts' ids, and the broken limits by
    name with the version that broke them (what makes a breach the same as the last one signalled)."""

    breach: ThresholdBreach
    anomaly_ids: list[str]
    limits: tuple[str | None, frozenset[str]]


def _breach(conn: psycopg.Connection, watch: ThresholdWatch) -> _Found | None:
    """The cycle's breach (hard limits of the live config over the last window, unclaimed high and critical
    Sentinel alerts); None when all is well."""
    unclaimed = anomalies_repo.unclaimed(conn, watch.service)
    alerts = [_alert_text(alert) for alert in unclaimed]
    broken: dict[str, str] = {}
    assignment = configs_repo.get_assignment(conn, watch.service)
    if assignment is not None:
        until = datetime.now(UTC)
        since = until - timedelta(seconds=watch.window_s)
        for p in analysis_repo.profiles(conn, watch.service, since, until):
            if p.config_version == assignment.active_version and p.requests >= 50:
                broken |= broken_limits(p, watch.constraints, None)
    reasons = list(broken.values())
    if not reasons and not alerts:
        return None
    ids = [alert.anomaly_id for alert in unclaimed]
    # The same alerts signalled twice (a retried watch) are one request for the cycle.
    request_id = "alerts/" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32] if ids else None
    breach = ThresholdBreach(
        reasons=reasons[:50],
        version=assignment.active_version if assignment else None,
        alerts=alerts[:50],
        request_id=request_id,
    )
    return _Found(breach, ids, (breach.version, frozenset(broken)))


def _alert_text(alert: anomalies_repo.Alert) -> str:
    return f"Sentinel: {alert.severity} {alert.anomaly_type}"
