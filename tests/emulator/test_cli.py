"""The ``claude-batch-emulator`` command: its flags and a real run of the console script."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from airflow_claude_batch.emulator.cli import build_parser, config_from_args, main
from tests.emulator.builders import headers


def test_flags_become_the_config():
    args = build_parser().parse_args(
        [
            "--port", "9999", "--speed", "50", "--start-delay", "1.5", "--window-seconds", "600",
            "--error-rate", "0.1", "--api-key", "local-key", "--seed", "4",
        ]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.host, config.port, config.speed, config.start_delay) == ("127.0.0.1", 9999, 50.0, 1.5)
    assert (config.window_seconds, config.error_rate, config.api_key, config.seed) == (
        600.0,
        0.1,
        "local-key",
        4,
    )


def test_defaults_listen_on_loopback_with_a_full_window():
    config = config_from_args(build_parser().parse_args([]))
    assert config.host == "127.0.0.1"
    assert config.window_seconds == 86400.0
    assert config.api_key is None
    assert config.speed >= 1000
    # The API's tier-1 limits unless told otherwise; cache hits inside the 30-98 % the batch docs give.
    assert (config.queue_limit, config.rpm_limit) == (100_000, 50)
    assert 0.3 <= config.cache_hit_rate < 0.98


def test_limit_and_cache_flags_become_the_config():
    args = build_parser().parse_args(
        ["--cache-hit-rate", "0.5", "--queue-limit", "1000", "--rpm-limit", "50", "--models-file", "m.json"]
    )
    config = config_from_args(args)
    assert (config.cache_hit_rate, config.queue_limit, config.rpm_limit) == (0.5, 1000, 50)
    assert config.models_file == "m.json"
    assert config.queue_retry_after == 30.0  # the default when not given
    assert config_from_args(build_parser().parse_args(["--queue-retry-after", "2"])).queue_retry_after == 2.0


def test_zero_turns_a_limit_off():
    config = config_from_args(build_parser().parse_args(["--queue-limit", "0", "--rpm-limit", "0"]))
    assert (config.queue_limit, config.rpm_limit) == (None, None)


def test_invalid_flag_values_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        main(["--error-rate", "2"])
    assert "error_rate" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--rpm-limit", "-1"])
    assert "rpm_limit" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_console_script_serves_the_api():
    script = Path(sys.executable).parent / "claude-batch-emulator"
    port = _free_port()
    process = subprocess.Popen(
        [str(script), "--port", str(port), "--api-key", "cli-key", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/messages/batches"
        response = None
        with httpx.Client() as client:
            for _ in range(400):
                try:
                    response = client.get(url, headers=headers("cli-key"))
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            assert response is not None, "the emulator did not start"
            assert response.status_code == 200
            assert client.get(url, headers=headers("other-key")).status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
