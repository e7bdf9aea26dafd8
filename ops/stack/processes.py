"""Start, find and stop background processes recorded by pid files under the run folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tickwatch.settings import Settings, settings_to_env


def tickwatch_command() -> list[str]:
    """How to run `tickwatch`: the installed script, else this interpreter's module."""
    exe = shutil.which("tickwatch")
    return [exe] if exe else [sys.executable, "-m", "tickwatch"]


def child_env(settings: Settings, log_level: str | None = None) -> dict[str, str]:
    """The settings as TICKWATCH_* variables plus the runtime variables the services expect, so
    every service a command starts sees exactly the same ones."""
    env = {
        **settings_to_env(settings),
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TICKWATCH_RUN_DIR": str(settings.run_dir.resolve()),
    }
    if log_level:
        env["TICKWATCH_LOG_LEVEL"] = log_level
    return env


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child still answers kill(0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


class ManagedProcess:
    """A background process with a pid file and a log file in `run_dir`."""

    def __init__(self, name: str, run_dir: Path) -> None:
        self.name = name
        self.pid_file = run_dir / "pids" / f"{name}.pid"
        self.log_file = run_dir / "logs" / f"{name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(
        self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start detached (own session, so Ctrl-C of the caller does not reach it)."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL after `timeout_s`; False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill9(self) -> None:
        """Kill at once, as a crash would."""
        pid = self.pid()
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
            for _ in range(50):
                _reap(pid)
                if not pid_alive(pid):
                    break
                time.sleep(0.05)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    """Poll `check` until it is true or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()
