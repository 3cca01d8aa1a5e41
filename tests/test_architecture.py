"""docs/architecture.md kept true: the layers, the core's imports, one concept per module.

Read from the source with ``ast`` (nothing is imported), so a new import that breaks a rule, or a
module the page does not describe, fails here with the module named.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "airflow_claude_batch"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
MAX_LINES = 400
SHELL = ("hooks", "operators", "sensors", "triggers")


def _modules() -> dict[str, Path]:
    """Dotted name below the package (``batch.ledger``) → file, ``__init__`` files left out."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py":
            continue
        found[".".join(path.relative_to(PACKAGE).with_suffix("").parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The absolute module names a file imports (``from x import y`` gives ``x`` and ``x.y``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _package_imports(path: Path, **kwargs: bool) -> set[str]:
    prefix = "airflow_claude_batch."
    return {name[len(prefix) :] for name in _imports(path, **kwargs) if name.startswith(prefix)} & set(
        MODULES
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_short_enough_to_read_at_once(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept (at most {MAX_LINES})"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_described_in_the_architecture_page(name: str) -> None:
    relative = MODULES[name].relative_to(PACKAGE).as_posix()
    basename = MODULES[name].name
    assert f"`{relative}`" in ARCHITECTURE or f"`{basename}`" in ARCHITECTURE, (
        f"docs/architecture.md does not describe {relative}: add its row (what it owns, what it imports)"
    )


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("batch.")))
def test_the_core_never_imports_airflow_or_the_shell(name: str) -> None:
    imported = _imports(MODULES[name])
    assert not {i for i in imported if i == "airflow" or i.startswith("airflow.")}, f"{name} imports Airflow"
    upward = {
        i for i in _package_imports(MODULES[name]) if i.split(".")[0] in (*SHELL, "pipeline", "emulator")
    }
    assert not upward, f"{name} (core) imports {sorted(upward)}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("batch.")))
def test_the_core_imports_only_what_its_row_says(name: str) -> None:
    row = re.search(rf"^\| `batch/{name.split('.', 1)[1]}\.py`[^\n]*\| ([^|\n]*) \|$", ARCHITECTURE, re.M)
    assert row, f"docs/architecture.md has no row for batch/{name.split('.', 1)[1]}.py in the core table"
    allowed = set(re.findall(r"`([a-z_]+)`", row.group(1)))
    used = {i.split(".")[1] for i in _package_imports(MODULES[name]) if i.startswith("batch.")}
    assert used <= allowed, (
        f"batch/{name.split('.', 1)[1]}.py imports {sorted(used - allowed)}, which its row in "
        "docs/architecture.md does not list: add them there, or keep the import out"
    )


def test_the_emulator_and_the_core_never_import_each_other_the_wrong_way() -> None:
    for name, path in MODULES.items():
        if name.startswith("batch."):
            continue
        if name.startswith("emulator."):
            wrong = {i for i in _package_imports(path) if i.split(".")[0] in (*SHELL, "pipeline")}
            assert not wrong, f"the emulator's {name} imports the Airflow shell: {sorted(wrong)}"


def test_hooks_import_no_operator_sensor_or_trigger() -> None:
    for name, path in MODULES.items():
        if name.startswith("hooks."):
            wrong = {
                i for i in _package_imports(path) if i.split(".")[0] in ("operators", "sensors", "triggers")
            }
            assert not wrong, f"{name} imports {sorted(wrong)}"


def test_the_package_imports_form_no_cycle() -> None:
    graph = {name: _package_imports(path, top_level_only=True) for name, path in MODULES.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = [*trail[trail.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
