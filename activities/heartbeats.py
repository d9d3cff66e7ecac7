"""Heartbeats for activities that can run long: a worker that dies stops beating, and Temporal retries its work
after the heartbeat timeout (seconds, workflows/options.py HEARTBEAT) instead of the start-to-close timeout."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from temporalio import activity

BEAT_EVERY_S = 1.0  # well inside workflows/options.py HEARTBEAT, so one late beat is never a timeout
# What an activity puts here goes with each beat, so that a retry can read it (activity.info().heartbeat_details).
beat_details: contextvars.ContextVar[list] = contextvars.ContextVar("beat_details")

P = ParamSpec("P")
R = TypeVar("R")


def heartbeating(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Heartbeat from a side task while the activity runs, when its options ask for heartbeats: a worker that dies
    stops heartbeating, and Temporal retries its work after the heartbeat timeout (seconds) instead of the
    start-to-close timeout. What the activity puts in `beat_details` goes with each beat (a retry reads it)."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not activity.info().heartbeat_timeout:
            return await fn(*args, **kwargs)
        details: list = list(activity.info().heartbeat_details)
        beat_details.set(details)

        async def beat() -> None:
            while True:
                activity.heartbeat(*details)
                await asyncio.sleep(BEAT_EVERY_S)

        beats = asyncio.create_task(beat())
        try:
            return await fn(*args, **kwargs)
        finally:
            beats.cancel()

    return run
