"""Database access: engines and the migrations that run on start."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL, with the psycopg 3 driver that this project installs."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"database url {url!r}: must start with postgresql://")


def psycopg_url(url: str) -> str:
    """The same database as a libpq URL, for psycopg's own connections (COPY, LISTEN)."""
    return "postgresql://" + sqlalchemy_url(url).removeprefix("postgresql+psycopg://")


def connect(url: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(psycopg_url(url), **kwargs)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_size=pool_size, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["url"] = sqlalchemy_url(url)
    return cfg


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database to `revision` (idempotent; concurrent starters serialize on Alembic's version table)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
