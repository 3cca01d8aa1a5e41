"""The distributed topology from real processes on loopback, a nightly run through it, and its checks.

Starts PostgreSQL (metadata), Redis (Celery broker), moto's S3 server, the API emulator, then
``airflow api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and ``celery worker`` with the
CeleryExecutor, all on 127.0.0.1 and free ports, with their state in a temporary folder. It triggers
the nightly DAG through the REST API, follows it, and checks that it succeeded first time, that the
wait tasks were deferred and resumed by the triggerer, that the labels file, manifest and report are
in S3, and that the emulator made one batch per shard. Then it triggers a second run, clears it while
its wait is deferred, and checks that nothing was canceled and no second batch made
(:mod:`deploy.clear_check`). ``--ui`` also drives the UI in headless
Chromium (:mod:`deploy.ui_check`). Everything is stopped at the end, failure or not.

Run it through ``make topology-check`` (``deploy/topology-check.sh``), which installs what it needs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pwd
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx

from deploy.airflow_api import AirflowApi, CheckFailed
from deploy.checks import (
    NIGHTLY_DAG_ID,
    SMOKE_DAG_ID,
    NightlyTarget,
    S3Location,
    check_quiet_logs,
    run_and_check,
)
from deploy.clear_check import check_clear_while_deferred
from deploy.processes import ProcessGroup, free_port, run, wait_for_port
from deploy.resweep_check import check_resweep_after_late_data

REPO = Path(__file__).resolve().parent.parent
BUCKET = "claude-batch"
STORAGE_PREFIX = "nightly"
ADMIN_USER = "admin"
FAKE_API_KEY = "sk-ant-topology-check-not-a-real-key"
S3_KEY = "topology-check"
SAMPLE_TICKETS = REPO / "dags" / "data" / "tickets" / "sample.jsonl"
WORKER_CONCURRENCY = 4


@dataclass
class Timings:
    """Seconds spent in each phase, printed at the end."""

    label: str = "topology"
    phases: dict[str, float] = field(default_factory=dict)
    _started: float = field(default_factory=time.monotonic)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        print(f"[{self.label}] {name} ...", flush=True)
        try:
            yield
        finally:
            self.phases[name] = time.monotonic() - started
            print(f"[{self.label}] {name}: {self.phases[name]:.1f} s", flush=True)

    def total(self) -> float:
        return time.monotonic() - self._started


@dataclass(frozen=True)
class Ports:
    postgres: int
    redis: int
    s3: int
    emulator: int
    api: int

    @classmethod
    def pick(cls) -> Ports:
        ports: set[int] = set()
        while len(ports) < 5:
            ports.add(free_port())
        return cls(*sorted(ports))


@dataclass
class Workspace:
    """The temporary folder of one check: data dirs, logs, AIRFLOW_HOME, the pid file."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def pid_file(self) -> Path:
        # The shell wrapper passes its own file, so that its trap can end what the driver could not.
        return Path(os.environ.get("TOPOLOGY_PID_FILE") or self.root / "pids")

    def create(self) -> None:
        # Readable by the postgres and redis users, who run their servers from data dirs inside it.
        self.root.chmod(0o755)
        for folder in (self.logs, self.airflow_home):
            folder.mkdir(parents=True, exist_ok=True)


def service_user(name: str) -> list[str]:
    """``runuser`` prefix that runs a server as its own system user when we are root; else nothing."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise CheckFailed(f"user {name!r} does not exist; install Debian's package that creates it") from exc
    return ["runuser", "-u", name, "--"]


def postgres_bin(tool: str) -> str:
    """Path of a PostgreSQL server tool (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]))
    if found:
        return str(found[-1])
    on_path = shutil.which(tool)
    if on_path:
        return on_path
    raise CheckFailed(f"PostgreSQL's {tool} was not found; apt-get install postgresql")


def chown_for(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


class Topology:
    """The processes of the deployment, started in dependency order.

    :param workspace: the check's temporary folder.
    :param dags_folder: the DAGs the DAG processor parses.
    :param workers: how many Celery worker processes to start.
    """

    def __init__(self, workspace: Workspace, dags_folder: Path, workers: int) -> None:
        self.ws = workspace
        self.dags_folder = dags_folder
        self.workers = workers
        self.ports = Ports.pick()
        self.processes = ProcessGroup(workspace.logs, workspace.pid_file)
        self.admin_password = secrets.token_urlsafe(16)
        self.env = self._airflow_env()

    # ------------------------------------------------------------------ configuration
    def _airflow_env(self) -> dict[str, str]:
        ports = self.ports
        database = f"postgresql+psycopg2://airflow@127.0.0.1:{ports.postgres}/airflow"
        api = f"http://127.0.0.1:{ports.api}"
        venv_bin = str(Path(sys.executable).parent)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
        return {
            **inherited,
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "AIRFLOW_HOME": str(self.ws.airflow_home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.ws.airflow_home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{ports.redis}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{database}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(ports.api),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            # The sensors hand their waits to the triggerer.
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            # The nightly DAG: storage on S3 through the aws_default connection, polls every 2 s.
            "AIRFLOW_VAR_CLAUDE_BATCH_STORAGE": f"s3://{BUCKET}/{STORAGE_PREFIX}",
            "AIRFLOW__CLAUDE_BATCH__STORAGE_CONN_ID": "aws_default",
            "CLAUDE_BATCH_POLL_INTERVAL": "2",
            "CLAUDE_BATCH_BATCH_RPM_LIMIT": "4000",
            # No instance-metadata lookups: the credentials are in the connection.
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_PROXY": "127.0.0.1,localhost",
        }

    def connections(self) -> dict[str, Any]:
        """The connections stored in the metadata database, as ``airflow connections import`` reads them."""
        return {
            "claude_batch_default": {
                "conn_type": "claude-batch",
                "host": f"http://127.0.0.1:{self.ports.emulator}",
                "password": FAKE_API_KEY,
                "extra": json.dumps({"timeout": 60, "max_retries": 5}),
            },
            "aws_default": {
                "conn_type": "aws",
                "login": S3_KEY,
                "password": S3_KEY,
                "extra": json.dumps(
                    {"endpoint_url": f"http://127.0.0.1:{self.ports.s3}", "region_name": "us-east-1"}
                ),
            },
        }

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.emulator}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    def s3_client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_KEY,
            region_name="us-east-1",
        )

    # ------------------------------------------------------------------ backing services
    def start_postgres(self) -> None:
        data = self.ws.root / "postgres"
        data.mkdir()
        chown_for(data, "postgres")
        as_postgres = service_user("postgres")
        initdb = [postgres_bin("initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "--encoding=UTF8"]
        run([*as_postgres, *initdb], self.env, self.ws.logs / "initdb.log", timeout=120, what="initdb")
        address = ["-h", "127.0.0.1", "-p", str(self.ports.postgres)]
        # A throwaway database: durability is not what is being checked.
        speed = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        server = self.processes.start(
            "postgres",
            [*as_postgres, postgres_bin("postgres"), "-D", str(data), *address, "-k", str(data), *speed],
            self.env,
            stop_signal=signal.SIGINT,  # fast shutdown
        )
        wait_for_port(self.ports.postgres, 60, process=server)
        createdb = [postgres_bin("createdb"), *address, "-U", "airflow", "airflow"]
        deadline = time.monotonic() + 30
        while True:
            try:
                run(
                    [*as_postgres, *createdb],
                    self.env,
                    self.ws.logs / "createdb.log",
                    timeout=30,
                    what="createdb",
                )
                return
            except CheckFailed:  # the server may accept connections before it accepts logins
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def start_redis(self) -> None:
        data = self.ws.root / "redis"
        data.mkdir()
        chown_for(data, "redis")
        redis = shutil.which("redis-server") or "/usr/bin/redis-server"
        address = ["--bind", "127.0.0.1", "--port", str(self.ports.redis), "--protected-mode", "yes"]
        storage = ["--dir", str(data), "--save", "", "--appendonly", "no"]
        server = self.processes.start("redis", [*service_user("redis"), redis, *address, *storage], self.env)
        wait_for_port(self.ports.redis, 30, process=server)

    def start_s3(self) -> None:
        moto = shutil.which("moto_server", path=self.env["PATH"]) or "moto_server"
        server = self.processes.start("s3", [moto, "-H", "127.0.0.1", "-p", str(self.ports.s3)], self.env)
        wait_for_port(self.ports.s3, 60, process=server)
        self.s3_client().create_bucket(Bucket=BUCKET)

    def start_emulator(self) -> None:
        emulator = shutil.which("claude-batch-emulator", path=self.env["PATH"]) or "claude-batch-emulator"
        address = ["--host", "127.0.0.1", "--port", str(self.ports.emulator)]
        # Slow enough (a start delay, then 500 requests/s) that the wait tasks really defer.
        pace = ["--start-delay", "20", "--speed", "500"]
        # The product is told tier 4 (CLAUDE_BATCH_BATCH_RPM_LIMIT 4000); so is the emulator (else tier 1).
        pace += ["--rpm-limit", "4000", "--queue-limit", "500000"]
        server = self.processes.start(
            "emulator",
            [emulator, *address, "--api-key", FAKE_API_KEY, *pace, "--log-level", "warning"],
            self.env,
        )
        wait_for_port(self.ports.emulator, 60, process=server)

    # ------------------------------------------------------------------ Airflow
    def init_airflow(self) -> None:
        """Migrate the metadata database, write the admin's password, store the connections."""
        logs = self.ws.logs
        run(["airflow", "db", "migrate"], self.env, logs / "db-migrate.log", timeout=600, what="db migrate")
        passwords = Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        passwords.write_text(json.dumps({ADMIN_USER: self.admin_password}))
        passwords.chmod(0o600)
        connections = self.ws.root / "connections.json"
        connections.write_text(json.dumps(self.connections()))
        connections.chmod(0o600)
        try:
            run(
                ["airflow", "connections", "import", str(connections)],
                self.env,
                logs / "connections.log",
                timeout=300,
                what="airflow connections import",
            )
        finally:
            connections.unlink()

    def start_airflow(self) -> None:
        api = ["airflow", "api-server", "--host", "127.0.0.1", "--port", str(self.ports.api)]
        self.processes.start("api-server", api, self.env)
        self.processes.start("scheduler", ["airflow", "scheduler"], self.env)
        self.processes.start("dag-processor", ["airflow", "dag-processor"], self.env)
        # Log serving binds every interface; the API server reads the local log files instead.
        self.processes.start("triggerer", ["airflow", "triggerer", "--skip-serve-logs"], self.env)
        for index in range(self.workers):
            worker = ["airflow", "celery", "worker", "--skip-serve-logs", "--without-gossip"]
            name = ["--celery-hostname", f"worker{index}@%h", "--concurrency", str(WORKER_CONCURRENCY)]
            self.processes.start(f"worker-{index}", [*worker, *name], self.env)

    def wait_for_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {f"worker-{index}" for index in range(self.workers)}
        while pending:
            self.processes.check_alive()
            for name in list(pending):
                if " ready." in (self.ws.logs / f"{name}.log").read_text(errors="replace"):
                    pending.discard(name)
            if time.monotonic() > deadline:
                raise CheckFailed(f"Celery workers {sorted(pending)} did not report ready in {timeout:.0f} s")
            time.sleep(1)

    def tasks_per_worker(self) -> dict[str, int]:
        """How many task workloads each Celery worker received (from the workers' logs)."""
        counts = {}
        for index in range(self.workers):
            text = (self.ws.logs / f"worker-{index}.log").read_text(errors="replace")
            counts[f"worker{index}"] = sum(
                1 for line in text.splitlines() if "execute_workload[" in line and "received" in line
            )
        return counts

    def emulator_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.emulator_url}/_emulator/stats", timeout=10).json()


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def run_check(args: argparse.Namespace, workspace: Workspace, timings: Timings) -> dict[str, Any]:
    dags_folder = args.dags_folder or (
        REPO / "deploy" / "dags" if args.dag == SMOKE_DAG_ID else REPO / "dags"
    )
    topology = Topology(workspace, dags_folder, args.workers)
    result: dict[str, Any] = {"workspace": str(workspace.root), "ports": topology.ports.__dict__}
    with topology.processes:
        with timings.phase("postgres, redis, s3, emulator"):
            topology.start_postgres()
            topology.start_redis()
            topology.start_s3()
            topology.start_emulator()
        with timings.phase("airflow db migrate and connections"):
            topology.init_airflow()
        with timings.phase("airflow processes healthy"):
            topology.start_airflow()
            api = AirflowApi(topology.api_url, ADMIN_USER, topology.admin_password)
            alive = topology.processes.check_alive
            api.wait_until_healthy(("scheduler", "triggerer", "dag_processor"), 300, alive=alive)
            topology.wait_for_workers(180)
        nightly = None
        if args.dag == NIGHTLY_DAG_ID:
            nightly = NightlyTarget(
                s3=topology.s3_client(),
                location=S3Location(BUCKET, STORAGE_PREFIX),
                emulator_stats=topology.emulator_stats,
                input_records=count_lines(SAMPLE_TICKETS),
            )
        run_id, result["run"] = run_and_check(
            api, args.dag, nightly=nightly, alive=alive, run_timeout=args.run_timeout, timings=timings
        )
        if nightly is not None:
            with timings.phase("clear while deferred"):
                result["clear_while_deferred"] = check_clear_while_deferred(
                    api, args.dag, nightly, alive=alive, run_timeout=args.run_timeout
                )
            with timings.phase("re-sweep after late data"):
                result["resweep"] = check_resweep_after_late_data(
                    api,
                    args.dag,
                    nightly,
                    tickets=SAMPLE_TICKETS,
                    workdir=workspace.root,
                    alive=alive,
                    run_timeout=args.run_timeout,
                )
        result["tasks_per_worker"] = topology.tasks_per_worker()
        log_folders = [workspace.logs, workspace.airflow_home / "logs"]
        result["log_files_without_noise"] = check_quiet_logs(log_folders)
        if args.ui:
            from deploy.ui_check import UiContext, run_ui_check

            with timings.phase("UI in headless Chromium"):
                context = UiContext(
                    api_url=topology.api_url,
                    username=ADMIN_USER,
                    password=topology.admin_password,
                    dag_id=args.dag,
                    finished_run_id=run_id,
                    emulator_url=topology.emulator_url,
                    api_key=FAKE_API_KEY,
                    emulator_stats=topology.emulator_stats,
                    alive=alive,
                )
                result["ui"] = run_ui_check(context, api, args.screenshots)
        api.close()
        if args.hold:
            print(
                f"[topology] holding for {args.hold:.0f} s: UI {topology.api_url} (user {ADMIN_USER}, "
                f"password {topology.admin_password}), logs {workspace.logs}",
                flush=True,
            )
            time.sleep(args.hold)
        with timings.phase("teardown"):
            topology.processes.stop_all()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.topology_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dag", default=NIGHTLY_DAG_ID, choices=(NIGHTLY_DAG_ID, SMOKE_DAG_ID))
    parser.add_argument(
        "--dags-folder",
        type=Path,
        default=None,
        help="DAGs to deploy (default: dags/, or deploy/dags/ for the smoke DAG)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (default 2)")
    parser.add_argument("--run-timeout", type=float, default=600, help="seconds the DAG run may take")
    parser.add_argument("--ui", action="store_true", help="also drive the UI in headless Chromium")
    parser.add_argument(
        "--screenshots", type=Path, default=REPO / "docs" / "screenshots", help="where --ui saves screenshots"
    )
    parser.add_argument(
        "--hold", type=float, default=0, metavar="SECONDS", help="keep the deployment up after the checks"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) afterwards")
    return parser.parse_args(argv)


def _exit_on_signal(signum: int, frame: object) -> None:
    # Turn SIGTERM / SIGHUP into an exception so that the context managers stop every process.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ui and args.dag != NIGHTLY_DAG_ID:
        print(f"--ui checks the nightly DAG's pages; it needs --dag {NIGHTLY_DAG_ID}", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    workspace = Workspace(Path(tempfile.mkdtemp(prefix="topology-check-")))
    workspace.create()
    timings = Timings()
    ok = False
    try:
        result = run_check(args, workspace, timings)
        ok = True
    except Exception as exc:
        detail = str(exc) if isinstance(exc, CheckFailed) else traceback.format_exc()
        print(f"[topology] FAILED: {detail}", file=sys.stderr, flush=True)
        print(
            f"[topology] logs kept in {workspace.logs} and {workspace.airflow_home / 'logs'}", file=sys.stderr
        )
        return 1
    finally:
        phases = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.phases.items())
        print(f"[topology] {'passed' if ok else 'failed'} in {timings.total():.0f} s ({phases})", flush=True)
        # The databases' files go in any case; the logs stay when asked to or when the check failed.
        for data in ("postgres", "redis"):
            shutil.rmtree(workspace.root / data, ignore_errors=True)
        if ok and not args.keep:
            shutil.rmtree(workspace.root, ignore_errors=True)
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
