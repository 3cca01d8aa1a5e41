"""A small client of Airflow 3's REST API (``/api/v2``) for the deployment checks.

It signs in through the SimpleAuthManager's ``/auth/token``, triggers runs, follows them and reads task
instances and their logs, as an operator's script or a CI job would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

TERMINAL_RUN_STATES = frozenset({"success", "failed"})


class CheckFailed(Exception):
    """A deployment check found the deployment not doing what it promises; the message says what."""


@dataclass
class RunObservation:
    """What was seen of one DAG run while following it.

    :param run: the last dagRun document read.
    :param states_seen: every state each task instance was seen in, keyed by ``task_id[map_index]``.
    """

    run: dict[str, Any]
    states_seen: dict[str, set[str]] = field(default_factory=dict)


def ti_key(task_instance: Mapping[str, Any]) -> str:
    """Return ``task_id`` for an unmapped task instance, ``task_id[i]`` for a mapped one."""
    map_index = task_instance.get("map_index", -1)
    return task_instance["task_id"] if map_index in (-1, None) else f"{task_instance['task_id']}[{map_index}]"


class AirflowApi:
    """Airflow's public REST API at ``base_url``, signed in as ``username``.

    :param base_url: the API server's root, e.g. ``http://127.0.0.1:8080``.
    :param username: a user of the SimpleAuthManager.
    :param password: that user's password.
    :param timeout: seconds per HTTP request.
    """

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AirflowApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def token(self) -> str:
        """Return a JWT for the user, from ``POST /auth/token`` (cached)."""
        if self._token is None:
            response = self._client.post("/auth/token", json=self._credentials)
            if response.status_code not in (200, 201):
                raise CheckFailed(
                    f"POST /auth/token answered {response.status_code}: {response.text[:300]}; check the "
                    "user in AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS and its password file"
                )
            self._token = response.json()["access_token"]
        return self._token

    def request(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        signed = {**(headers or {}), "Authorization": f"Bearer {self.token()}"}
        return self._client.request(method, path, headers=signed, **kwargs)

    def get_json(self, path: str, **params: Any) -> Any:
        response = self.request("GET", path, params=params or None)
        if response.status_code != 200:
            raise CheckFailed(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    # ------------------------------------------------------------------ health and DAGs
    def health(self) -> dict[str, Any] | None:
        """Return ``/api/v2/monitor/health`` (no sign-in needed), or ``None`` while the server is down."""
        try:
            response = self._client.get("/api/v2/monitor/health")
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_until_healthy(
        self, components: tuple[str, ...], timeout: float, *, alive: Callable[[], None]
    ) -> None:
        """Wait until the metadatabase and ``components`` (scheduler, triggerer, ...) report healthy.

        :param alive: called on every poll; raises when a process of the deployment has died.
        """
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            alive()
            last = self.health()
            if last and all(
                (last.get(name) or {}).get("status") == "healthy" for name in ("metadatabase", *components)
            ):
                return
            time.sleep(2)
        raise CheckFailed(f"the deployment did not become healthy in {timeout:.0f} s; last health: {last}")

    def wait_for_dag(self, dag_id: str, timeout: float, *, alive: Callable[[], None]) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id``; fail at once on an import error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive()
            response = self.request("GET", f"/api/v2/dags/{quote(dag_id)}")
            if response.status_code == 200:
                return response.json()
            errors = self.get_json("/api/v2/importErrors").get("import_errors", [])
            if errors:
                details = "; ".join(f"{e['filename']}: {e['stack_trace'][-600:]}" for e in errors)
                raise CheckFailed(f"the DAG processor reports import errors: {details}")
            time.sleep(2)
        raise CheckFailed(f"DAG {dag_id!r} was not parsed within {timeout:.0f} s")

    def set_paused(self, dag_id: str, paused: bool) -> None:
        response = self.request("PATCH", f"/api/v2/dags/{quote(dag_id)}", json={"is_paused": paused})
        if response.status_code != 200:
            raise CheckFailed(f"could not set is_paused={paused} on {dag_id!r}: {response.text[:300]}")

    # ------------------------------------------------------------------ runs
    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, *, logical_date: str | None = None
    ) -> dict[str, Any]:
        """Trigger a manual run of ``dag_id`` with ``conf`` (the params form's values); return the run.

        :param logical_date: the data interval to run for (ISO 8601), or ``None`` for a run not tied
            to an interval.
        """
        body = {"logical_date": logical_date, "conf": dict(conf or {})}
        response = self.request("POST", f"/api/v2/dags/{quote(dag_id)}/dagRuns", json=body)
        if response.status_code not in (200, 201):
            raise CheckFailed(f"triggering {dag_id!r} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def clear_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Clear every task of the run, as the UI's "Clear" on a run does; return the answer."""
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/clear"
        response = self.request("POST", path, json={"dry_run": False})
        if response.status_code != 200:
            raise CheckFailed(
                f"clearing run {run_id!r} answered {response.status_code}: {response.text[:500]}"
            )
        return response.json()

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.get_json(f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}")

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get_json(f"/api/v2/dags/{quote(dag_id)}/dagRuns", limit=100)["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{quote(dag_id)}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return self.get_json(path, limit=1000)["task_instances"]

    def task_log(self, task_instance: Mapping[str, Any], try_number: int) -> str:
        """Return the text of one try's log, as the UI shows it."""
        path = (
            f"/api/v2/dags/{quote(task_instance['dag_id'])}/dagRuns/"
            f"{quote(task_instance['dag_run_id'], safe='')}/taskInstances/"
            f"{quote(task_instance['task_id'])}/logs/{try_number}"
        )
        params = {"map_index": task_instance.get("map_index", -1), "full_content": True}
        response = self.request("GET", path, params=params, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise CheckFailed(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        content = response.json().get("content", "")
        if isinstance(content, list):
            return "\n".join(
                line.get("event", "") if isinstance(line, Mapping) else str(line) for line in content
            )
        return str(content)

    def follow_run(
        self, dag_id: str, run_id: str, timeout: float, *, alive: Callable[[], None], poll: float = 1.0
    ) -> RunObservation:
        """Poll the run and its task instances until the run ends; record every state seen."""
        observation = RunObservation(run=self.dag_run(dag_id, run_id))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alive()
            for task_instance in self.task_instances(dag_id, run_id):
                state = task_instance.get("state") or "none"
                observation.states_seen.setdefault(ti_key(task_instance), set()).add(state)
            observation.run = self.dag_run(dag_id, run_id)
            if observation.run["state"] in TERMINAL_RUN_STATES:
                return observation
            time.sleep(poll)
        raise CheckFailed(
            f"run {run_id!r} of {dag_id!r} did not end within {timeout:.0f} s "
            f"(state {observation.run['state']!r}; task states seen: {_states_text(observation)})"
        )


def _states_text(observation: RunObservation) -> str:
    return ", ".join(
        f"{key}: {'/'.join(sorted(states))}" for key, states in sorted(observation.states_seen.items())
    )
