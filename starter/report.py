"""The demo report: cost and quality before and after per service, every rollout with its reason, and an HTML page
with plots (cost and quality over time with rollout stages marked; the candidates' cost/quality frontier)."""

from __future__ import annotations

import html
from pathlib import Path

import psycopg

from simulator.outcomes import OutcomeTable
from storage.db import psycopg_url

BUCKET_S = 10


def build(database_url: str, table: OutcomeTable, path: Path) -> str:
    with psycopg.connect(psycopg_url(database_url)) as conn:
        series = {s: _series(conn, s) for s in table.services}
        rollouts = conn.execute(
            "SELECT service, rollout_id, from_version, to_version, state, reason, started_at, finished_at "
            "FROM rollouts ORDER BY started_at"
        ).fetchall()
        stages = conn.execute(
            "SELECT r.service, extract(epoch FROM v.judged_at), v.percent, v.verdict "
            "FROM rollout_verdicts v JOIN rollouts r USING (rollout_id) ORDER BY v.judged_at"
        ).fetchall()
        models = dict(conn.execute("SELECT service || '/' || version, spec->>'model' FROM config_versions").fetchall())
    lines = ["", "service        cost/request before -> after        quality before -> after"]
    for service, points in series.items():
        if len(points) < 4:
            lines.append(f"{service:<14} (too little traffic)")
            continue
        head, tail = points[: max(2, len(points) // 6)], points[-max(2, len(points) // 6) :]
        cost0, cost1 = _mean(p[1] for p in head), _mean(p[1] for p in tail)
        q0, q1 = _mean(p[2] for p in head), _mean(p[2] for p in tail)
        change = (cost1 / cost0 - 1) if cost0 else 0.0
        lines.append(
            f"{service:<14} ${cost0:.6f} -> ${cost1:.6f} ({change:+.0%})      {q0:.3f} -> {q1:.3f} ({q1 - q0:+.3f})"
        )
    lines.append("")
    lines.append(
        f"rollouts: {len(rollouts)} started, {sum(r[4] == 'promoted' for r in rollouts)} promoted, "
        f"{sum(r[4] == 'rolled_back' for r in rollouts)} rolled back"
    )
    for service, _rollout_id, src, dst, state, reason, _, _ in rollouts:
        lines.append(
            f"  {service}: {models.get(f'{service}/{src}', src)} -> {models.get(f'{service}/{dst}', dst)}: "
            f"{state} ({reason or 'in flight'})"
        )
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_html(text, series, stages, table))
    return text


def _series(conn: psycopg.Connection, service: str) -> list[tuple[float, float, float | None]]:
    """(bucket start epoch, cost per request, quality) per BUCKET_S seconds; quality None where no event of the
    bucket has a score yet (an evaluator may still be scoring them)."""
    rows = conn.execute(
        f"SELECT floor(extract(epoch FROM ts) / {BUCKET_S}) * {BUCKET_S} AS b, avg(cost_usd), avg(quality_score) "
        "FROM events WHERE service = %s GROUP BY b ORDER BY b",
        (service,),
    ).fetchall()
    return [(float(b), float(c or 0), None if q is None else float(q)) for b, c, q in rows]


def _mean(values) -> float:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else 0.0


def _line_chart(points: list[tuple[float, float]], marks: list[tuple[float, str]], title: str, fmt: str) -> str:
    width, height, pad = 640, 200, 40
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = 0.0, max(ys) * 1.1 or 1

    def sx(x: float) -> float:
        return pad + (x - x0) / ((x1 - x0) or 1) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad + (y0 - y) / ((y1 - y0) or 1) * (height - 2 * pad)

    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(points))
    marks_svg = "".join(
        f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{pad / 2}" y2="{height - pad}" stroke="{color}" '
        f'stroke-dasharray="3,3"/>'
        for x, color in marks
        if x0 <= x <= x1
    )
    return (
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{pad}" y="14" font-size="13">{html.escape(title)}</text>{marks_svg}'
        f'<path d="{path}" fill="none" stroke="#2a6fdb" stroke-width="1.5"/>'
        f'<text x="4" y="{sy(y1 / 1.1):.0f}" font-size="10">{fmt.format(y1 / 1.1)}</text>'
        f'<text x="4" y="{height - pad}" font-size="10">0</text></svg>'
    )


def _frontier_chart(table: OutcomeTable, service: str) -> str:
    models = table.models(service)
    width, height, pad = 320, 200, 40
    max_cost = max(m.cost_per_request for m in models) * 1.2 or 1
    dots = "".join(
        f'<circle cx="{pad + m.cost_per_request / max_cost * (width - 2 * pad):.1f}" '
        f'cy="{height - pad - m.quality * (height - 2 * pad):.1f}" r="5" fill="#d9534f"/>'
        f'<text x="{pad + m.cost_per_request / max_cost * (width - 2 * pad) + 7:.1f}" '
        f'y="{height - pad - m.quality * (height - 2 * pad):.1f}" font-size="10">{html.escape(m.model)}</text>'
        for m in models
    )
    return (
        f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<text x="{pad}" y="14" font-size="13">{html.escape(service)}: quality vs cost per request</text>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad / 2}" x2="{pad}" y2="{height - pad}" stroke="#999"/>{dots}</svg>'
    )


def _html(text: str, series, stages, table: OutcomeTable) -> str:
    colors = {"healthy": "#5cb85c", "degraded": "#d9534f", "inconclusive": "#f0ad4e"}
    sections = []
    for service, points in series.items():
        marks = [(float(t), colors.get(v, "#999")) for s, t, _, v in stages if s == service]
        sections.append(
            f"<h2>{html.escape(service)}</h2>"
            + _line_chart([(p[0], p[1]) for p in points], marks, "cost per request (USD)", "{:.5f}")
            + _line_chart([(p[0], p[2]) for p in points if p[2] is not None], marks, "quality", "{:.2f}")
            + _frontier_chart(table, service)
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>llm-auto-optimizer demo</title></head>"
        "<body style='font-family: sans-serif'><h1>llm-auto-optimizer demo report</h1>"
        "<p>Dashed lines: canary stage verdicts (green healthy, red degraded, orange inconclusive).</p>"
        f"<pre>{html.escape(text)}</pre>{''.join(sections)}</body></html>"
    )
