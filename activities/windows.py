"""Complete windows: the wait, within a bound, until a service's events up to a moment have landed
(docs/architecture.md, "Complete windows"). The cycle's observation and the canary judge both wait with it."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from activities.heartbeats import beat_details
from runtime import metrics
from storage import watermarks_repo
from storage.db import Database

LANDED_POLL_S = 1.0  # how often a judge or an observation waiting for late data looks at the watermarks


async def landed(
    db: Database, service: str, until: datetime, wait_s: float
) -> tuple[watermarks_repo.Completeness, str]:
    """Wait, at most `wait_s` over all attempts, until `service`'s events up to `until` have landed. Returns the
    completeness and, if still late, why."""
    details = beat_details.get(None)
    waited = float(details[0]) if details and isinstance(details[0], int | float) else 0.0
    started = time.monotonic() - waited
    while True:
        done = await db.run(lambda conn: watermarks_repo.for_service(conn, service))
        waited = time.monotonic() - started
        if done.covers(until) or waited >= wait_s:
            break
        if details is not None:
            details[:] = [waited]  # a retry after a dead worker waits only what is left
        await asyncio.sleep(min(LANDED_POLL_S, wait_s - waited))
    behind = done.behind(until)
    metrics.DATA_LATE_SECONDS.labels(service).set(behind)
    if behind <= 0:
        return done, ""
    assert done.complete_until is not None
    return done, (
        f"topic {done.topic} has landed {service}'s events up to {done.complete_until:%H:%M:%S}, "
        f"{behind:.0f} s before the window's end {until:%H:%M:%S} (waited {waited:.0f} s)"
    )
