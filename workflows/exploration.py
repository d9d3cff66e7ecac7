"""`Exploration`: several candidates measured at once on a slice of real traffic (A/B/n), until each is credibly
above or below the quality floor, or cannot win, or time is up (`llm_optimizer/exploration.py` settles them).

The live config serves everything outside the slice. An arm that is settled leaves the slice at once and the others
share it; when the exploration ends, however it ends, all traffic goes back to the live config.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow

from workflows.options import ACTIVITY

with workflow.unsafe.imports_passed_through():
    from activities.exploration import ExplorationActivities
    from activities.rollout import RolloutActivities
    from llm_optimizer.exploration import ArmResult, ArmStats, finished, shares
    from llm_optimizer.payloads import (
        ExplorationInput,
        ExplorationOutcome,
        ExplorationStatus,
        ExploreRoundRequest,
        RequestLog,
        StopRequest,
        TrafficRequest,
    )
    from runtime.search_attributes import ROLLOUT_STATE
    from workflows.details import minutes
    from workflows.handlers import take


@workflow.defn(name="Exploration")
class Exploration:
    @workflow.init
    def __init__(self, input: ExplorationInput) -> None:
        self.input = input
        self.results = [
            ArmResult(key=a.key, version=a.version, fate="exploring", reason="not judged yet", requests=0)
            for a in input.arms
        ]
        self.shares: dict[str, float] = {}
        self.rounds = 0
        self.stop_reason: str | None = None
        self.requests = RequestLog()  # request ids seen and refusals (workflows/handlers.py)

    @workflow.run
    async def run(self, input: ExplorationInput) -> ExplorationOutcome:
        started = workflow.now()
        live: ArmStats | None = None
        try:
            await self._split(shares(input.traffic_percent, self.results, input.policy))
            deadline = started + timedelta(seconds=input.max_duration_s)
            while True:
                with contextlib.suppress(TimeoutError):  # the round's time passed without a stop
                    await workflow.wait_condition(
                        lambda: self.stop_reason is not None,
                        timeout=timedelta(seconds=input.round_s),
                        timeout_summary=f"round {self.rounds + 1}: measure for {minutes(input.round_s)}",
                    )
                final = self.stop_reason is not None or workflow.now() >= deadline
                round_ = await workflow.execute_activity_method(
                    ExplorationActivities.explore_round,
                    ExploreRoundRequest(
                        exploration_id=input.exploration_id,
                        service=input.service,
                        live_version=input.live_version,
                        arms=input.arms,
                        since=started,
                        until=workflow.now(),
                        policy=input.policy,
                        reference_version=input.reference_version,
                        reference=input.reference,
                        previous=self.results,
                        final=final,
                    ),
                    summary=f"round {self.rounds + 1}: test every arm against the quality floor",
                    **ACTIVITY,
                )
                self.rounds += 1
                self.results, live = round_.arms, round_.live
                workflow.set_current_details(self._details())
                if final or finished(self.results):
                    break
                split = shares(input.traffic_percent, self.results, input.policy)
                if split != self.shares:
                    await self._split(split)
        except asyncio.CancelledError:
            self.stop_reason = self.stop_reason or "the exploration was cancelled"
            await self._split({})
            raise
        await self._split({})
        await workflow.wait_condition(workflow.all_handlers_finished)
        qualified = [r.key for r in self.results if r.fate == "qualified"]
        # Added after explorations ran: patched() keeps their histories replaying.
        if workflow.patched("exploration-rollout-state"):
            workflow.upsert_search_attributes([ROLLOUT_STATE.value_set("qualified" if qualified else "finished")])
        reason = self.stop_reason and f"stopped: {self.stop_reason}"
        reason = reason or (f"qualified: {', '.join(qualified)}" if qualified else "no arm is credibly above the floor")
        return ExplorationOutcome(
            exploration_id=input.exploration_id,
            service=input.service,
            live_version=input.live_version,
            arms=self.results,
            live=live,
            started_at=started,
            reason=reason,
        )

    def _details(self) -> str:
        """What the Temporal UI shows as the exploration's current details: one line per arm, in words."""
        lines = [
            f"**Round {self.rounds}**: every arm against the quality floor ({self.input.policy.floor_ratio:g} "
            "x the reference).",
            "",
        ]
        # A list, not a table: the Temporal UI's Markdown runs table cells together.
        for r in self.results:
            ratio = "" if r.quality_ratio is None else f", quality ratio {r.quality_ratio:.3f}"
            lines.append(f"- **{r.key}**: {r.fate} after {r.requests} requests{ratio}: {r.reason}")
        return "\n".join(lines)

    async def _split(self, split: dict[str, float]) -> None:
        self.shares = split
        described = ", ".join(f"{v} {p:g}%" for v, p in split.items()) or "none (all traffic to the live config)"
        await workflow.execute_activity_method(
            RolloutActivities.set_traffic,
            TrafficRequest(
                rollout_id=f"{self.input.exploration_id}#{self.rounds}",
                service=self.input.service,
                active_version=self.input.live_version,
                canary_version=None,
                percent=0.0,
                explore=split,
            ),
            summary=f"exploration slice: {described}",
            **ACTIVITY,
        )

    # Handlers take their inputs as they come (`*inputs`), so that no input can fail a workflow task (see
    # docs/operations.md): what is not one valid JSON object is refused and listed in `status`.

    @workflow.signal(description="End the exploration now: every arm still undecided is left out as unproven.")
    def stop(self, *inputs: Any) -> None:
        self._stop("stop", inputs)

    @workflow.signal(description="Same as stop (the cycle forwards an operator's emergency stop).")
    def emergency_stop(self, *inputs: Any) -> None:
        self._stop("emergency_stop", inputs)

    def _stop(self, name: str, inputs: tuple[Any, ...]) -> None:
        request = take(self.requests, name, inputs, StopRequest).request
        if request is not None and self.stop_reason is None:
            self.stop_reason = request.reason or f"{name} requested"

    @workflow.query(description="Every arm's evidence and fate, the current traffic slice, refusals.")
    def status(self, *inputs: Any) -> ExplorationStatus:
        return ExplorationStatus(
            exploration_id=self.input.exploration_id,
            rounds=self.rounds,
            shares=self.shares,
            arms=self.results,
            stop_reason=self.stop_reason,
            refusals=self.requests.refusals,
        )
