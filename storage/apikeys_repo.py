"""API keys in Postgres: created (the secret returned once), looked up by hash, revoked."""

from __future__ import annotations

import psycopg

from llm_optimizer.auth import NewKey, Principal, Role, generate_key, hash_key
from llm_optimizer.errors import ValidationFailed


def create(conn: psycopg.Connection, name: str, role: Role | str, *, rate_limit_per_s: float | None = None) -> NewKey:
    try:
        role = Role(role)
    except ValueError:
        raise ValidationFailed(
            f"role = {role!r}: not one of {', '.join(r.value for r in Role)}", field="role", value=role
        ) from None
    if rate_limit_per_s is not None and not rate_limit_per_s > 0:
        raise ValidationFailed(f"rate_limit_per_s = {rate_limit_per_s!r}: must be positive", field="rate_limit_per_s")
    new = generate_key()
    conn.execute(
        "INSERT INTO api_keys (key_id, key_hash, name, role, rate_limit_per_s) VALUES (%s, %s, %s, %s, %s)",
        (new.key_id, new.key_hash, name, role.value, rate_limit_per_s),
    )
    return new


def authenticate(conn: psycopg.Connection, key: str, default_rate_per_s: float) -> Principal | None:
    """The principal of a live key, or None for an unknown or revoked one."""
    row = conn.execute(
        "SELECT key_id, name, role, rate_limit_per_s FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
        (hash_key(key),),
    ).fetchone()
    if row is None:
        return None
    key_id, name, role, rate = row
    return Principal(key_id=key_id, name=name, role=Role(role), rate_limit_per_s=rate or default_rate_per_s)


def revoke(conn: psycopg.Connection, key_id: str) -> bool:
    cur = conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL", (key_id,))
    return cur.rowcount == 1


def list_keys(conn: psycopg.Connection) -> list[dict]:
    rows = conn.execute(
        "SELECT key_id, name, role, rate_limit_per_s, created_at, revoked_at FROM api_keys ORDER BY created_at"
    ).fetchall()
    columns = ("key_id", "name", "role", "rate_limit_per_s", "created_at", "revoked_at")
    return [dict(zip(columns, row, strict=True)) for row in rows]
