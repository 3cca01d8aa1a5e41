"""The shell imports the core through each stage's entry point (``airflow_claude_batch.core.<stage>``),
and every stage package imports on its own, first, without a cycle."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_claude_batch"
STAGES = sorted(path.parent.name for path in (PACKAGE / "core").glob("*/__init__.py"))
SHELL = sorted(
    [
        *(PACKAGE / "hooks").glob("*.py"),
        *(PACKAGE / "operators").glob("*.py"),
        *(PACKAGE / "sensors").glob("*.py"),
        *(PACKAGE / "triggers").glob("*.py"),
        *(PACKAGE / "ui").glob("*.py"),
        *(
            PACKAGE / name
            for name in (
                "pipeline.py",
                "cancel.py",
                "resend_pending.py",
                "links.py",
                "lineage.py",
                "settings.py",
            )
        ),
    ]
)


def _core_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    return [name for name in modules if name.startswith("airflow_claude_batch.core")]


@pytest.mark.parametrize("path", SHELL, ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_the_shell_imports_stage_entry_points_not_their_modules(path: Path) -> None:
    deep = [name for name in _core_imports(path) if name.count(".") != 2]
    assert deep == [], (
        f"{path.relative_to(PACKAGE)} imports {deep}: import the name from its stage "
        "(airflow_claude_batch.core.<stage>), adding it to the stage's __init__ and __all__"
    )


@pytest.mark.parametrize("stage", STAGES)
def test_every_name_a_stage_exports_is_there(stage: str) -> None:
    package = importlib.import_module(f"airflow_claude_batch.core.{stage}")
    exported = getattr(package, "__all__", [])
    assert [name for name in exported if not hasattr(package, name)] == []


# The stage's names are imported on first use (PEP 562): reading every one is what proves the import.
_IMPORT_ALL = "import airflow_claude_batch.core.{stage} as s; [getattr(s, name) for name in s.__all__]"


def test_each_stage_package_imports_first_on_its_own() -> None:
    # One interpreter per stage: a cycle between stage packages shows only on a fresh import.
    for stage in STAGES:
        done = subprocess.run(
            [sys.executable, "-c", _IMPORT_ALL.format(stage=stage)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"core.{stage} does not import first: {done.stderr[-800:]}"
