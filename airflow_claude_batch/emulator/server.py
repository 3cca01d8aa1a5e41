"""Run the emulator in a background thread of the current process (tests, the demo, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from airflow_claude_batch.emulator.config import KEEP_ALIVE_SECONDS, EmulatorConfig
from airflow_claude_batch.emulator.service.app import create_app
from airflow_claude_batch.emulator.store.engine import Clock

_START_TIMEOUT_SECONDS = 10.0


class EmulatorServer:
    """An emulator listening on a port of its own, served by uvicorn in a daemon thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with EmulatorServer(EmulatorConfig(api_key="test-key")) as server:
            client = anthropic.Anthropic(base_url=server.base_url, api_key="test-key")

    :param config: the emulator's settings; ``port=0`` binds a free port.
    :param clock: returns the current time in POSIX seconds; tests may pass a manual clock.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, clock: Clock = time.time) -> None:
        self.config = config or EmulatorConfig()
        self.app = create_app(self.config, clock=clock)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        """The URL clients use, e.g. ``http://127.0.0.1:54321`` (no trailing slash)."""
        if self._port is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://{self.config.host}:{self._port}"

    def start(self) -> EmulatorServer:
        """Bind the port, start serving and return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self._port = sock.getsockname()[1]
        uvicorn_config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        self._server = uvicorn.Server(uvicorn_config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="claude-batch-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start on {self.config.host}:{self._port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_START_TIMEOUT_SECONDS)
        self._server = None
        self._thread = None
        self._port = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where: Any = self.base_url if self._port is not None else "stopped"
        return f"EmulatorServer({where})"
