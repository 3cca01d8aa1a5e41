"""Helpers the benchmarks share: memory figures from ``/proc``, a free loopback port, an emulator process.

``bench/compare/run_case.py`` loads this file by path with the interpreter of the anchors environment
too, where ``bench`` is not a package; so it imports the standard library only at module level.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

API_KEY = "bench-key"
STARTUP_SECONDS = 30.0
STOP_SECONDS = 30.0


def status_kib(field: str, pid: int | str = "self") -> int:
    """Return one figure of ``/proc/<pid>/status``, in KiB (Linux).

    :param field: the figure's name without its colon: ``VmRSS`` (resident now), ``VmHWM`` (peak).
    :param pid: the process to read; this one by default.
    :raises RuntimeError: when the status file has no such figure.
    """
    status = Path(f"/proc/{pid}/status")
    for line in status.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in {status}")


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 at this moment (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A named tuple, not a dataclass: a dataclass needs its module in ``sys.modules``, and run_case.py
# loads this file by path without putting it there.
class RunningEmulator(NamedTuple):
    """An emulator started by :func:`emulator_process`.

    :param base_url: where it listens, ``http://127.0.0.1:<port>``.
    :param pid: its process id, to read its memory or CPU time from ``/proc``.
    """

    base_url: str
    pid: int


@contextmanager
def emulator_process(
    *, api_key: str = API_KEY, speed: float | None = 1e9, extra_args: Sequence[str] = ()
) -> Iterator[RunningEmulator]:
    """Start ``claude-batch-emulator`` on a free loopback port, wait until it answers, stop it at exit.

    It runs as the console script of this interpreter's environment, in a process of its own, so its
    work and memory are not the benchmark's.

    :param api_key: the only key it accepts.
    :param speed: requests it processes per second in each batch; ``None`` keeps its default pace.
    :param extra_args: more of its command-line options, e.g. ``("--error-rate", "0.02")``; without
        ``--rpm-limit`` / ``--queue-limit`` those limits are off.
    :raises RuntimeError: when it does not answer within ``STARTUP_SECONDS``.
    """
    port = free_port()
    command = [str(Path(sys.executable).parent / "claude-batch-emulator"), "--port", str(port)]
    command += ["--api-key", api_key, "--log-level", "warning"]
    if speed is not None:
        command += ["--speed", repr(speed)]
    for flag in ("--rpm-limit", "--queue-limit"):
        if flag not in extra_args:
            # The emulator enforces the API's tier-1 limits unless told; a benchmark measures the
            # product, so its limits are off unless the benchmark sets them.
            command += [flag, "0"]
    server = subprocess.Popen([*command, *extra_args])
    emulator = RunningEmulator(base_url=f"http://127.0.0.1:{port}", pid=server.pid)
    try:
        _wait_until_answering(emulator.base_url)
        yield emulator
    finally:
        server.terminate()
        server.wait(timeout=STOP_SECONDS)


def _wait_until_answering(base_url: str) -> None:
    import httpx  # here, not at the top: see the module's docstring

    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/_emulator/stats", timeout=5).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"the emulator at {base_url} did not answer within {STARTUP_SECONDS:g} s")


def create_ended_batch(base_url: str, body: bytes) -> str:
    """Create a batch from a whole create ``body``, wait for its end, warm its results; return its id.

    The first results download renders the lines on the server, so it is done here, outside any
    measurement, and every reader measured afterwards sees the same server.
    """
    import httpx

    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=600) as client:
        batch = client.post("/v1/messages/batches", content=body).raise_for_status().json()
        while batch["processing_status"] != "ended":
            time.sleep(0.2)
            batch = client.get(f"/v1/messages/batches/{batch['id']}").raise_for_status().json()
        with client.stream("GET", batch["results_url"], headers={"accept": "application/binary"}) as stream:
            for _ in stream.iter_raw():
                pass
    return batch["id"]
