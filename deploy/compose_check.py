"""Check a running compose stack (``deploy/compose-check.sh`` starts it): health, a nightly run, outputs.

Reads where the stack listens from the environment the script exported (``AIRFLOW_API_PORT``,
``EMULATOR_PORT``, ``S3_PORT``, the admin password and the S3 keys), waits until every Airflow component
reports healthy, then triggers the nightly DAG through the REST API and checks the run, the deferrals,
the S3 outputs and the emulator's counters exactly as the topology check does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx

from deploy.airflow_api import AirflowApi, CheckFailed
from deploy.checks import NIGHTLY_DAG_ID, NightlyTarget, S3Location, run_and_check
from deploy.topology_check import SAMPLE_TICKETS, STORAGE_PREFIX, Timings, count_lines

ONE_OFF_SERVICES = frozenset({"airflow-init"})


class ComposeStack:
    """The stack of compose project ``project``, reached on 127.0.0.1 at the ports in the environment."""

    def __init__(self, project: str, compose: list[str]) -> None:
        self.project = project
        self.compose = compose
        self.env = os.environ
        self._last_look = 0.0

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable]}"

    def alive(self) -> None:
        """Fail when a long-running service's container has stopped (looked at every 10 s at most)."""
        if time.monotonic() - self._last_look < 10:
            return
        self._last_look = time.monotonic()
        listing = subprocess.run(
            [*self.compose, "ps", "--services", "--filter", "status=stopped"],
            capture_output=True,
            text=True,
            check=False,
        )
        stopped = set(listing.stdout.split()) - ONE_OFF_SERVICES
        if stopped:
            raise CheckFailed(f"containers stopped: {sorted(stopped)}; see `{' '.join(self.compose)} logs`")

    def s3_client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url("S3_PORT"),
            aws_access_key_id=self.env.get("S3_ACCESS_KEY_ID", "moto"),
            aws_secret_access_key=self.env.get("S3_SECRET_ACCESS_KEY", "moto"),
            region_name="us-east-1",
        )

    def emulator_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.url('EMULATOR_PORT')}/_emulator/stats", timeout=10).json()


def main() -> int:
    compose = json.loads(os.environ["COMPOSE_COMMAND"])
    stack = ComposeStack(os.environ["COMPOSE_PROJECT_NAME"], compose)
    timings = Timings(label="compose")
    try:
        with AirflowApi(stack.url("AIRFLOW_API_PORT"), "admin", os.environ["AIRFLOW_ADMIN_PASSWORD"]) as api:
            with timings.phase("stack healthy"):
                api.wait_until_healthy(("scheduler", "triggerer", "dag_processor"), 600, alive=stack.alive)
            nightly = NightlyTarget(
                s3=stack.s3_client(),
                location=S3Location(os.environ.get("S3_BUCKET", "claude-batch"), STORAGE_PREFIX),
                emulator_stats=stack.emulator_stats,
                input_records=count_lines(Path(SAMPLE_TICKETS)),
            )
            _, summary = run_and_check(
                api, NIGHTLY_DAG_ID, nightly=nightly, alive=stack.alive, run_timeout=900, timings=timings
            )
    except CheckFailed as exc:
        print(f"[compose] FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.phases.items())
    print(f"[compose] passed in {timings.total():.0f} s ({phases})")
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
