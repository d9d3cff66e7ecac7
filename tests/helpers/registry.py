"""Registering a service with the config registry (and its live traffic), for tests of the API, the client and
the decision's peers."""

from __future__ import annotations

import psycopg

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.resolution import Assignment
from simulator.samples import sample_events
from storage import configs_repo
from storage.events_repo import land_events


def register(database_url: str, service: str, canary_percent: float = 0.0) -> None:
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o-mini", provider="openai"), parent_version="v1")
        canary = {"canary_version": "v2", "canary_percent": canary_percent} if canary_percent else {}
        configs_repo.set_assignment(conn, Assignment(service=service, active_version="v1", **canary), updated_by="t")


def live_on_gpt_4o(database_url: str, service: str = "chat", requests: int = 300) -> None:
    """`service` live on v1 (gpt-4o, the only version), with `requests` requests it served at $0.01 each."""
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.set_assignment(conn, Assignment(service=service, active_version="v1"), updated_by="t")
        update = {"model": "gpt-4o", "provider": "openai", "config_version": "v1", "cost_usd": 0.01}
        live = [e.model_copy(update=update) for e in sample_events(requests, services=(service,))]
        land_events(conn, live, source="test")
