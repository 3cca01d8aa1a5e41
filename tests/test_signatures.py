"""Every parameter is written in the source: the operators' ``__init__`` declare them (keyword-only,
typed, each with its ``:param:`` row), and what repeats them is held to that declaration: the
pipeline's build parameters, ``BuildOptions`` (what editors and type checkers read for the pipeline)
and the tables of ``docs/operators.md``."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator
from airflow_claude_batch.operators.build_options import BuildOptions
from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from airflow_claude_batch.operators.requeue import ClaudeBatchRequeueOperator
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_claude_batch.pipeline import claude_batch_pipeline
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor
from tests.build_parameters import build_parameters, own_parameters, param_rows

REFERENCE = (Path(__file__).resolve().parent.parent / "docs" / "operators.md").read_text()
TASKS = [
    ClaudeBatchBuildOperator,
    ClaudeBatchSubmitOperator,
    ClaudeBatchSensor,
    ClaudeBatchFanoutOperator,
    ClaudeBatchRequeueOperator,
    ClaudeBatchReportOperator,
]
#: The build parameters the pipeline sets itself: its group id, and the later tasks' templates.
SET_BY_THE_PIPELINE = {"pipeline_id", "later_templates"}


@pytest.mark.parametrize("task", TASKS, ids=lambda task: task.__name__)
def test_every_parameter_is_keyword_only_typed_and_has_its_param_row(task: type) -> None:
    parameters = own_parameters(task.__init__)
    rows = param_rows(task.__doc__)

    assert [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY] == []
    assert [p.name for p in parameters if p.annotation is inspect.Parameter.empty] == []
    assert [p.name for p in parameters if not rows.get(p.name)] == [], f"{task.__name__}: no :param: row"
    assert set(rows) <= {p.name for p in parameters}, f"{task.__name__}: a :param: row names no parameter"


@pytest.mark.parametrize("task", TASKS, ids=lambda task: task.__name__)
def test_templated_fields_and_their_renderers_name_parameters(task: type) -> None:
    names = {p.name for p in own_parameters(task.__init__)}

    assert set(task.template_fields) <= names
    assert set(getattr(task, "template_fields_renderers", {})) <= set(task.template_fields)


def test_the_pipeline_documents_its_own_parameters() -> None:
    # The function as written: its own parameters, and the build's as ``**build_options``.
    code = claude_batch_pipeline.__code__
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    rows = param_rows(claude_batch_pipeline.__doc__)

    assert "build_options" in code.co_varnames
    assert [name for name in names if not rows.get(name)] == []


def test_the_pipeline_takes_the_build_parameters_with_the_operators_defaults_and_types() -> None:
    build = {p.name: p for p in own_parameters(ClaudeBatchBuildOperator.__init__)}
    pipeline = inspect.signature(claude_batch_pipeline).parameters
    taken = {name: pipeline[name] for name in build if name in pipeline}

    assert set(build) - set(taken) == SET_BY_THE_PIPELINE
    for name, parameter in taken.items():
        assert (parameter.kind, parameter.default, parameter.annotation) == (
            inspect.Parameter.KEYWORD_ONLY,
            build[name].default,
            build[name].annotation,
        ), name


def _declared_type(annotation: Any) -> str:
    """A ``BuildOptions`` key's type as written, ``Required[...]`` taken off."""
    text = getattr(annotation, "__forward_arg__", annotation)
    return re.sub(r"^Required\[(.*)\]$", r"\1", text)


def test_build_options_names_every_build_parameter_the_pipeline_takes_with_its_type() -> None:
    declared = {name: _declared_type(annotation) for name, annotation in BuildOptions.__annotations__.items()}
    build = {p.name: p.annotation for p in own_parameters(ClaudeBatchBuildOperator.__init__)}
    required = {p.name for p in build_parameters() if p.default is inspect.Parameter.empty}

    assert declared == {name: build[name] for name in build if name not in SET_BY_THE_PIPELINE}
    assert {
        name for name, annotation in BuildOptions.__annotations__.items() if "Required[" in str(annotation)
    } == required


def _table_names(title: str) -> list[str]:
    start = REFERENCE.index(f"## `{title}`")
    end = REFERENCE.find("\n## ", start + 1)
    return re.findall(r"^\| `(\w+)` \|", REFERENCE[start : end if end != -1 else None], re.M)


@pytest.mark.parametrize("task", TASKS, ids=lambda task: task.__name__)
def test_the_reference_tables_list_exactly_the_parameters(task: type) -> None:
    assert sorted(_table_names(task.__name__)) == sorted(p.name for p in own_parameters(task.__init__))


def test_the_pipeline_reference_table_lists_exactly_its_parameters() -> None:
    names = list(inspect.signature(claude_batch_pipeline).parameters)
    assert sorted(_table_names(claude_batch_pipeline.__name__)) == sorted(names)


def test_help_and_airflow_read_the_written_signature() -> None:
    # Airflow wraps __init__ (for default_args); the signature it and help() read is the written one.
    assert inspect.signature(ClaudeBatchBuildOperator.__init__) == inspect.signature(
        inspect.unwrap(ClaudeBatchBuildOperator.__init__)
    )
    assert ":param source:" in (ClaudeBatchBuildOperator.__doc__ or "")
