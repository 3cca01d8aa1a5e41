"""The operator reference stays true: every parameter documented, every included snippet current."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest

from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator
from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from airflow_claude_batch.operators.requeue import ClaudeBatchRequeueOperator
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_claude_batch.pipeline import claude_batch_pipeline
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor
from tests.build_parameters import REQUIRED, build_parameters

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "docs" / "operators.md").read_text()
INCLUDE = re.compile(r"<!-- include (\S+) (\S+) -->\n```python\n(.*?)\n```\n<!-- end include -->", re.S)
DOCUMENTED = [
    claude_batch_pipeline,
    ClaudeBatchBuildOperator,
    ClaudeBatchSubmitOperator,
    ClaudeBatchSensor,
    ClaudeBatchFanoutOperator,
    ClaudeBatchRequeueOperator,
    ClaudeBatchReportOperator,
]


def section(name: str) -> str:
    start = REFERENCE.index(f"## `{name}`")
    end = REFERENCE.find("\n## ", start + 1)
    return REFERENCE[start : end if end != -1 else None]


@pytest.mark.parametrize("documented", DOCUMENTED, ids=lambda obj: obj.__name__)
def test_every_parameter_is_in_the_reference(documented) -> None:
    function = documented.__init__ if inspect.isclass(documented) else documented
    names = [name for name in inspect.signature(function).parameters if name not in ("self", "kwargs")]
    text = section(documented.__name__)
    missing = [name for name in names if f"| `{name}` |" not in text]
    assert not missing, f"{documented.__name__}: {missing} not in docs/operators.md"


def table_row(text: str, name: str) -> tuple[str, str, str]:
    """The default, templated and meaning cells of parameter ``name``'s row in a section's table."""
    line = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
    _, default, templated, meaning = line.removeprefix("| ").removesuffix(" |").split(" | ", 3)
    return default, templated, meaning


def documented_default(default: object) -> str:
    return "required" if default is REQUIRED else f"`{default!r}`"


def test_the_build_operator_rows_are_its_options_as_declared() -> None:
    text = section(ClaudeBatchBuildOperator.__name__)
    for spec in build_parameters():
        expected = (documented_default(spec.default), "yes" if spec.templated else "no", spec.doc)
        assert table_row(text, spec.name) == (expected[0], expected[1], expected[2].replace("``", "`")), (
            f"ClaudeBatchBuildOperator's {spec.name}: its docs/operators.md row differs from its __init__"
        )


def test_the_pipeline_rows_of_build_options_say_their_default_and_templating() -> None:
    text = section(claude_batch_pipeline.__name__)
    parameters = inspect.signature(claude_batch_pipeline).parameters
    taken = [spec for spec in build_parameters() if spec.name in parameters]
    # The two the pipeline sets itself: its group id, and the later tasks' templates.
    assert {spec.name for spec in build_parameters()} - set(parameters) == {"pipeline_id", "later_templates"}
    for spec in taken:
        default, templated, _ = table_row(text, spec.name)
        assert (default, templated) == (
            documented_default(spec.default),
            "yes" if spec.templated else "no",
        ), f"claude_batch_pipeline's {spec.name}: its docs/operators.md row differs from its __init__"


def test_every_included_snippet_matches_its_source() -> None:
    includes = INCLUDE.findall(REFERENCE)
    assert len(includes) >= 3
    for path, name, snippet in includes:
        source = (ROOT / path).read_text()
        region = source.split(f"# [START {name}]\n", 1)[1].split(f"# [END {name}]", 1)[0]
        assert textwrap.dedent(region).rstrip() == snippet, (
            f"{path} [{name}] changed: update docs/operators.md"
        )


def test_readme_links_are_absolute() -> None:
    readme = (ROOT / "README.md").read_text()
    relative = [link for link in re.findall(r"\]\(([^)]+)\)", readme) if not link.startswith(("http", "#"))]
    assert relative == []
