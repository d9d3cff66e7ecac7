"""The demo report (starter/report.py): the figures it states, and a page that says what a reader needs (titled
axes, legends, the floor, every service and rollout) and opens offline.

The page is built from a small hand-made run (three services, one promoted rollout, one rolled back, one service
that stayed put), and once from a real Postgres through `gather`, so the queries are checked too.
"""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from llm_optimizer.decision import Constraints
from llm_optimizer.payloads import CycleInput
from llm_optimizer.settings import CanaryThresholds
from simulator.fleet import Incident
from simulator.outcomes import ModelSummary, OutcomeTable
from starter import demo, report

T0 = 1_780_000_000.0
GOAL = report.Goal.of(
    CycleInput(
        service="any",
        time_scale=0.03,
        constraints=Constraints(quality_floor_ratio=0.8),
        canary=CanaryThresholds(min_samples=50, quality_decrease=0.2),
    )
)
CANDIDATES = {
    "mmlu": [
        ModelSummary("gpt-4-1106-preview", "openai", 0.806, 0.001225, 1000),
        ModelSummary("mixtral-8x7b-instruct-v0.1", "together", 0.681, 0.0000711, 1000),
        ModelSummary("claude-3-5-haiku-20241022", "anthropic", 0.702, 0.000410, 1000),
        ModelSummary("llama-3.1-70b-instruct-turbo", "together", 0.690, 0.000380, 1000),
        ModelSummary("gpt-4o-mini-2024-07-18", "openai", 0.655, 0.0000902, 1000),
    ],
    "gsm8k": [
        ModelSummary("gpt-4-1106-preview", "openai", 0.857, 0.003739, 500),
        ModelSummary("mixtral-8x7b-instruct-v0.1", "together", 0.638, 0.0000811, 500),
    ],
    "routerarena": [
        ModelSummary("gemini-2.0-flash-001", "google", 0.690, 0.0000475, 300),
        ModelSummary("claude-3-haiku-20240307", "anthropic", 0.523, 0.000176, 300),
    ],
}


def _series(cost_before, cost_after, q_before, q_after, switch_at, buckets=30, scored=100):
    """(bucket, cost, quality, scored) with the switch at bucket `switch_at`; quality missing in the first bucket."""
    points = []
    for i in range(buckets):
        after = i >= switch_at
        quality = None if i == 0 else (q_after if after else q_before)
        points.append((T0 + 10 * i, cost_after if after else cost_before, quality, 0 if i == 0 else scored))
    return points


def _verdicts(start, *verdicts):
    return tuple(
        report.ReportStageVerdict(stage, 0, percent, verdict, start + 9 * (stage + 1))
        for stage, (percent, verdict) in enumerate(verdicts)
    )


def fabricated() -> report.ReportData:
    return report.ReportData(
        goal=GOAL,
        series={
            "mmlu": _series(0.001225, 0.0000711, 0.806, 0.681, 20),
            "gsm8k": _series(0.003739, 0.003739, 0.857, 0.857, 99),
            "routerarena": _series(0.0000475, 0.0000475, 0.690, 0.690, 99),
        },
        candidates=CANDIDATES,
        start_models={
            "mmlu": "gpt-4-1106-preview",
            "gsm8k": "gpt-4-1106-preview",
            "routerarena": "gemini-2.0-flash-001",
        },
        live_models={
            "mmlu": "mixtral-8x7b-instruct-v0.1",
            "gsm8k": "gpt-4-1106-preview",
            "routerarena": "gemini-2.0-flash-001",
        },
        rollouts=[
            report.ReportRollout(
                "mmlu",
                "canary/mmlu/v2",
                "gpt-4-1106-preview",
                "mixtral-8x7b-instruct-v0.1",
                "promoted",
                "v2 serves all traffic",
                T0 + 60,
                T0 + 200,
                _verdicts(T0 + 60, (5, "healthy"), (25, "healthy"), (50, "healthy")),
            ),
            report.ReportRollout(
                "gsm8k",
                "canary/gsm8k/v2",
                "gpt-4-1106-preview",
                "mixtral-8x7b-instruct-v0.1",
                "rolled_back",
                "quality fell 25% (more than 20%)",
                T0 + 80,
                T0 + 110,
                (
                    report.ReportStageVerdict(0, 0, 5, "inconclusive", T0 + 89, ("too few requests to judge",)),
                    report.ReportStageVerdict(0, 1, 5, "degraded", T0 + 98, ("quality -25% (limit 20%)",)),
                ),
            ),
        ],
    )


def test_headline_states_savings_and_quality_kept_against_the_floor():
    points = _series(0.001, 0.0001, 0.8, 0.68, 15, buckets=30)
    h = report.headline("mmlu", points, 0.8)
    # First and last sixth (5 buckets each); the first bucket's missing quality is left out of the mean.
    assert h.cost_before == pytest.approx(0.001) and h.cost_after == pytest.approx(0.0001)
    assert h.savings == pytest.approx(0.9)
    assert h.quality_before == pytest.approx(0.8) and h.quality_after == pytest.approx(0.68)
    assert h.quality_kept == pytest.approx(0.85) and h.within_floor
    assert not report.headline("x", _series(1, 1, 0.8, 0.6, 15), 0.8).within_floor  # kept 75% < 80%


def test_quality_kept_weighs_scored_requests_and_is_not_stated_on_too_few():
    points = _series(0.001, 0.0001, 0.8, 0.68, 15, buckets=30)
    # The last bucket: one scored request, perfect. Weighted by scored requests it barely moves the mean.
    points[-1] = (points[-1][0], points[-1][1], 1.0, 1)
    h = report.headline("x", points, 0.8)
    assert h.quality_known and h.scored_after == 4 * 100 + 1
    assert h.quality_after == pytest.approx((0.68 * 400 + 1.0) / 401)
    # An evaluator that has scored a handful at the end: the quality kept is not claimed either way.
    lagging = [
        (b, c, q if i < 25 else (1.0 if i == 29 else None), n if i < 25 else int(i == 29))
        for i, (b, c, q, n) in enumerate(points)
    ]
    few = report.headline("x", lagging, 0.8)
    assert few.scored_after == 1 and not few.quality_known
    data = dataclasses.replace(fabricated(), series={**fabricated().series, "gsm8k": lagging})
    text = report.summary_text(data)
    assert "unknown: 1 requests scored (at least 30)" in text
    row = re.search(r"<tr><td>gsm8k</td>.*?</tr>", report.render_html(data)).group(0)
    assert "too few scored requests to tell (1; at least 30)" in html_text(row)
    assert report.headline("x", points[:3], 0.8) is None  # too little traffic to say anything


def test_the_frontier_keeps_only_models_nothing_beats_on_both():
    names = [m.model for m in report._frontier(CANDIDATES["mmlu"])]
    assert names == [
        "mixtral-8x7b-instruct-v0.1",
        "llama-3.1-70b-instruct-turbo",
        "claude-3-5-haiku-20241022",
        "gpt-4-1106-preview",
    ]


def test_the_page_says_what_a_reader_needs_and_opens_offline(tmp_path):
    data = fabricated()
    path = tmp_path / "demo.html"
    report.write(data, path)
    page = path.read_text()
    text = html_text(page)

    # Self-contained: no script, stylesheet or image fetched from anywhere.
    assert not re.search(r"<script|<link|<img|@import|url\((?!#)", page)
    # The inline charts refer to their own clip paths by id: one page, so every id once.
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)[:5]
    addresses = re.findall(r'([\w:]+)="(https?://[^"]*)"|(https?://)', page)
    assert all(attr.startswith("xmlns") for attr, _, bare in addresses if not bare), addresses  # namespaces only
    assert not any(bare for *_, bare in addresses), "an address outside an XML namespace declaration"
    assert len(page) < 600_000, f"{len(page):,} bytes"

    # The goal the loop was given.
    for phrase in (
        "balanced",
        "cost 0.6, quality 0.3, latency 0.1",
        "80% of each service's starting quality",
        "5% (9 s) → 25% (18 s) → 50% (27 s) → 100%",
        "at least 50 requests",
    ):
        assert phrase in text, phrase
    # Every chart titled, every axis titled, per service; legends name the floor and the verdicts.
    for service in data.services:
        assert f"{service}: cost and quality per request over time" in text
        assert f"{service}: the candidates' quality against cost" in text
    assert text.count("minutes since the fleet started sending traffic") == 3
    assert text.count("cost per request (USD)") == 3 and text.count("cost per request (USD, log scale)") == 3
    assert text.count("quality (mean score, 0 to 1)") == 3
    for legend in (
        "stage judged healthy",
        "stage judged degraded",
        "stage judged inconclusive",
        "rollout: promoted",
        "rollout: rolled back",
        "quality floor (0.645)",
        "starting model",
        "live at the end",
        "cost/quality frontier",
    ):
        assert legend in text, legend
    # Every candidate labelled with its full name in its service's chart.
    for models in CANDIDATES.values():
        for m in models:
            assert m.model in text
    # The headline: mmlu saved 94% and kept 84% of its quality, within the 80% floor.
    row = re.search(r"<tr><td>mmlu</td>.*?</tr>", page).group(0)
    assert "94%" in html_text(row) and "84%" in html_text(row) and "within" in html_text(row)
    # Every rollout with its verdict per stage.
    for r in data.rollouts:
        assert r.rollout_id in text and r.reason in text
    assert "5%: inconclusive" in text and "5% (extension 1): degraded" in text and "50%: healthy" in text


def test_the_summary_names_the_goal_and_every_rollout():
    text = report.summary_text(fabricated())
    assert "balanced strategy" in text and "quality floor 80%" in text
    assert "mmlu" in text and "within 80%" in text
    assert "gsm8k: gpt-4-1106-preview -> mixtral-8x7b-instruct-v0.1: rolled_back" in text


def test_gather_reads_a_run_from_postgres(database_url, tmp_path):
    start = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    rows = []
    for model, quality, cost in (("big", 0.9, 0.01), ("small", 0.8, 0.001)):
        for prompt in range(3):
            rows.append(
                {
                    "service": "qa",
                    "task": "qa",
                    "prompt_id": prompt,
                    "model": model,
                    "provider": "p",
                    "quality": quality,
                    "tokens_in": 10,
                    "tokens_out": 5,
                    "cost_usd": cost,
                }
            )
    table = OutcomeTable(pl.DataFrame(rows))
    with psycopg.connect(database_url, autocommit=True) as conn:
        for version, model in (("v1", "big"), ("v2", "small")):
            conn.execute(
                "INSERT INTO config_versions (service, version, spec, fingerprint, created_by) "
                "VALUES ('qa', %s, %s, %s, 'test')",
                (version, psycopg.types.json.Jsonb({"model": model}), version),
            )
        conn.execute("INSERT INTO config_assignments (service, active_version, updated_by) VALUES ('qa', 'v2', 't')")
        conn.execute(
            "INSERT INTO rollouts (rollout_id, service, from_version, to_version, strategy, state, reason, "
            "started_at, finished_at) VALUES ('canary/qa/v2', 'qa', 'v1', 'v2', 'balanced', 'promoted', 'ok', %s, %s)",
            (start + timedelta(seconds=40), start + timedelta(seconds=90)),
        )
        for stage, percent in enumerate((5, 25, 50)):
            conn.execute(
                "INSERT INTO rollout_verdicts (rollout_id, stage, attempt, percent, verdict, reasons, metrics, "
                "judged_at) VALUES ('canary/qa/v2', %s, 0, %s, 'healthy', '[]', '{}', %s)",
                (stage, percent, start + timedelta(seconds=50 + 10 * stage)),
            )
        for i in range(12):
            model, cost = ("big", 0.01) if i < 6 else ("small", 0.001)
            conn.execute(
                "INSERT INTO events (event_id, ts, service, model, provider, latency_ms, cost_usd, status, "
                "quality_score, source) VALUES (%s, %s, 'qa', %s, 'p', 100, %s, 'ok', %s, 'test')",
                (uuid.uuid4().hex, start + timedelta(seconds=10 * i + 1), model, cost, 0.9 if i < 6 else 0.8),
            )
    data = report.gather(database_url, table, GOAL)
    assert data.start_models == {"qa": "big"} and data.live_models == {"qa": "small"}
    assert [p[1] for p in data.series["qa"]] == [0.01] * 6 + [0.001] * 6
    (rollout,) = data.rollouts
    assert (rollout.from_model, rollout.to_model, rollout.state) == ("big", "small", "promoted")
    assert [(v.percent, v.verdict) for v in rollout.verdicts] == [(5, "healthy"), (25, "healthy"), (50, "healthy")]
    assert rollout.started_at - data.t0 == pytest.approx(40)
    summary = report.build(database_url, table, tmp_path / "r.html", GOAL)
    assert "qa: big -> small: promoted (ok); 5% healthy, 25% healthy, 50% healthy" in summary
    assert "canary/qa/v2" in (tmp_path / "r.html").read_text()


def html_text(page: str) -> str:
    """The text a reader sees: tags dropped, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_a_service_without_traffic_is_said_so_not_dropped(tmp_path):
    data = fabricated()
    quiet = report.ReportData(
        goal=data.goal,
        series={**data.series, "quiet": []},
        candidates={**data.candidates, "quiet": CANDIDATES["gsm8k"]},
        start_models={**data.start_models, "quiet": "gpt-4-1106-preview"},
        live_models={**data.live_models, "quiet": "gpt-4-1106-preview"},
        rollouts=data.rollouts,
    )
    text = html_text(report.render_html(quiet))
    assert "quiet: cost and quality per request over time" in text
    assert re.search(r"quiet gpt-4-1106-preview → gpt-4-1106-preview too little traffic to tell", text)
    assert re.search(r"quiet +\(too little traffic\)", report.summary_text(quiet))


def test_injected_incidents_are_listed_and_shaded_on_the_services_they_hit(tmp_path):
    # In the fabricated run mmlu moves from gpt-4 (openai) to mixtral (together) at T0 + 200 s.
    early = report.IncidentNote("latency spike: openai answers 2.5x slower", 120.0, 180.0, provider="openai")
    late = report.IncidentNote("latency spike: openai answers 3x slower", 240.0, 270.0, provider="openai")
    burst = report.IncidentNote(
        "error burst: 20% of routerarena's requests fail", 225.0, 240.0, services=("routerarena",)
    )
    data = dataclasses.replace(fabricated(), incidents=[early, late, burst])
    # Hit: the services an openai model served when it started (gsm8k rolled back to gpt-4 before either).
    assert [s for s in data.services if report.hits(data, early, s)] == ["mmlu", "gsm8k"]
    assert [s for s in data.services if report.hits(data, late, s)] == ["gsm8k"]
    assert [s for s in data.services if report.hits(data, burst, s)] == ["routerarena"]
    path = tmp_path / "demo.html"
    report.write(data, path)
    text = html_text(path.read_text())
    assert "Incidents injected" in text
    assert "latency spike: openai answers 2.5x slower, minutes 2.0 to 3.0 (mmlu, gsm8k)" in text
    assert "latency spike: openai answers 3x slower, minutes 4.0 to 4.5 (gsm8k)" in text
    assert "error burst: 20% of routerarena's requests fail, minutes 3.8 to 4.0 (routerarena)" in text
    # Each chart's legend names the incidents of its service only.
    assert text.count("incident: latency spike: openai answers 2.5x slower") == 2
    assert text.count("incident: latency spike: openai answers 3x slower") == 1
    assert text.count("incident: error burst: 20% of routerarena's requests fail") == 1
    assert "incidents injected: 3" in report.summary_text(data)


def test_the_demo_notes_an_incident_by_what_it_targets():
    spike = demo._note(Incident("latency_spike", 165.0, 210.0, target="openai", factor=2.5))
    burst = demo._note(Incident("error_burst", 225.0, 240.0, target="routerarena", factor=0.2))
    assert (spike.text, spike.provider, spike.services) == ("latency spike: openai answers 2.5x slower", "openai", ())
    assert (burst.text, burst.services) == ("error burst: 20% of routerarena's requests fail", ("routerarena",))
