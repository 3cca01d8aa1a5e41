"""The build operator's parameters as its source declares them, for the tests that hold the pipeline,
the docs and the rendering to them: the name, the type and the default from ``__init__``, the doc from
the class's ``:param:`` row, templated when ``template_fields`` names it."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator

#: The default of a parameter that has none: the caller must give it.
REQUIRED: Any = inspect.Parameter.empty
#: Parameters of every operator's ``__init__`` that are not its own.
NOT_OWN = ("self", "kwargs")


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any
    annotation: Any
    doc: str
    templated: bool


def param_rows(docstring: str | None) -> dict[str, str]:
    """A docstring's ``:param name: text`` rows, each text on one line."""
    text = inspect.cleandoc(docstring or "")
    rows = re.findall(r"^:param (\w+): (.*?)(?=^:\w|\Z)", text, re.M | re.S)
    return {name: " ".join(row.split()) for name, row in rows}


def own_parameters(function: Any) -> list[inspect.Parameter]:
    """The parameters a function declares, ``self`` and ``**kwargs`` left out."""
    return [p for name, p in inspect.signature(function).parameters.items() if name not in NOT_OWN]


def build_parameters() -> list[Parameter]:
    """The build operator's parameters, in the order of its ``__init__``."""
    rows = param_rows(ClaudeBatchBuildOperator.__doc__)
    templated = set(ClaudeBatchBuildOperator.template_fields)
    return [
        Parameter(p.name, p.default, p.annotation, rows.get(p.name, ""), p.name in templated)
        for p in own_parameters(ClaudeBatchBuildOperator.__init__)
    ]
