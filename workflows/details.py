"""What the workflows tell an operator in the Temporal UI, in words: durations, a cycle's current details, a
rollout's static details. Pure formatting (deterministic), shared by the workflows; figures rounded to be read."""

from __future__ import annotations

from datetime import datetime

from llm_optimizer.payloads import CycleState, CycleStatus, RolloutInput


def minutes(seconds: float) -> str:
    """A duration as people say it: `27 s`, `15 min`, `1.5 h`."""
    if seconds < 90:
        return f"{seconds:.3g} s"
    if seconds < 5400:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def clock(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


# What a cycle does in each state, as its current details say it (with why it got there).
DOING = {
    CycleState.IDLE: "waiting for the next run",
    CycleState.OBSERVING: "observing the live config and its traffic",
    CycleState.ANALYZING: "analysing the window",
    CycleState.DECIDING: "deciding whether another config is better",
    CycleState.VALIDATING: "registering the candidate",
    CycleState.DEPLOYING: "starting the rollout",
    CycleState.MONITORING: "watching the rollout",
    CycleState.ROLLING_BACK: "rolling back",
    CycleState.PAUSED: "paused",
    CycleState.STOPPED: "stopped",
}


def cycle_details(status: CycleStatus, model: str | None, doing: str, now: datetime) -> str:
    """The cycle's current details (Markdown): what it is doing now and why, then what an operator looks up next."""
    state = status.state
    headline = f"**{state.value}**: {doing}"
    if state == CycleState.PAUSED:
        headline = f"**PAUSED**: {status.paused_reason}. No cycle starts until `resume`."
    elif state == CycleState.STOPPED:
        headline = f"**STOPPED** (emergency stop): {status.stopped_reason}. Nothing changes until `resume`."
    lines = [headline, ""]
    live = status.active_version or "none yet"
    lines.append(f"- **Live**: {live}" + (f" ({model})" if model else ""))
    if status.rollout is not None:
        r = status.rollout
        lines.append(f"- **Rollout**: `{r.rollout_id}`, stage {r.stage + 1}: {r.percent:g}% to {r.to_version}")
    running = [link for link in status.rollouts if link.finished_at is None]
    for link in running:
        if status.rollout is None or link.rollout_id != status.rollout.rollout_id:
            lines.append(f"- **{link.kind.capitalize()} in flight**: `{link.workflow_id}` ({link.target})")
    decision = status.last_decision
    if decision is not None:
        lines.append(
            f"- **Last decision** ({clock(decision.made_at)}): {decision.action.value}: {decision.rationale[:600]}"
        )
    finished = [link for link in status.rollouts if link.finished_at is not None]
    if finished:
        last = finished[-1]
        lines.append(f"- **Last {last.kind}**: `{last.workflow_id}`: {(last.outcome or '')[:300]}")
    if status.next_run_at is not None and state == CycleState.IDLE:
        left = max(0.0, (status.next_run_at - now).total_seconds())
        lines.append(f"- **Next run**: {clock(status.next_run_at)} (in {minutes(left)}), sooner on a threshold breach")
    lines.append(
        f"- **Strategy**: {status.strategy.value}; quality floor {status.constraints.quality_floor_ratio:g} x the "
        f"reference; cycles done: {status.cycles_done}"
    )
    if status.alerts:
        lines.append(f"- **Alert**: {status.alerts[-1][:300]}")
    if status.refusals:
        lines.append(f"- **Last refusal**: {status.refusals[-1][:300]}")
    # A run after continue-as-new has no static summary (the SDK cannot carry it): this line says what it is.
    lines += ["", f"_The optimization loop of {status.service}; controls: the `control` update (docs/operations.md)._"]
    return "\n".join(lines)


def rollout_details(inp: RolloutInput, rationale: str) -> str:
    """A canary's static details (Markdown): its stages, the limits it is judged against, and why it runs."""
    t = inp.thresholds
    stages = " -> ".join(
        f"{s.percent:g}% for {minutes(s.bake_s)}" if s.bake_s else f"{s.percent:g}%" for s in inp.stages
    )
    return "\n".join(
        [
            f"**{inp.strategy}** of {inp.to_version} (from {inp.from_version}) for {inp.service}: {stages}.",
            "",
            f"Each stage is judged on at least {t.min_samples} requests (alpha {t.alpha:g}) against "
            f"{inp.from_version}: degraded, and all traffic goes back to it, when quality drops more than "
            f"{t.quality_decrease * 100:.1f}% or the error rate, p95 latency or cost rise more than "
            f"{t.error_rate_increase * 100:.0f}%, {t.latency_increase * 100:.0f}% or {t.cost_increase * 100:.0f}%; "
            f"an inconclusive stage is extended up to {inp.max_extensions} times.",
            "",
            f"Decision: {rationale[:1500]}",
        ]
    )
