"""Storage errors (permission denied, a missing bucket, a full disk): a clear error that names the path and
the fix, nothing half-written, and a rerun after the fix that completes without paying again.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.local import LocalFileOpener

from airflow_claude_batch.core.submit.state import INTENT, ShardStateFile
from airflow_claude_batch.exceptions import StorageError
from airflow_claude_batch.operators import submit as submit_module
from tests.reliability.harness import RunHarness, lost_and_doubled, records

RECORDS = 8
SHARDS = 2


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` refuse new entries: ``chmod`` for a normal user, the immutable flag for root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: a folder cannot be made read-only here")
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag: a folder cannot be made read-only here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


class FullDisk:
    """Make every write under ``root`` fail as a full disk does (``ENOSPC``), until :meth:`free`."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root)
        self.full = False
        self.refused = 0
        write = LocalFileOpener.write

        def write_or_refuse(opener: Any, *args: Any, **kwargs: Any) -> Any:
            if self.full and str(opener.path).startswith(self.root):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), opener.path)
            return write(opener, *args, **kwargs)

        monkeypatch.setattr(LocalFileOpener, "write", write_or_refuse)

    def fill(self) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False


def check_paid_once_and_complete(
    run: RunHarness, summary: dict[str, Any], emulator: Any, figures: Any
) -> None:
    stats = emulator.stats()
    figures.double_submits(stats["batches_created"], SHARDS)
    lost, doubled = lost_and_doubled(run.run_dir, [record["id"] for record in records(RECORDS)])
    figures.lines(len(lost), len(doubled), RECORDS)
    assert stats["batches_created"] == SHARDS
    assert summary["dispositions"]["succeeded"] == RECORDS
    assert not lost
    assert not doubled


def test_permission_denied_on_the_run_folder_names_it_and_the_rerun_pays_nothing_more(
    make_run: Callable[..., RunHarness], faulty_emulator: Any, figures: Any
) -> None:
    run = make_run(RECORDS)
    ended = [run.wait(run.submit(shard)) for shard in run.build()]
    run.retries = 0

    with read_only(run.run_dir / "round-0"), pytest.raises(StorageError) as refused:
        run.fanout(ended[0])

    figures.add("faults_injected")
    message = str(refused.value)
    assert "round-0/shard-00000" in message
    assert "permissions" in message
    assert not (run.run_dir / "round-0" / "shard-00000").exists()
    run.retries = 2
    summary = run.run()  # after the fix: the whole run again
    check_paid_once_and_complete(run, summary, faulty_emulator, figures)


@pytest.mark.parametrize("phase", ["build", "submit", "fanout"])
def test_a_full_disk_fails_clearly_leaves_nothing_half_written_and_the_rerun_pays_nothing_more(
    phase: str,
    make_run: Callable[..., RunHarness],
    faulty_emulator: Any,
    figures: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = make_run(RECORDS)
    disk = FullDisk(run.storage, monkeypatch)
    run.retries = 0
    if phase == "build":
        disk.fill()
        with pytest.raises(StorageError) as refused:
            run.build()
        assert not list(run.storage.rglob("*.requests.jsonl"))
        assert faulty_emulator.stats()["creates_received"] == 0
    elif phase == "submit":
        shards = run.build()
        create = submit_module._ShardBatchApi.create_batch

        def create_then_fill(api: Any, marker: bytes) -> Any:
            batch = create(api, marker)
            disk.fill()  # the batch exists; now its id cannot be recorded
            return batch

        monkeypatch.setattr(submit_module._ShardBatchApi, "create_batch", create_then_fill)
        with pytest.raises(StorageError) as refused:
            run.submit(shards[0])
        monkeypatch.setattr(submit_module._ShardBatchApi, "create_batch", create)
        state = ShardStateFile(run.folder, 0, 0).read()
        assert state is not None
        assert state.status == INTENT  # the intent survived whole: the rerun will look the batch up
        assert faulty_emulator.stats()["batches_created"] == 1
    else:
        ended = [run.wait(run.submit(shard)) for shard in run.build()]
        disk.fill()
        with pytest.raises(StorageError) as refused:
            run.fanout(ended[0])
        assert not [path for path in run.run_dir.rglob("*.jsonl") if "shard-00000/" in str(path)]

    figures.add("faults_injected", disk.refused)
    assert disk.refused > 0
    message = str(refused.value)
    assert "No space left on device" in message
    assert "free space" in message
    # the file it could not write: in the run folder, or (right after a create) the root's claims index
    assert str(run.run_dir) in message or str(run.storage / "_claims") in message
    disk.free()
    run.retries = 2
    summary = run.run()
    check_paid_once_and_complete(run, summary, faulty_emulator, figures)


def test_a_missing_bucket_is_an_error_before_any_spend_and_is_never_created(
    tmp_path: Path, faulty_emulator: Any, figures: Any, s3: Any
) -> None:
    source = tmp_path / "in" / "tickets.jsonl"
    source.parent.mkdir(parents=True)
    source.write_bytes(
        b"".join(f'{{"id": "{r["id"]}", "text": "{r["text"]}"}}\n'.encode() for r in records(RECORDS))
    )
    run = RunHarness(
        storage=tmp_path / "unused",
        source=f"file://{source}",
        storage_root="s3://claude-runs-typo/runs",
        storage_conn_id="aws_default",
        build_kwargs={"max_requests_per_shard": RECORDS // SHARDS},
        retries=0,
    )

    with pytest.raises(StorageError, match="The specified bucket does not exist") as refused:
        run.build()

    figures.add("faults_injected")
    assert "claude-runs-typo" in str(refused.value)
    assert faulty_emulator.stats()["creates_received"] == 0
    assert "claude-runs-typo" not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    s3.create_bucket(Bucket="claude-runs-typo")  # the fix
    try:
        run.retries = 2
        summary = run.run()
        assert summary["dispositions"]["succeeded"] == RECORDS
        assert faulty_emulator.stats()["batches_created"] == SHARDS
        figures.double_submits(faulty_emulator.stats()["batches_created"], SHARDS)
        keys = {item["Key"] for item in s3.list_objects_v2(Bucket="claude-runs-typo")["Contents"]}
        assert any(key.endswith("/manifest.json") for key in keys)
    finally:
        for item in s3.list_objects_v2(Bucket="claude-runs-typo").get("Contents", []):
            s3.delete_object(Bucket="claude-runs-typo", Key=item["Key"])
        s3.delete_bucket(Bucket="claude-runs-typo")
