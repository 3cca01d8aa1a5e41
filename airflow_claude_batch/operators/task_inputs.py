"""What the tasks read the same way: the run folder a task writes, the run's price table, and the
values a template may give back as text.

The run folder is ``{storage}/{dag_id}/{run_id}/{pipeline_id}/``; the pipeline id is the id of the
pipeline's task group, so several pipelines of one DAG never share a shard, a state file, a manifest or
an output. Operators used on their own take ``pipeline_id`` or inherit the id of the task group they
are in. The paths inside the folder are :class:`~airflow_claude_batch.core.run.RunFolder`'s.

A templated parameter arrives as text once rendered (``"{{ params.budget }}"`` gives ``"12.5"``), so a
task reads each value back with the reader of its kind; a value that cannot be read is an
:class:`~airflow_claude_batch.exceptions.InputError` naming the parameter.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_claude_batch import DEFAULT_PIPELINE_ID, settings
from airflow_claude_batch.core.money import PriceTable
from airflow_claude_batch.core.reuse import AnswerStore, parse_reuse_answers
from airflow_claude_batch.core.run import RunFolder
from airflow_claude_batch.exceptions import InputError


def pipeline_id_of(task: Any, explicit: str | None) -> str:
    """Return ``explicit``, else the id of the task group holding ``task``, else the default id."""
    if explicit:
        return explicit
    group = getattr(task, "task_group", None)
    group_id = getattr(group, "group_id", None)
    return group_id or DEFAULT_PIPELINE_ID


def run_folder_for(context: Any, storage: Any, storage_conn_id: str | None, pipeline_id: str) -> RunFolder:
    """Return the run folder of this DAG run's pipeline ``pipeline_id`` under the ``storage`` root URI."""
    if not isinstance(storage, str) or not storage.strip():
        raise InputError(f"storage must be the root URI of run folders, got {storage!r}")
    root = ObjectStoragePath(storage.strip(), conn_id=storage_conn_id)
    return RunFolder.for_run(root, context["ti"].dag_id, context["run_id"], pipeline_id)


def load_prices(prices_file: str | None, storage_conn_id: str | None) -> PriceTable:
    """Load the price table: shipped prices, overlaid with ``prices_file`` (a local path or a URI), or
    else with ``[claude_batch] prices_file`` / ``CLAUDE_BATCH_PRICES_FILE``."""
    text = None if prices_file is None else str(prices_file).strip()
    if not text or text == "None":
        text = settings.prices_file()
    if not text:
        return PriceTable.load()
    if "://" in text:
        return PriceTable.load(ObjectStoragePath(text, conn_id=storage_conn_id))
    return PriceTable.load(text)


def optional_text(value: Any) -> str | None:
    """The value as stripped text; ``None`` for ``None``, empty text or ``"None"`` (a rendered None)."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text in ("", "None") else text


def whole_number(value: Any, name: str) -> int:
    """The value as an ``int``: an ``int`` (not a ``bool``) or its digits as text."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    return value


def optional_whole_number(value: Any, name: str) -> int | None:
    """The value as an ``int``, or ``None`` when :func:`optional_text` finds none."""
    return None if optional_text(value) is None else whole_number(value, name)


def optional_number(value: Any, name: str) -> float | None:
    """The value as a number, or ``None`` when :func:`optional_text` finds none."""
    if optional_text(value) is None:
        return None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise InputError(f"{name} must be a number, got {value!r}") from None
    return value


def flag(value: Any, name: str) -> bool:
    """The value as a ``bool``: a ``bool``, or ``true``/``1``/``yes`` and ``false``/``0``/``no``/empty."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise InputError(f"{name} must be true or false, got {value!r}")


def answer_store_for(reuse_answers: Any, storage_root: Any) -> AnswerStore | None:
    """The answer store under ``storage_root`` when ``reuse_answers`` is on (``True`` or a maximum age
    such as ``"30d"``), else ``None``; its writes are exclusive as the run folders' are."""
    policy = parse_reuse_answers(reuse_answers)
    if policy is None:
        return None
    return AnswerStore(storage_root, policy, allow_unconditional=settings.allow_unconditional_writes())
