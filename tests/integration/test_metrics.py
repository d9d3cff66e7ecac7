"""The worker serves the product's metrics and the Temporal SDK's on Prometheus endpoints."""

from __future__ import annotations

import os
import re
import signal

import httpx
from helpers.dashboards import dashboard_metrics
from helpers.servers import produce, settings_for, start_worker_process, wait_for

from activities.ingestion import ensure_topic
from devstack.processes import free_port
from simulator.samples import sample_events
from starter.ingest import start_ingestion


def scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


async def test_metrics_endpoints_show_ingestion_and_the_sdk(stack, database_url, temporal_client, tmp_path, repo_root):
    ports = {"port": free_port(), "temporal_port": free_port()}
    topic = "metrics-events"
    settings = settings_for(stack, database_url, metrics=ports, kafka={"topic": topic, "consume_run_s": 2})
    await ensure_topic(settings, topic)
    good = [e.model_dump_json().encode() for e in sample_events(200, seed=8)]
    await produce(stack.kafka_bootstrap, topic, [*good, b"{not json"])
    worker = start_worker_process(settings, tmp_path / "worker.log")
    product = f"http://127.0.0.1:{ports['port']}/metrics"
    sdk = f"http://127.0.0.1:{ports['temporal_port']}/metrics"
    try:
        await start_ingestion(temporal_client, settings, topic)
        lag_line = rf'optimizer_consumer_lag{{partition="\d+",topic="{topic}"}} (\S+)'
        text = await wait_for(
            lambda: (
                (t := scrape(product))
                and 'optimizer_events_ingested_total{source="kafka"} 200.0' in t
                and (lags := re.findall(lag_line, t))  # set once a batch's offsets are committed
                and all(float(lag) == 0 for lag in lags)  # the backlog is drained
                and t
            ),
            90,
            "200 ingested events and no consumer lag in the metrics",
        )
        assert 'optimizer_dead_letters_total{reason="not_json",source="kafka"} 1.0' in text
        sdk_text = await wait_for(lambda: scrape(sdk), 30, "the SDK metrics")
        plotted = {m for m in dashboard_metrics(repo_root) if m.startswith("temporal_")}
        assert plotted and all(f"{m}_bucket" in sdk_text or f"{m}{{" in sdk_text for m in plotted), plotted
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
