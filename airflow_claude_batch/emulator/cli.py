"""``claude-batch-emulator``: serve the Message Batches API emulator from the shell.

Example: ``claude-batch-emulator --port 8787 --window-seconds 600 --error-rate 0.01``, then point the
``claude_batch_default`` connection's host at ``http://127.0.0.1:8787``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from airflow_claude_batch.emulator.config import (
    DEFAULT_CACHE_HIT_RATE,
    DEFAULT_SPEED,
    KEEP_ALIVE_SECONDS,
    EmulatorConfig,
)
from airflow_claude_batch.emulator.service.app import create_app
from airflow_claude_batch.emulator.store.quotas import QUEUE_RETRY_SECONDS, TIER1_QUEUE_LIMIT, TIER1_RPM


def build_parser() -> argparse.ArgumentParser:
    """Return the command line's parser."""
    parser = argparse.ArgumentParser(
        prog="claude-batch-emulator",
        description="A local stand-in for the Claude Message Batches API (no key, no network needed).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback)")
    parser.add_argument("--port", type=int, default=8787, help="port to listen on (default: 8787)")
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"requests processed per second in each batch (default: {DEFAULT_SPEED:g})",
    )
    parser.add_argument("--start-delay", type=float, default=0.0, help="seconds before processing starts")
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=86400.0,
        help="real seconds that stand for the 24-hour window; later requests expire (default: 86400)",
    )
    parser.add_argument(
        "--cancel-seconds", type=float, default=0.5, help="seconds a cancelled batch stays 'canceling'"
    )
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="fraction of requests that end errored (retryable)"
    )
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any non-empty key)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of result order, injected errors and cache hits"
    )
    parser.add_argument(
        "--cache-hit-rate",
        type=float,
        default=DEFAULT_CACHE_HIT_RATE,
        help="share of requests with a live prompt-cache entry that read it; the batch docs say hits are "
        f"best effort, typically 30-98%% (default: {DEFAULT_CACHE_HIT_RATE:g})",
    )
    parser.add_argument(
        "--queue-limit",
        type=int,
        default=TIER1_QUEUE_LIMIT,
        help="most requests waiting or in progress per workspace; a create over it gets 429; 0 for none "
        "(default: the API's tier 1, %(default)d)",
    )
    parser.add_argument(
        "--queue-retry-after",
        type=float,
        default=QUEUE_RETRY_SECONDS,
        help="seconds the retry-after header of a queue refusal asks for (default: %(default)g)",
    )
    parser.add_argument(
        "--rpm-limit",
        type=int,
        default=TIER1_RPM,
        help="most calls per minute to the batch endpoints per workspace, polling included; more get 429 "
        "with retry-after; 0 for none (default: the API's tier 1, %(default)d)",
    )
    parser.add_argument(
        "--models-file",
        default=None,
        help="a models file laid over the shipped catalogue (default: CLAUDE_BATCH_MODELS_FILE if set)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default: info)")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Turn parsed arguments into an :class:`EmulatorConfig`."""
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        speed=args.speed,
        start_delay=args.start_delay,
        window_seconds=args.window_seconds,
        cancel_seconds=args.cancel_seconds,
        error_rate=args.error_rate,
        api_key=args.api_key,
        seed=args.seed,
        cache_hit_rate=args.cache_hit_rate,
        queue_limit=args.queue_limit or None,
        queue_retry_after=args.queue_retry_after,
        rpm_limit=args.rpm_limit or None,
        models_file=args.models_file,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator in the foreground until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=args.log_level,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


if __name__ == "__main__":
    main()
