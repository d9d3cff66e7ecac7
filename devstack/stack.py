"""Start, stop and inspect the local stack as one unit (`make up`, `make down`, `make status`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devstack import privileges
from devstack.components import (
    Component,
    ComponentStatus,
    KafkaBroker,
    PostgresServer,
    TemporalServer,
    WorkerProcess,
)
from devstack.processes import free_port
from llm_optimizer.errors import StackError
from llm_optimizer.settings import StackSettings


class LocalStack:
    """Postgres, Temporal and Kafka on loopback, with their data, logs and pid files under `data_dir`.

    `up()` is idempotent: a server that already runs is left alone. `down()` stops every server it started.
    """

    def __init__(self, settings: StackSettings | None = None, *, temporal_extra_args: list[str] | None = None):
        self.settings = settings or StackSettings()
        self.postgres = PostgresServer(self.settings)
        self.temporal = TemporalServer(self.settings, extra_args=temporal_extra_args)
        self.kafka = KafkaBroker(self.settings)
        self.worker = WorkerProcess(self.settings)

    @classmethod
    def on_free_ports(cls, data_dir: Path, *, temporal_extra_args: list[str] | None = None) -> LocalStack:
        """A stack in `data_dir` on ports nobody uses: for tests and benchmarks beside a running `make up`."""
        settings = StackSettings(
            data_dir=data_dir,
            postgres_port=free_port(),
            temporal_port=free_port(),
            temporal_ui_port=free_port(),
            kafka_port=free_port(),
        )
        return cls(settings, temporal_extra_args=temporal_extra_args)

    @property
    def components(self) -> list[Component]:
        """The servers, then the worker; `up` starts the servers, `down` stops everything."""
        return [self.postgres, self.temporal, self.kafka, self.worker]

    @property
    def servers(self) -> list[Component]:
        return [self.postgres, self.temporal, self.kafka]

    def start_worker(self, env: dict[str, str]) -> None:
        self.worker.env = env
        self.worker.up()

    def up(self) -> list[ComponentStatus]:
        try:
            for component in self.servers:
                component.up()
        except BaseException:
            self.down()
            raise
        return self.status()

    def down(self) -> None:
        errors = []
        for component in reversed(self.components):
            try:
                component.down()
            except Exception as exc:  # keep stopping the others, report at the end
                errors.append(f"{component.name}: {exc}")
        if errors:
            raise StackError("could not stop: " + "; ".join(errors))

    def wipe(self) -> list[Path]:
        """Stop everything and delete the stack's data (`make clean`): its data folder and, where Postgres's data
        was moved out of a private folder (root: devstack/privileges.py), that relocated folder too, which the next
        start would otherwise take up again. Returns what was removed."""
        self.down()
        removed = []
        link = self.postgres.pgdata
        if link.is_symlink():
            relocated = Path(os.path.realpath(link)).parent
            if relocated.parent == privileges.HOME and relocated.is_dir():  # only a folder the stack made
                shutil.rmtree(relocated)
                removed.append(relocated)
        if self.settings.data_dir.exists():
            shutil.rmtree(self.settings.data_dir)
            removed.append(self.settings.data_dir)
        return removed

    def status(self) -> list[ComponentStatus]:
        """The servers, and the worker when one was started."""
        shown = [*self.servers, *([self.worker] if self.worker.pid() else [])]
        return [component.status() for component in shown]

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def temporal_address(self) -> str:
        return self.temporal.address

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.address

    @property
    def temporal_ui_url(self) -> str:
        return self.temporal.ui_url
