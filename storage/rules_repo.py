"""Rules as data in Postgres (`policies` rows of kind rule): loaded from YAML, listed, read by the decide activity."""

from __future__ import annotations

import psycopg
from psycopg.types.json import Jsonb

from llm_optimizer.rules import Rule


def save(conn: psycopg.Connection, rules: list[Rule], service: str | None) -> None:
    """Insert or replace each rule by name (for one service, or for every service when `service` is None)."""
    for rule in rules:
        definition = rule.model_dump(mode="json", by_alias=True, exclude={"name", "priority", "enabled"})
        conn.execute(
            "INSERT INTO policies (name, kind, service, definition, priority, enabled) "
            "VALUES (%s, 'rule', %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET service = EXCLUDED.service, "
            "definition = EXCLUDED.definition, priority = EXCLUDED.priority, enabled = EXCLUDED.enabled, "
            "updated_at = now()",
            (rule.name, service, Jsonb(definition), rule.priority, rule.enabled),
        )


def for_service(conn: psycopg.Connection, service: str) -> list[Rule]:
    """The enabled rules for `service`: its own and those of every service."""
    rows = conn.execute(
        "SELECT name, definition, priority FROM policies WHERE kind = 'rule' AND enabled "
        "AND (service IS NULL OR service = %s) ORDER BY name",
        (service,),
    ).fetchall()
    return [Rule.model_validate({**spec, "priority": priority, "name": name}) for name, spec, priority in rows]


def delete(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM policies WHERE kind = 'rule' AND name = %s", (name,)).rowcount == 1
