"""The demo report: what the loop was asked to do, cost and quality before and after per service, every rollout with
its verdict at each stage, and a page (reports/demo.html) with the charts.

The charts are drawn by matplotlib as SVG inlined in the page (docs/dependencies.md, "The demo report"): the page
needs no script and no network, and stays small. `gather` reads what happened from Postgres; `write` draws it, so
the page can be built from any `ReportData` (tests/integration/test_report.py builds one by hand).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import psycopg

from llm_optimizer.decision import Constraints
from llm_optimizer.objectives import Objectives, Outcome, pareto_frontier
from llm_optimizer.payloads import CycleInput
from llm_optimizer.settings import CanaryThresholds
from llm_optimizer.strategies import PRESETS, Strategy
from simulator.outcomes import ModelSummary, OutcomeTable
from storage import report_repo
from storage.db import connect

BUCKET_S = 10
# Before/after: the mean of the first and of the last sixth of a service's buckets (at least two each).
EDGE_FRACTION = 6
VERDICT_STYLE = {  # colour, line style of a stage's verdict line
    "healthy": ("#2e7d32", "-"),
    "degraded": ("#c62828", "--"),
    "inconclusive": ("#ef6c00", ":"),
}
OUTCOME_COLOR = {"promoted": "#a5d6a7", "rolled_back": "#ef9a9a"}
IN_FLIGHT_COLOR = "#cfd8dc"
INCIDENT_COLOR = "#ef6c00"
# bucket start (epoch s), mean cost per request (USD), mean quality (None: nothing scored yet), scored requests
Point = tuple[float, float, float | None, int]
MIN_SCORED = 30  # fewer scored requests at either end: the quality kept is not stated (an evaluator may lag)


@dataclass(frozen=True)
class Goal:
    """What the loop was given; the demo gives every service the same."""

    strategy: Strategy
    objectives: Objectives
    constraints: Constraints
    canary: CanaryThresholds
    time_scale: float = 1.0

    @classmethod
    def of(cls, cycle: CycleInput) -> Goal:
        return cls(cycle.strategy, cycle.objectives, cycle.constraints, cycle.canary, cycle.time_scale)


@dataclass(frozen=True)
class ReportStageVerdict:
    """A row of the report: a stage's judgement as `rollout_verdicts` holds it (not the workflow's
    `payloads.StageVerdict`)."""

    stage: int
    attempt: int
    percent: float
    verdict: str
    judged_at: float  # epoch seconds
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportRollout:
    """A row of the report: a rollout as `rollouts` holds it, with the models its versions serve and its stages'
    verdicts (not the workflow's `payloads.RolloutRecord`)."""

    service: str
    rollout_id: str
    from_model: str
    to_model: str
    state: str
    reason: str | None
    started_at: float
    finished_at: float | None
    verdicts: tuple[ReportStageVerdict, ...] = ()


@dataclass(frozen=True)
class IncidentNote:
    """An incident the run injected: what, when (seconds since traffic started), and what it hit: named
    `services`, or whichever services were served by `provider` or by `model` when it started."""

    text: str
    start_s: float
    end_s: float
    services: tuple[str, ...] = ()
    provider: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class ReportData:
    goal: Goal
    series: dict[str, list[Point]]  # per service, ordered by time
    candidates: dict[str, list[ModelSummary]]  # per service: every model offered, with its quality and cost
    start_models: dict[str, str]
    live_models: dict[str, str]  # per service: the model serving all traffic at the end
    rollouts: list[ReportRollout] = field(default_factory=list)
    incidents: list[IncidentNote] = field(default_factory=list)

    @property
    def services(self) -> list[str]:
        return list(self.series)

    @property
    def t0(self) -> float:
        """When traffic started: the first bucket of any service."""
        return min((points[0][0] for points in self.series.values() if points), default=0.0)


@dataclass(frozen=True)
class Headline:
    service: str
    cost_before: float
    cost_after: float
    quality_before: float
    quality_after: float
    floor_ratio: float
    scored_before: int = MIN_SCORED
    scored_after: int = MIN_SCORED

    @property
    def savings(self) -> float:
        return 1 - self.cost_after / self.cost_before if self.cost_before else 0.0

    @property
    def quality_kept(self) -> float:
        return self.quality_after / self.quality_before if self.quality_before else 1.0

    @property
    def quality_known(self) -> bool:
        """Enough scored requests at both ends to say how much quality was kept."""
        return min(self.scored_before, self.scored_after) >= MIN_SCORED

    @property
    def within_floor(self) -> bool:
        return self.quality_kept >= self.floor_ratio


def headline(service: str, points: Sequence[Point], floor_ratio: float) -> Headline | None:
    """Before and after of one service, or None with too little traffic to tell (fewer than four buckets)."""
    if len(points) < 4:
        return None
    n = max(2, len(points) // EDGE_FRACTION)
    head, tail = points[:n], points[-n:]
    return Headline(
        service,
        cost_before=_mean(p[1] for p in head),
        cost_after=_mean(p[1] for p in tail),
        quality_before=_scored_mean(head),
        quality_after=_scored_mean(tail),
        floor_ratio=floor_ratio,
        scored_before=sum(p[3] for p in head),
        scored_after=sum(p[3] for p in tail),
    )


def build(
    database_url: str, table: OutcomeTable, path: Path, goal: Goal, incidents: Sequence[IncidentNote] = ()
) -> str:
    """Read what happened, write the page to `path`, and return the text summary."""
    data = replace(gather(database_url, table, goal), incidents=list(incidents))
    write(data, path)
    return summary_text(data)


def gather(database_url: str, table: OutcomeTable, goal: Goal) -> ReportData:
    # One short-lived connection, not a pool: the report is a one-shot command that reads a few queries in a row
    # and exits (the demo calls it once, after its traffic has stopped).
    with connect(database_url) as conn:
        series = {s: _series(conn, s) for s in table.services}
        models = report_repo.models_by_version(conn)
        live = report_repo.live_versions(conn)
        verdicts: dict[str, list[ReportStageVerdict]] = {}
        for rollout_id, stage, attempt, percent, verdict, judged_at, reasons in report_repo.stage_verdicts(conn):
            verdicts.setdefault(rollout_id, []).append(
                ReportStageVerdict(stage, attempt, float(percent), verdict, float(judged_at), tuple(reasons or ()))
            )
        rollouts = [
            ReportRollout(
                service,
                rollout_id,
                models.get(f"{service}/{src}") or src,
                models.get(f"{service}/{dst}") or dst,
                state,
                reason,
                float(started),
                None if finished is None else float(finished),
                tuple(verdicts.get(rollout_id, ())),
            )
            for service, rollout_id, src, dst, state, reason, started, finished in report_repo.rollouts(conn)
        ]
    start_models = {s: table.best_quality_model(s).model for s in table.services}
    return ReportData(
        goal=goal,
        series=series,
        candidates={s: table.models(s) for s in table.services},
        start_models=start_models,
        live_models={
            s: models.get(f"{s}/{live[s]}", start_models[s]) if s in live else start_models[s] for s in series
        },
        rollouts=rollouts,
    )


def _series(conn: psycopg.Connection, service: str) -> list[Point]:
    """Per BUCKET_S seconds; quality None where no event of the bucket has a score yet (an evaluator may still be
    scoring them)."""
    rows = report_repo.cost_quality_series(conn, service, BUCKET_S)
    return [(float(b), float(c or 0), None if q is None else float(q), int(n)) for b, c, q, n in rows]


def _scored_mean(points: Sequence[Point]) -> float:
    """The mean quality of the scored requests of `points` (each bucket weighs its scored requests); 0 if none."""
    scored = sum(p[3] for p in points if p[2] is not None)
    return sum(p[2] * p[3] for p in points if p[2] is not None) / scored if scored else 0.0


def _mean(values: Iterable[float | None]) -> float:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else 0.0


def floor_quality(data: ReportData, service: str) -> float:
    """The quality floor in score units: the floor ratio of the starting model's quality."""
    start = next(m for m in data.candidates[service] if m.model == data.start_models[service])
    return data.goal.constraints.quality_floor_ratio * start.quality


# -- the text summary (printed by the demo) ------------------------------------------------------------------------


def summary_text(data: ReportData) -> str:
    floor = data.goal.constraints.quality_floor_ratio
    lines = [
        f"goal: {data.goal.strategy.value} strategy, weights {_weights(data.goal.objectives)}, "
        f"quality floor {floor:.0%} of each service's starting quality",
        "",
        "service        cost/request before -> after        quality before -> after   kept (floor)",
    ]
    for service in data.services:
        h = headline(service, data.series[service], floor)
        if h is None:
            lines.append(f"{service:<14} (too little traffic)")
            continue
        kept = (
            f"{h.quality_kept:.0%} ({'within' if h.within_floor else 'BELOW'} {floor:.0%})"
            if h.quality_known
            else f"unknown: {min(h.scored_before, h.scored_after)} requests scored (at least {MIN_SCORED})"
        )
        lines.append(
            f"{service:<14} ${h.cost_before:.6f} -> ${h.cost_after:.6f} ({_signed(-h.savings):>5})  "
            f"{h.quality_before:.3f} -> {h.quality_after:.3f} ({h.quality_after - h.quality_before:+.3f})  {kept}"
        )
    lines.append("")
    lines.append(
        f"rollouts: {len(data.rollouts)} started, {sum(r.state == 'promoted' for r in data.rollouts)} promoted, "
        f"{sum(r.state == 'rolled_back' for r in data.rollouts)} rolled back"
    )
    for r in data.rollouts:
        stages = ", ".join(f"{v.percent:g}% {v.verdict}" for v in r.verdicts) or "no stage judged"
        lines.append(f"  {r.service}: {r.from_model} -> {r.to_model}: {r.state} ({r.reason or 'in flight'}); {stages}")
    if data.incidents:
        lines.append(f"incidents injected: {len(data.incidents)}")
        lines += [f"  {_incident_line(data, i)}" for i in data.incidents]
    return "\n".join(lines)


def _incident_line(data: ReportData, incident: IncidentNote) -> str:
    hit = [s for s in data.services if hits(data, incident, s)]
    return (
        f"{incident.text}, minutes {incident.start_s / 60:.1f} to {incident.end_s / 60:.1f} "
        f"({', '.join(hit) or 'no service was on it'})"
    )


def hits(data: ReportData, incident: IncidentNote, service: str) -> bool:
    """Whether `incident` hit `service`: named, or by the provider or model serving it when the incident started."""
    if service in incident.services:
        return True
    if incident.provider is None and incident.model is None:
        return False
    model = live_model_at(data, service, data.t0 + incident.start_s)
    providers = {m.model: m.provider for m in data.candidates.get(service, [])}
    return model == incident.model or (incident.provider is not None and providers.get(model) == incident.provider)


def live_model_at(data: ReportData, service: str, when: float) -> str:
    """The model serving all of `service`'s traffic at `when` (epoch s): its starting model, or the last one promoted
    before then."""
    promoted = sorted(
        (r.finished_at, r.to_model)
        for r in data.rollouts
        if r.service == service and r.state == "promoted" and r.finished_at is not None and r.finished_at <= when
    )
    return promoted[-1][1] if promoted else data.start_models[service]


def _signed(change: float) -> str:
    text = f"{change:+.0%}"
    return "±0%" if text in ("+0%", "-0%") else text


def _weights(objectives: Objectives) -> str:
    return f"cost {objectives.cost:g}, quality {objectives.quality:g}, latency {objectives.latency:g}"


# -- the page ------------------------------------------------------------------------------------------------------


def write(data: ReportData, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data))


CSS = """
body { font-family: 'DejaVu Sans', 'Helvetica Neue', Arial, sans-serif; color: #222; margin: 2em auto;
       max-width: 1320px; padding: 0 1.5em; line-height: 1.45; }
h1 { margin-bottom: .2em; } h2 { margin-top: 2.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
.lead { font-size: 1.1em; color: #444; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: .92em; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .35em .7em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ok { color: #2e7d32; font-weight: bold; } .bad { color: #c62828; font-weight: bold; }
.verdict { display: inline-block; border-radius: 3px; padding: 0 .45em; margin: 0 .2em .2em 0; color: #fff;
           font-size: .85em; white-space: nowrap; }
.verdict.healthy { background: #2e7d32; } .verdict.degraded { background: #c62828; }
.verdict.inconclusive { background: #ef6c00; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.charts svg { max-width: 100%; height: auto; }
dl.goal { display: grid; grid-template-columns: max-content auto; gap: .3em 1.2em; }
dl.goal dt { font-weight: bold; } dl.goal dd { margin: 0; }
"""


def render_html(data: ReportData) -> str:
    sections = [
        "<h1>llm-auto-optimizer demo report</h1>",
        f'<p class="lead">{html.escape(_lead(data))}</p>',
        "<h2>What the loop was asked to do</h2>",
        _goal_html(data),
        "<h2>Before and after</h2>",
        _headline_html(data),
    ]
    if data.incidents:
        sections.append("<h2>Incidents injected</h2>")
        sections.append(
            "<p>What the run did to the fleet on purpose, to show the loop's reaction (shaded on the charts of the "
            "services it hit):</p><ul>"
            + "".join(f"<li>{html.escape(_incident_line(data, i))}</li>" for i in data.incidents)
            + "</ul>"
        )
    for service in data.services:
        sections.append(f'<h2 id="service-{html.escape(service)}">{html.escape(service)}</h2>')
        sections.append(f"<p>{html.escape(_service_sentence(data, service))}</p>")
        sections.append('<div class="charts">' + timeline_svg(data, service) + frontier_svg(data, service) + "</div>")
        sections.append(_rollouts_html(data, service))
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>llm-auto-optimizer demo report</title>"
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>"
    )


def _lead(data: ReportData) -> str:
    floor = data.goal.constraints.quality_floor_ratio
    heads = [h for s in data.services if (h := headline(s, data.series[s], floor))]
    minutes = max((p[-1][0] + BUCKET_S - data.t0 for p in data.series.values() if p), default=0) / 60
    text = (
        f"{len(data.services)} services replayed real LLM outcomes for {minutes:.0f} minutes, each starting on its "
        f"highest-quality model. The loop started {len(data.rollouts)} canary rollouts and promoted "
        f"{sum(r.state == 'promoted' for r in data.rollouts)}."
    )
    if heads:
        before, after = sum(h.cost_before for h in heads), sum(h.cost_after for h in heads)
        text += f" Cost per request across the fleet: {1 - after / before if before else 0:.0%} lower"
        known = [h for h in heads if h.quality_known]
        if known:
            worst = min(known, key=lambda h: h.quality_kept)
            text += (
                f"; the lowest share of starting quality kept was {worst.quality_kept:.0%} ({worst.service}), "
                f"against a floor of {floor:.0%}"
            )
        text += "."
    return text


def _goal_html(data: ReportData) -> str:
    g = data.goal
    preset = PRESETS[g.strategy]
    stages = " → ".join(
        f"{s.percent:g}%" + (f" ({s.bake_s * g.time_scale:.0f} s)" if s.bake_s else "") for s in preset.stages
    )
    c = g.constraints
    limits = [f"error rate at most {c.error_rate_max:.0%}"] if c.error_rate_max is not None else []
    if c.p95_latency_max_ms:
        limits.append(f"p95 latency at most {c.p95_latency_max_ms:g} ms")
    if c.daily_budget_usd:
        limits.append(f"daily budget ${c.daily_budget_usd:g}")
    rows = [
        (
            "Strategy",
            f"{g.strategy.value}: a change must promise at least {preset.min_improvement:.0%} on the "
            f"weighted score, with confidence {preset.min_confidence:.0%} and at most {preset.max_risk:.0%} risk of "
            "being worse",
        ),
        ("Weights", f"{_weights(g.objectives)} (of the weighted score each candidate gets against the live config)"),
        (
            "Quality floor",
            f"{c.quality_floor_ratio:.0%} of each service's starting quality: a candidate below it is "
            "never proposed (the dashed line in the charts)",
        ),
        ("Other constraints", ", ".join(limits) or "none"),
        ("Rollout stages", f"{stages}, bake times scaled by {g.time_scale:g} for the demo"),
        (
            "Canary judge",
            f"rolls back when quality drops more than {g.canary.quality_decrease:.0%}, latency rises more "
            f"than {g.canary.latency_increase:.0%} or cost more than {g.canary.cost_increase:.0%}, judged on at least "
            f"{g.canary.min_samples} requests per arm at a false-alarm rate of {g.canary.alpha:g}",
        ),
    ]
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in rows)
    return f'<dl class="goal">{items}</dl>'


def _headline_html(data: ReportData) -> str:
    floor = data.goal.constraints.quality_floor_ratio
    head = (
        "<tr><th>service</th><th>model before → after</th><th>cost / request before</th><th>after</th>"
        "<th>savings</th><th>quality before</th><th>after</th><th>quality kept</th><th>vs floor</th></tr>"
    )
    rows = []
    for service in data.services:
        models = f"{data.start_models[service]} → {data.live_models[service]}"
        h = headline(service, data.series[service], floor)
        if h is None:
            rows.append(
                f"<tr><td>{html.escape(service)}</td><td>{html.escape(models)}</td>"
                "<td colspan='7'>too little traffic to tell</td></tr>"
            )
            continue
        if not h.quality_known:
            kept = "—"
            verdict = f"too few scored requests to tell ({min(h.scored_before, h.scored_after)}; at least {MIN_SCORED})"
        else:
            kept = f"{h.quality_kept:.0%}"
            verdict = (
                f"<span class='ok'>within</span> ({floor:.0%})"
                if h.within_floor
                else f"<span class='bad'>below</span> ({floor:.0%})"
            )
        rows.append(
            f"<tr><td>{html.escape(service)}</td><td>{html.escape(models)}</td>"
            f"<td class='num'>${h.cost_before:.6f}</td><td class='num'>${h.cost_after:.6f}</td>"
            f"<td class='num'>{h.savings:.0%}</td><td class='num'>{h.quality_before:.3f} ({h.scored_before:,})</td>"
            f"<td class='num'>{h.quality_after:.3f} ({h.scored_after:,})</td><td class='num'>{kept}</td>"
            f"<td>{verdict}</td></tr>"
        )
    note = (
        f"<p>Before: the mean of a service's first sixth of {BUCKET_S}-second buckets; after: of its last sixth; "
        "quality over the scored requests of those buckets (their number in brackets: an evaluator may not have "
        "scored the last ones yet). Quality kept: quality after as a share of quality before; the floor is the "
        "share the loop had to keep.</p>"
    )
    return f"<table>{head}{''.join(rows)}</table>{note}"


def _service_sentence(data: ReportData, service: str) -> str:
    start, live = data.start_models[service], data.live_models[service]
    n = sum(r.service == service for r in data.rollouts)
    tried = f"{n} rollout{'s' if n != 1 else ''}" if n else "no rollout"
    if start == live:
        return f"Started on {start} and stayed on it ({tried})."
    return f"Started on {start}; at the end {live} serves all traffic ({tried})."


def _verdict_chip(v: ReportStageVerdict) -> str:
    extension = f" (extension {v.attempt})" if v.attempt else ""
    return (
        f"<span class='verdict {html.escape(v.verdict)}' title='{html.escape('; '.join(v.reasons))}'>"
        f"{v.percent:g}%{extension}: {html.escape(v.verdict)}</span>"
    )


def _rollouts_html(data: ReportData, service: str) -> str:
    ours = [r for r in data.rollouts if r.service == service]
    if not ours:
        return "<p>No rollout: no candidate promised enough within the constraints.</p>"
    rows = []
    for r in ours:
        chips = "".join(_verdict_chip(v) for v in r.verdicts) or "no stage judged yet"
        rows.append(
            f"<tr><td>{html.escape(r.rollout_id)}</td><td>{html.escape(r.from_model)} → {html.escape(r.to_model)}</td>"
            f"<td class='num'>{(r.started_at - data.t0) / 60:.1f}</td><td>{html.escape(r.state)}</td>"
            f"<td>{chips}</td><td>{html.escape(r.reason or 'in flight')}</td></tr>"
        )
    return (
        "<table><tr><th>rollout</th><th>model</th><th>started (min)</th><th>outcome</th><th>verdict per stage</th>"
        f"<th>reason</th></tr>{''.join(rows)}</table>"
    )


# -- the charts ----------------------------------------------------------------------------------------------------


def timeline_svg(data: ReportData, service: str) -> str:
    """Cost and quality per request over time, with each rollout shaded by outcome and each stage's verdict."""
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    points, t0 = data.series[service], data.t0
    fig = Figure(figsize=(7.6, 5.2))
    cost_ax, quality_ax = fig.subplots(2, 1, sharex=True)
    minutes = [(p[0] + BUCKET_S / 2 - t0) / 60 for p in points]
    cost_ax.plot(minutes, [p[1] for p in points], color="#1565c0", lw=1.6)
    scored = [(m, p[2]) for m, p in zip(minutes, points, strict=True) if p[2] is not None]
    quality_ax.plot([m for m, _ in scored], [q for _, q in scored], color="#6a1b9a", lw=1.6)
    floor = floor_quality(data, service)
    quality_ax.axhline(floor, color="#555", ls="--", lw=1.2)
    end = minutes[-1] if minutes else 1.0
    incidents = [i for i in data.incidents if hits(data, i, service)]
    for incident in incidents:
        for ax in (cost_ax, quality_ax):
            ax.axvspan(
                incident.start_s / 60,
                incident.end_s / 60,
                facecolor="none",
                edgecolor=INCIDENT_COLOR,
                hatch="////",
                lw=0,
            )
    states = set()
    for r in (r for r in data.rollouts if r.service == service):
        until = (r.finished_at - t0) / 60 if r.finished_at else end
        color = OUTCOME_COLOR.get(r.state, IN_FLIGHT_COLOR)
        states.add(r.state if r.state in OUTCOME_COLOR else "in flight")
        for ax in (cost_ax, quality_ax):
            ax.axvspan((r.started_at - t0) / 60, until, color=color, alpha=0.45, lw=0)
        for v in r.verdicts:
            colour, style = VERDICT_STYLE.get(v.verdict, ("#777", "-."))
            x = (v.judged_at - t0) / 60
            for ax in (cost_ax, quality_ax):
                ax.axvline(x, color=colour, ls=style, lw=1.3)
            cost_ax.annotate(
                f"{v.percent:g}%",
                (x, 1),
                xycoords=("data", "axes fraction"),
                xytext=(2, -2),
                textcoords="offset points",
                fontsize=7.5,
                color=colour,
                va="top",
                rotation=90,
            )
    cost_ax.set_ylabel("cost per request (USD)")
    cost_ax.set_ylim(bottom=0)
    cost_ax.yaxis.set_major_formatter(_usd_formatter())
    quality_ax.set_ylabel("quality (mean score, 0 to 1)")
    quality_ax.set_xlabel("minutes since the fleet started sending traffic")
    low = min([floor, *(q for _, q in scored)])
    quality_ax.set_ylim(max(0.0, low - 0.08), min(1.05, max([floor, *(q for _, q in scored)]) + 0.08))
    for ax in (cost_ax, quality_ax):
        ax.grid(True, color="#eee")
        ax.set_xlim(0, max(end, 0.5))
    cost_ax.set_title(f"{service}: cost and quality per request over time", loc="left", fontsize=11)
    handles: list[Artist] = [
        Line2D([], [], color="#1565c0", lw=1.6, label=f"cost per request ({BUCKET_S} s mean)"),
        Line2D([], [], color="#6a1b9a", lw=1.6, label=f"quality ({BUCKET_S} s mean)"),
        Line2D([], [], color="#555", ls="--", lw=1.2, label=f"quality floor ({floor:.3f})"),
    ]
    verdicts = {v.verdict for r in data.rollouts if r.service == service for v in r.verdicts}
    handles += [
        Line2D([], [], color=c, ls=s, lw=1.3, label=f"stage judged {name}")
        for name, (c, s) in VERDICT_STYLE.items()
        if name in verdicts
    ]
    handles += [
        Patch(color=OUTCOME_COLOR.get(state, IN_FLIGHT_COLOR), alpha=0.45, label=f"rollout: {state.replace('_', ' ')}")
        for state in sorted(states)
    ]
    handles += [
        Patch(facecolor="none", edgecolor=INCIDENT_COLOR, hatch="////", lw=0, label=f"incident: {i.text}")
        for i in incidents
    ]
    # Below the x axis title whatever its number of rows; the saved figure grows to hold it.
    quality_ax.legend(
        handles=handles, loc="upper center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.32)
    )
    fig.subplots_adjust(hspace=0.12)
    return _svg(fig, f"timeline-{service}")


def frontier_svg(data: ReportData, service: str) -> str:
    """Every candidate's quality against its cost per request (log scale), the cost/quality frontier, the floor,
    the starting model and the model live at the end."""
    from matplotlib.figure import Figure

    models = sorted(data.candidates[service], key=lambda m: m.cost_per_request)
    start, live = data.start_models[service], data.live_models[service]
    floor = floor_quality(data, service)
    fig = Figure(figsize=(6.2, 5.2))
    ax = fig.subplots()
    costs = [max(m.cost_per_request, 1e-9) for m in models]
    qualities = [m.quality for m in models]
    lo, hi = min(costs), max(costs)
    ax.set_xscale("log")
    ax.set_xlim(lo / 2.5, hi * 2.5)
    ax.set_ylim(max(0.0, min([floor, *qualities]) - 0.1), min(1.05, max(qualities) + 0.08))
    ax.axhspan(0, floor, color="#fbe9e7", lw=0)
    ax.axhline(floor, color="#555", ls="--", lw=1.2, label=f"quality floor ({floor:.3f})")
    frontier = _frontier(models)
    ax.step(
        [max(m.cost_per_request, 1e-9) for m in frontier],
        [m.quality for m in frontier],
        where="post",
        color="#90a4ae",
        lw=1.2,
        label="cost/quality frontier",
    )
    ax.scatter(costs, qualities, s=36, color="#1565c0", zorder=3, label="candidate")
    for model, marker, size, color, label in (
        (live, "*", 220, "#ffb300", "live at the end"),
        (start, "s", 240, "none", "starting model"),  # drawn around the star when the service stayed put
    ):
        m = next((m for m in models if m.model == model), None)
        if m is not None:
            ax.scatter(
                [max(m.cost_per_request, 1e-9)],
                [m.quality],
                s=size,
                marker=marker,
                zorder=4,
                facecolor=color,
                edgecolor="#222",
                lw=1.2,
                label=label,
            )
    _place_labels(fig, ax, [(max(m.cost_per_request, 1e-9), m.quality, m.model) for m in models])
    ax.set_xlabel("cost per request (USD, log scale)")
    ax.set_ylabel("quality (mean score over the prompts, 0 to 1)")
    _log_cost_axis(ax, lo / 2.5, hi * 2.5)
    ax.grid(True, color="#eee", which="both")
    ax.set_title(f"{service}: the candidates' quality against cost", loc="left", fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    fig.subplots_adjust(bottom=0.26)
    return _svg(fig, f"frontier-{service}")


def _frontier(models: Sequence[ModelSummary]) -> list[ModelSummary]:
    """The models no other is both cheaper (or as cheap) and better than, by increasing cost: the decision's Pareto
    frontier on cost and quality."""
    frontier = pareto_frontier(models, lambda m: Outcome(cost=m.cost_per_request, quality=m.quality))
    return sorted(frontier, key=lambda m: (m.cost_per_request, -m.quality))


# Where a label may go around its point (offset in points, horizontal alignment), tried in this order.
LABEL_SPOTS = [
    (12, 3, "left"),
    (12, -11, "left"),
    (-12, 3, "right"),
    (-12, -11, "right"),
    (0, 12, "center"),
    (0, -21, "center"),
    (9, 15, "left"),
    (9, -23, "left"),
    (-9, 15, "right"),
    (-9, -23, "right"),
]


def _place_labels(fig, ax, points: list[tuple[float, float, str]]) -> None:
    """Label every point with its full name where it overlaps neither another label nor a point, inside the
    axes if it can; the first spot otherwise (the saved figure grows to fit, so no label is cut)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    renderer = FigureCanvasAgg(fig).get_renderer()
    area = ax.get_window_extent(renderer)
    dots = [
        Bbox.from_extents(px - 11, py - 11, px + 11, py + 11)
        for px, py in (ax.transData.transform((x, y)) for x, y, _ in points)
    ]  # a marker's extent, star included
    placed: list[Bbox] = []
    for x, y, name in sorted(points, key=lambda p: -p[1]):
        chosen = None
        for dx, dy, ha in LABEL_SPOTS:
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=8, zorder=5)
            box = text.get_window_extent(renderer).expanded(1.0, 1.15)
            clear = (
                area.contains(box.x0, box.y0)
                and area.contains(box.x1, box.y1)
                and not any(box.overlaps(other) for other in placed)
                and not any(box.overlaps(dot) for dot in dots)
            )
            if clear:
                chosen = box
                break
            text.remove()
        if chosen is None:  # nowhere clear: the first spot, drawn anyway
            dx, dy, ha = LABEL_SPOTS[0]
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, fontsize=8, zorder=5)
            chosen = text.get_window_extent(renderer)
        placed.append(chosen)


def _usd_formatter():
    from matplotlib.ticker import FuncFormatter

    def usd(value: float, _pos) -> str:
        if value <= 0:
            return "$0"
        digits = max(0, -int(f"{value:e}".split("e")[1]) + 2)  # two significant digits at most
        return "$" + f"{value:.{digits}f}".rstrip("0").rstrip(".")

    return FuncFormatter(usd)


def _log_cost_axis(ax, lo: float, hi: float) -> None:
    """Labelled ticks at 1-2-5 (or 1-3) steps, whatever the span: a span under a decade still gets values."""
    import math

    from matplotlib.ticker import LogLocator, NullFormatter

    decades = math.log10(hi / lo)
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0, 3.0) if decades <= 3.5 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(_usd_formatter())


def _svg(fig, name: str) -> str:
    """The figure as an inline <svg> element: text kept as text (searchable, small), and every id prefixed with
    `name`, since matplotlib numbers its ids per figure (figure_1, patch_1, ...) and a page holds several."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name, "font.family": "DejaVu Sans"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg") :].strip(), flags=re.S)  # RDF, unused
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", name)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    return re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
