"""Start and stop the long-running processes of a check, each in its own process group.

Every process is recorded in a pid file as it starts, so the shell wrapper's ``trap`` can still end it
if the Python driver itself is killed; :meth:`ProcessGroup.stop_all` ends them in reverse order of
start, politely first and by force after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.airflow_api import CheckFailed

STOP_GRACE_SECONDS = 20.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, *, process: Service | None = None) -> None:
    """Wait until something accepts connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            process.check_alive()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise CheckFailed(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a log file (empty if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Service:
    """One long-running process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM

    def check_alive(self) -> None:
        """Raise :class:`CheckFailed`, with the end of its log, if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise CheckFailed(
                f"{self.name} exited with code {code}; end of {self.log_path}:\n{tail(self.log_path)}"
            )

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Signal the process group, wait up to ``grace`` seconds, then kill what is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Children (Celery pool processes, task supervisors) may outlive their parent: end the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)


class ProcessGroup:
    """The processes of one check; use as a context manager so they end whatever happens.

    :param logs: folder of the processes' log files.
    :param pid_file: where each process group id is appended, for the shell wrapper's trap.
    """

    def __init__(self, logs: Path, pid_file: Path) -> None:
        self.logs = logs
        self.pid_file = pid_file
        self.services: list[Service] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Service:
        """Start ``argv`` in a new session with its output in ``{logs}/{name}.log``."""
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self.pid_file.open("a") as pids:
            pids.write(f"{popen.pid}\n")
        service = Service(name, popen, log_path, stop_signal)
        self.services.append(service)
        return service

    def check_alive(self) -> None:
        for service in self.services:
            service.check_alive()

    def stop_all(self) -> None:
        """Stop every process, the last started first."""
        for service in reversed(self.services):
            service.stop()
        self.services.clear()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def run(argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, timeout: float, what: str) -> float:
    """Run a command to completion with its output appended to ``log_path``; return its seconds."""
    started = time.monotonic()
    with log_path.open("ab") as log:
        try:
            completed = subprocess.run(
                list(argv),
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CheckFailed(f"{what} did not finish within {timeout:.0f} s; see {log_path}") from exc
    if completed.returncode != 0:
        raise CheckFailed(
            f"{what} failed with code {completed.returncode}; end of {log_path}:\n{tail(log_path)}"
        )
    return time.monotonic() - started
