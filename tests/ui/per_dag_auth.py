"""An auth manager that lets a user read only some DAGs, as a real deployment's auth manager may.

Airflow's simple auth manager gives a role access to every DAG; this one is the same, except that a
user listed in :data:`READABLE` reads only the DAGs named there (Airflow asks ``is_authorized_dag``
for each, as its own list routes do).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

#: user name → the DAGs that user may read.
#: The admin reads the two DAGs the tests record: other tests' runs share the worker's database.
READABLE: dict[str, set[str]] = {"alpha_reader": {"ui_alpha"}, "admin": {"ui_alpha", "ui_beta"}}


class PerDagAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        allowed = READABLE.get(user.username)
        if allowed is not None and (details is None or details.id not in allowed):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
