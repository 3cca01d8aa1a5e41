"""The build step against the naive approach: throughput and peak memory for N synthetic records.

    python -m bench build --records 1000000

Input: N records of about 1 KB of text each, ``{"id", "text"}`` in one JSON Lines file (made once, not
timed). Each approach runs in a fresh child process, and its peak resident memory is read from that
child alone (``os.wait4``), so the approaches do not pollute each other:

- ``package``: ``build_run`` of this package (stream records, render, validate, check ids unique,
  write shards of at most 100,000 requests / 256 MB, sample, estimate, write ``estimate.json`` and
  ``shards.json``), on local storage, with the local token estimate.
- ``naive``: what the seed article does: ``json.dumps`` per request to a JSONL file, then
  ``[json.loads(line) for line in open(...)]``, then the anthropic SDK's ``batches.create`` for every
  100,000 requests (the API's limit) with a transport that answers without sending, so the SDK's own
  body encoding is measured and nothing leaves the machine.

Both read the same input file and produce the same requests (same model, system prompt, max_tokens).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "claude-haiku-4-5"
SYSTEM = "Label the support ticket as billing, bug, account or other. Answer with the label only."
MAX_TOKENS = 16
API_BATCH_LIMIT = 100_000
APPROACHES = ("package", "naive")


def make_input(path: Path, records: int, text_bytes: int, seed: int = 7) -> None:
    """Write ``records`` JSON lines of about ``text_bytes`` of text each (words, some non-ASCII)."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(5000)
    ]
    words += ["café", "naïve", "über", "naïveté", "東京", "😀"]
    corpus = " ".join(rng.choice(words) for _ in range(400_000))
    with path.open("w", encoding="utf-8") as handle:
        for number in range(records):
            start = rng.randrange(len(corpus) - text_bytes)
            text = corpus[start : start + text_bytes]
            handle.write(json.dumps({"id": f"ticket-{number:08d}", "text": text}, ensure_ascii=False) + "\n")


def run_package(source: Path, workdir: Path) -> dict[str, Any]:
    from airflow_claude_batch.core.api.limits import BODY_PREFIX, BODY_SUFFIX
    from airflow_claude_batch.core.build.build_step import build_run
    from airflow_claude_batch.core.requests.rendering import RequestTemplate
    from airflow_claude_batch.core.requests.sources import FileRecords
    from airflow_claude_batch.core.run.layout import RunFolder

    folder = RunFolder.for_run(workdir / "runs", "bench", "package", "claude_batch")
    template = RequestTemplate(model=MODEL, max_tokens=MAX_TOKENS, system=SYSTEM, cache_system="1h")
    started = time.perf_counter()
    result = build_run(FileRecords([source]), template, folder)
    elapsed = time.perf_counter() - started
    assert result.estimate is not None
    digest = hashlib.sha256()
    for shard in result.shards:  # the bodies the submit step sends, hashed line by line after the clock
        digest.update(BODY_PREFIX)
        with open(shard.uri, "rb") as lines:
            for number, line in enumerate(lines):
                digest.update(b"," + line.rstrip(b"\n") if number else line.rstrip(b"\n"))
        digest.update(BODY_SUFFIX)
    return {
        "seconds": elapsed,
        "shards": len(result.shards),
        "body_bytes": sum(shard.body_bytes for shard in result.shards),
        "bodies_sha256": digest.hexdigest(),
    }


def run_naive(source: Path, workdir: Path) -> dict[str, Any]:
    import anthropic
    import httpx2

    sent_bytes = 0
    digest = hashlib.sha256()
    hashing_seconds = 0.0

    def answer_without_sending(request: httpx2.Request) -> httpx2.Response:
        nonlocal sent_bytes, hashing_seconds
        body = request.read()
        sent_bytes += len(body)
        hash_started = time.perf_counter()
        digest.update(body)
        hashing_seconds += time.perf_counter() - hash_started  # taken off the naive approach's time
        now = "2026-01-01T00:00:00Z"
        counts = {"processing": 1, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        return httpx2.Response(
            200,
            json={
                "id": "msgbatch_bench",
                "type": "message_batch",
                "processing_status": "in_progress",
                "request_counts": counts,
                "created_at": now,
                "expires_at": now,
                "ended_at": None,
                "cancel_initiated_at": None,
                "archived_at": None,
                "results_url": None,
            },
        )

    client = anthropic.Anthropic(
        api_key="bench-fake-key",
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer_without_sending)),
        max_retries=0,
    )
    batch_file = workdir / "batch.jsonl"
    started = time.perf_counter()
    with source.open(encoding="utf-8") as records, batch_file.open("w") as out:
        for raw in records:
            record = json.loads(raw)
            line = {
                "custom_id": record["id"],
                "params": {
                    "model": MODEL,
                    "max_tokens": MAX_TOKENS,
                    "system": [
                        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
                    ],
                    "messages": [{"role": "user", "content": record["text"]}],
                },
            }
            out.write(json.dumps(line) + "\n")
    with batch_file.open() as handle:
        requests = [json.loads(line) for line in handle]
    batches = 0
    for start in range(0, len(requests), API_BATCH_LIMIT):
        client.messages.batches.create(requests=requests[start : start + API_BATCH_LIMIT])
        batches += 1
    elapsed = time.perf_counter() - started - hashing_seconds
    return {
        "seconds": elapsed,
        "shards": batches,
        "body_bytes": sent_bytes,
        "bodies_sha256": digest.hexdigest(),
    }


def child(approach: str, source: Path, workdir: Path) -> None:
    runner = run_package if approach == "package" else run_naive
    print(json.dumps(runner(source, workdir)))


def measure(approach: str, source: Path, workdir: Path) -> dict[str, Any]:
    """Run one approach in a fresh process; return its figures and that process's peak RSS."""
    target = workdir / approach
    target.mkdir()
    os.sync()  # the previous step's dirty pages are flushed now, not during this approach's clock
    command = [sys.executable, "-m", "bench.bench_build", "--child", approach, str(source), str(target)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{approach} failed with exit code {process.returncode}")
    figures = json.loads(output.decode().strip().splitlines()[-1])
    figures["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench build", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to build (default 1,000,000)")
    parser.add_argument("--text-bytes", type=int, default=1000, help="text per record (default 1000)")
    parser.add_argument("--approaches", default=",".join(APPROACHES), help="comma-separated: package,naive")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where to write (default: a temporary folder)"
    )
    parser.add_argument("--child", nargs=3, metavar=("APPROACH", "SOURCE", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        approach, source, workdir = args.child
        child(approach, Path(source), Path(workdir))
        return
    with tempfile.TemporaryDirectory(prefix="bench-build-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        source = workdir / "records.jsonl"
        make_input(source, args.records, args.text_bytes)
        print(f"input: {args.records:,} records, {source.stat().st_size / 1e6:,.0f} MB of JSON Lines")
        results = {}
        for approach in args.approaches.split(","):
            figures = measure(approach, source, workdir)
            results[approach] = figures
            rate = args.records / figures["seconds"]
            print(
                f"{approach:>8}: {figures['seconds']:8.1f} s  {rate:>10,.0f} records/s  "
                f"peak RSS {figures['peak_rss_mib']:7,.0f} MiB  {figures['shards']} batch(es), "
                f"{figures['body_bytes'] / 1e6:,.0f} MB of create bodies"
            )
        if {"package", "naive"} <= results.keys():
            ratio = results["naive"]["seconds"] / results["package"]["seconds"]
            memory = results["naive"]["peak_rss_mib"] / results["package"]["peak_rss_mib"]
            same = results["package"]["bodies_sha256"] == results["naive"]["bodies_sha256"]
            print(f"package vs naive: {ratio:.1f}x the throughput, {memory:.1f}x less peak memory")
            print(f"create bodies byte-identical to the SDK's: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
