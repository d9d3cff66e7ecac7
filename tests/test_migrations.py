"""Migrations: an empty database goes to head and back to base, and head matches storage/schema.py."""

from __future__ import annotations

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from storage.db import downgrade, migrate, sqlalchemy_url
from storage.schema import metadata


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {r[0] for r in rows}


def test_empty_database_upgrades_to_head_and_back_down(database_url):
    # The fixture already migrated to head.
    assert set(metadata.tables) <= tables(database_url)
    downgrade(database_url, "base")
    assert tables(database_url) <= {"alembic_version"}
    migrate(database_url)
    migrate(database_url)  # idempotent
    assert set(metadata.tables) <= tables(database_url)


def test_migrated_schema_matches_the_tables_in_code(database_url):
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_server_default": True}), metadata)
    engine.dispose()
    assert diff == [], diff
