"""Registering a service with the config registry, for tests of the API and the client."""

from __future__ import annotations

import psycopg

from llm_optimizer.configs import ConfigSpec
from llm_optimizer.resolution import Assignment
from storage import configs_repo


def register(database_url: str, service: str, canary_percent: float = 0.0) -> None:
    with psycopg.connect(database_url) as conn:
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o", provider="openai"))
        configs_repo.register(conn, service, ConfigSpec(model="gpt-4o-mini", provider="openai"), parent_version="v1")
        canary = {"canary_version": "v2", "canary_percent": canary_percent} if canary_percent else {}
        configs_repo.set_assignment(conn, Assignment(service=service, active_version="v1", **canary), updated_by="t")
