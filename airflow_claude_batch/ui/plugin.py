"""The Airflow plugin that adds the "Claude batches" page to Airflow's UI (Airflow 3.1+).

Registered by the package's ``airflow.plugins`` entry point (``pyproject.toml``), which Airflow reads
in every process, so ``airflow plugins`` lists it and the API server mounts its FastAPI app at
:data:`URL_PREFIX` with no configuration. The UI shows it in the navigation as an external view: the
app's page in a frame (``href`` relative to Airflow's base URL, so it works behind a proxy's path).

The app is built on its first request (:class:`LazyApp`): loading the plugin, which every Airflow
process does, imports neither FastAPI's routes nor the API server's security module.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

#: Where the API server mounts the app, below Airflow's base URL (``ui/app.py`` says the same).
URL_PREFIX = "/claude-batches"
#: The page's route in Airflow's UI (``/plugin/claude-batches``).
UI_ROUTE = "claude-batches"


class LazyApp:
    """An ASGI app that builds the page's FastAPI app when the first request reaches it."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_claude_batch.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class ClaudeBatchesPlugin(AirflowPlugin):
    """The "Claude batches" page: pipeline runs across DAGs, their outcomes and their money."""

    name = "claude_batches"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Claude batches"}]
    external_views = [
        {
            "name": "Claude batches",
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": UI_ROUTE,
            "destination": "nav",
            "category": "browse",
        }
    ]
