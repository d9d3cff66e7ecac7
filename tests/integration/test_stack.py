"""The local stack manager: idempotent up, data kept across restarts, clear errors, no process left behind."""

from __future__ import annotations

import socket

import psycopg
import pytest

from devstack import LocalStack
from devstack.processes import package_binary, pid_alive, venv_binary
from llm_optimizer.errors import BinaryNotFound, PortInUse
from llm_optimizer.settings import StackSettings


def fresh_settings(tmp_path) -> StackSettings:
    return LocalStack.on_free_ports(tmp_path / "data").settings


def test_up_is_idempotent_keeps_postgres_data_and_down_leaves_nothing(tmp_path):
    stack = LocalStack(fresh_settings(tmp_path))
    try:
        first = {s.name: s.pid for s in stack.up()}
        assert all(first.values()), first
        again = {s.name: s.pid for s in stack.up()}
        assert again == first, "a second `up` must not restart running servers"

        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")

        stack.down()
        assert not any(pid_alive(pid) for pid in first.values()), "a server survived `down`"
        assert not any(s.running for s in stack.status())

        stack.up()
        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (42,)

        # `make clean`: stopped and deleted, including Postgres's data where it was moved out of a private folder
        # (pytest's temporary folders are private: as root, it was), so the next start is empty.
        relocated = stack.postgres.pgdata.is_symlink()
        removed = stack.wipe()
        assert not any(s.running for s in stack.status())
        assert stack.settings.data_dir in removed and not stack.settings.data_dir.exists()
        assert len(removed) == (2 if relocated else 1) and all(not p.exists() for p in removed)
        stack.up()
        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT to_regclass('kept')").fetchone() == (None,)
    finally:
        stack.down()
    assert not any(s.running for s in stack.status())


def test_a_taken_port_is_named_with_the_setting_to_change(tmp_path):
    settings = fresh_settings(tmp_path)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", settings.kafka_port))
    blocker.listen()
    stack = LocalStack(settings)
    try:
        with pytest.raises(PortInUse) as err:
            stack.up()
        message = str(err.value)
        assert str(settings.kafka_port) in message and "OPTIMIZER_STACK__KAFKA_PORT" in message
        # A failed `up` does not leave the servers it had already started.
        assert not any(s.running for s in stack.status())
    finally:
        blocker.close()
        stack.down()


def test_missing_binaries_say_how_to_install_them():
    with pytest.raises(BinaryNotFound, match="servers extra"):
        venv_binary("no-such-server-binary")
    with pytest.raises(BinaryNotFound, match="not installed"):
        package_binary("no_such_package_xyz", "bin/server")
