"""This machine: logging, root and sudo, apt, the unprivileged Elasticsearch user, commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PREFIX = "[stack]"


class StackError(RuntimeError):
    """A step of the stack failed; the message says what and, where known, what to do."""


def log(message: str) -> None:
    print(f"{PREFIX} {message}", file=sys.stderr, flush=True)


def is_root() -> bool:
    return os.geteuid() == 0


def can_be_root() -> bool:
    """Root, or passwordless sudo."""
    if is_root():
        return True
    if shutil.which("sudo") is None:
        return False
    return subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0


def as_root(argv: Sequence[str]) -> list[str]:
    """argv run as root: as it is when root, else through `sudo -n`."""
    if is_root():
        return list(argv)
    if shutil.which("sudo") is None:
        raise StackError(f"need root (or passwordless sudo) for: {' '.join(argv)}")
    return ["sudo", "-n", *argv]


def run(
    argv: Sequence[str], *, capture_output: bool = False, input: str | None = None, timeout: int | None = None
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text input and output, and no exception for the exit status."""
    return subprocess.run(
        list(argv), capture_output=capture_output, input=input, timeout=timeout, text=True, check=False
    )


def output(argv: Sequence[str]) -> str:
    """stdout and stderr of a command together ('' when it cannot be run)."""
    try:
        done = run(argv, capture_output=True, timeout=60)
    except OSError:
        return ""
    return done.stdout + done.stderr


class Apt:
    """apt-get install, with one `apt-get update` per process."""

    updated = False

    @classmethod
    def install(cls, *packages: str) -> None:
        if shutil.which("apt-get") is None:
            raise StackError(f"apt-get not available; please install: {' '.join(packages)}")
        if not cls.updated:
            log("apt-get update")
            run(as_root(["apt-get", "update", "-qq"]), capture_output=True)
            cls.updated = True
        log(f"apt-get install {' '.join(packages)}")
        command = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", *packages]
        if run(as_root(command), capture_output=True).returncode != 0:
            raise StackError(f"apt-get install {' '.join(packages)} failed")


def need_command(command: str, package: str) -> str:
    """The path of a command, installing its Debian package when it is missing."""
    found = shutil.which(command)
    if found is None:
        Apt.install(package)
        found = shutil.which(command)
    if found is None:
        raise StackError(f"{command} not found, even after installing {package}")
    return found


def as_user(user: str, argv: Sequence[str]) -> list[str]:
    """argv run as the Elasticsearch user when root (Elasticsearch refuses root), else as it is."""
    return ["runuser", "-u", user, "--", *argv] if is_root() else list(argv)


def ensure_user(user: str) -> None:
    """Create the unprivileged system user when root and it does not exist yet."""
    if not is_root() or run(["id", "-u", user], capture_output=True).returncode == 0:
        return
    log(f"creating system user '{user}' (Elasticsearch refuses to run as root)")
    command = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
    if run([*command, "--shell", "/usr/sbin/nologin", user]).returncode != 0:
        raise StackError(f"could not create the user {user}")


def give_to(user: str, *paths: Path) -> None:
    """chown -R user:user on the paths (when root)."""
    if is_root() and paths and run(["chown", "-R", f"{user}:{user}", *map(str, paths)]).returncode != 0:
        raise StackError(f"chown -R {user} failed on {' '.join(map(str, paths))}")


def user_can_enter(user: str, folder: Path) -> bool:
    return run(as_user(user, ["test", "-x", str(folder)]), capture_output=True).returncode == 0


def ensure_traversable(user: str, folder: Path) -> None:
    """Let the user reach a folder under /root (mode 700): o+x (traverse, no listing) on the ancestors
    that block it, and on the folder itself."""
    if not is_root() or user_can_enter(user, folder):
        return
    for parent in reversed(folder.parents):
        if parent.is_dir() and not user_can_enter(user, parent):
            log(f"granting traverse permission (chmod o+x) on {parent} so '{user}' can reach {folder}")
            parent.chmod(parent.stat().st_mode | 0o001)
    folder.chmod(folder.stat().st_mode | 0o001)
    if not user_can_enter(user, folder):
        raise StackError(f"user '{user}' cannot access {folder}; set STACK_HOME elsewhere")


def pid_alive(pid: int) -> bool:
    """The process runs: it exists and is not a zombie (a node killed with -9 is one until its new
    parent, init, reaps it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill -0
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_pid(pidfile: Path) -> int | None:
    """The pid in a pid file when that process is alive, else None."""
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    if not text.isdigit():
        return None
    pid = int(text)
    return pid if pid_alive(pid) else None
