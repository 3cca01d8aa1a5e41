"""Every difference between the supported Airflow versions (3.1, 3.2, 3.3), in one place.

The rest of the package and the tests import Airflow names that moved between versions from here,
and nothing else looks at Airflow's version (the sample DAGs, as examples to copy, import Airflow's
own modules). What differs:

- Airflow 3.2 moved the task SDK's exceptions to ``airflow.sdk.exceptions`` and its configuration to
  ``airflow.sdk.configuration``; on 3.1 they are ``airflow.exceptions`` and ``airflow.configuration``.
- Airflow 3.2 exports the timetables from ``airflow.sdk``; on 3.1 they live in ``airflow.timetables``.
- Airflow 3.2 reads a connection form's extra fields from the provider info (``conn-fields``); on 3.1
  the UI renders only what the hook's ``get_connection_form_widgets`` returns and what its
  ``get_ui_field_behaviour`` says: :func:`connection_form_widgets` turns the declarative fields into
  those widgets.
- Under ``dag.test()`` (``airflow dags test``) the in-process supervisor channel answers only blocking
  requests, so :func:`aget_connection` falls back to the blocking lookup there.
- Airflow 3.3's triggerer calls ``BaseTrigger.on_kill`` when a deferred task is cleared or marked;
  before 3.3 it never does (:data:`TRIGGERER_CALLS_ON_KILL`).
- The "Claude batches" page (``ui/``) uses the plugin interface of 3.1 (``fastapi_apps``,
  ``external_views``) and the API server's own ``get_user`` and auth manager, the same from 3.1 to 3.3;
  :func:`plugin_user_dependency` and :func:`readable_dag_ids` are where a later change would go.

Airflow 3.0 is not supported: it lacks ``airflow.sdk.BaseHook``, ``timezone`` and ``TriggerRule``,
``BaseHook.aget_connection`` (the triggerer would read connections blocking its event loop) and
iterable ``ObjectStoragePath.open()`` handles, which the streaming reads rely on.
"""

from __future__ import annotations

from typing import Any

from airflow import __version__ as _airflow_version

#: The oldest Airflow this package supports (``apache-airflow>=3.1`` in the package metadata).
MIN_AIRFLOW_VERSION = (3, 1)


def _release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


#: The running Airflow's ``(major, minor)``.
AIRFLOW_VERSION: tuple[int, int] = _release(_airflow_version)
AIRFLOW_V_3_2_PLUS = AIRFLOW_VERSION >= (3, 2)
AIRFLOW_V_3_3_PLUS = AIRFLOW_VERSION >= (3, 3)

#: Whether the connection form reads ``conn-fields`` from the provider info (else the hook's widgets).
DECLARATIVE_CONN_FIELDS = AIRFLOW_V_3_2_PLUS
#: Whether the triggerer calls ``BaseTrigger.on_kill`` when a deferred task is cleared or marked.
TRIGGERER_CALLS_ON_KILL = AIRFLOW_V_3_3_PLUS

if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable
    from airflow.sdk.configuration import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        ParamValidationError,
        TaskDeferred,
    )
else:  # Airflow 3.1
    from airflow.configuration import conf  # type: ignore[no-redef]
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        ParamValidationError,
        TaskDeferred,
    )
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef]
    from airflow.timetables.trigger import CronTriggerTimetable  # type: ignore[no-redef]


async def aget_connection(conn_id: str) -> Any:
    """Read a connection without blocking the event loop, also under ``dag.test()`` / ``airflow dags test``.

    There the trigger runs in the test's process with Airflow's in-process supervisor channel, which
    answers only blocking requests: ``BaseHook.aget_connection`` then finds no connection outside
    the environment variables, although the tasks before it read it from the metadata database. When
    that channel is the one in use, the blocking lookup is made in a thread instead.

    :param conn_id: the connection id.
    """
    import asyncio

    from airflow.sdk import BaseHook

    try:
        return await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException:
        if not _supervisor_channel_is_blocking_only():
            raise
        return await asyncio.to_thread(BaseHook.get_connection, conn_id)


def _supervisor_channel_is_blocking_only() -> bool:
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return comms is not None and not hasattr(comms, "asend")


def dag_bag_class() -> type:
    """Airflow's ``DagBag`` (``airflow.dag_processing.dagbag`` from 3.2, ``airflow.models.dagbag`` before)."""
    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    return DagBag


def cron_parts(timetable: Any) -> tuple[str, Any]:
    """A cron timetable's expression and interval (public attributes from 3.2, private before)."""
    if AIRFLOW_V_3_2_PLUS:
        return timetable.expression, getattr(timetable, "interval", None)
    return timetable._expression, getattr(timetable, "_interval", None)


_WIDGET_TYPES = {"string": "StringField", "integer": "IntegerField", "number": "StringField"}


def connection_form_widgets(conn_fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The declarative ``conn-fields`` as WTForms widgets, for Airflow before 3.2.

    Airflow 3.1's UI imports these with WTForms and Flask-AppBuilder stand-ins when they are not
    installed, and renders them as the form's extra fields. Numbers become text fields (WTForms'
    integer field would drop fractions); the hook parses them either way.

    :param conn_fields: ``{name: {"label", "description", "schema": {"type": [...]}}}``.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import IntegerField, StringField
    from wtforms.validators import Optional

    classes = {"StringField": StringField, "IntegerField": IntegerField}
    widgets: dict[str, Any] = {}
    for name, spec in conn_fields.items():
        types = spec.get("schema", {}).get("type", "string")
        kind = next(t for t in ([types] if isinstance(types, str) else types) if t != "null")
        field_class = classes[_WIDGET_TYPES.get(kind, "StringField")]
        widgets[name] = field_class(
            lazy_gettext(spec.get("label", name)),
            widget=BS3TextFieldWidget(),
            validators=[Optional()],
            description=spec.get("description", ""),
        )
    return widgets


__all__ = [
    "AIRFLOW_VERSION",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "DECLARATIVE_CONN_FIELDS",
    "MIN_AIRFLOW_VERSION",
    "TRIGGERER_CALLS_ON_KILL",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "CronDataIntervalTimetable",
    "CronTriggerTimetable",
    "ParamValidationError",
    "TaskDeferred",
    "aget_connection",
    "conf",
    "connection_form_widgets",
    "cron_parts",
    "dag_bag_class",
]


def plugin_user_dependency() -> Any:
    """The API server's dependency giving the signed-in user (its JWT from the ``Authorization: Bearer``
    header or the UI's cookie); it answers 401 to a request without one, 403 to a bad one."""
    from airflow.api_fastapi.core_api.security import get_user

    return get_user


def readable_dag_ids(user: Any) -> set[str]:
    """The DAGs the auth manager lets ``user`` read (``GET``), as Airflow's own list routes ask it.

    :param user: the signed-in user.
    """
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))
