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
SHELL = ("hooks", "operators", "sensors", "triggers", "ui")


def _modules() -> dict[str, Path]:
    """Dotted name below the package (``core.report.ledger``) → file, ``__init__`` files left out."""
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


CORE_MODULES = sorted(n for n in MODULES if n.startswith("core."))
MAX_MODULES_PER_FOLDER = 15


@pytest.mark.parametrize("name", CORE_MODULES)
def test_the_core_never_imports_airflow_or_the_shell(name: str) -> None:
    imported = _imports(MODULES[name])
    assert not {i for i in imported if i == "airflow" or i.startswith("airflow.")}, f"{name} imports Airflow"
    upward = {
        i for i in _package_imports(MODULES[name]) if i.split(".")[0] in (*SHELL, "pipeline", "emulator")
    }
    assert not upward, f"{name} (core) imports {sorted(upward)}"


def _stage_rows() -> dict[str, set[str]]:
    """``docs/architecture.md``'s stage table: stage → the stages it may import."""
    rows = re.findall(r"^\| `core/([a-z_]+)/` \|[^\n]*\| ([^|\n]*) \|$", ARCHITECTURE, re.M)
    return {stage: set(re.findall(r"`([a-z_]+)`", allowed)) for stage, allowed in rows}


STAGES = _stage_rows()


@pytest.mark.parametrize("name", CORE_MODULES)
def test_each_core_module_imports_only_the_stages_its_stage_row_names(name: str) -> None:
    stage = name.split(".")[1]
    assert stage in STAGES, f"docs/architecture.md's stage table has no row for core/{stage}/"
    used = {i.split(".")[1] for i in _package_imports(MODULES[name]) if i.startswith("core.")} - {stage}
    assert used <= STAGES[stage], (
        f"{name} imports the stages {sorted(used - STAGES[stage])}, which the row of core/{stage}/ in "
        "docs/architecture.md does not list: add them there (keeping the stages free of cycles), or move "
        "the code to the stage it belongs to"
    )


def test_the_stages_form_no_cycle() -> None:
    done: set[str] = set()

    def visit(stage: str, trail: list[str]) -> None:
        if stage in trail:
            pytest.fail(
                "stage cycle in docs/architecture.md: " + " -> ".join([*trail[trail.index(stage) :], stage])
            )
        if stage in done:
            return
        for target in sorted(STAGES.get(stage, ())):
            visit(target, [*trail, stage])
        done.add(stage)

    for stage in sorted(STAGES):
        visit(stage, [])


def test_every_core_stage_folder_is_in_the_stage_table() -> None:
    folders = {path.name for path in (PACKAGE / "core").iterdir() if (path / "__init__.py").exists()}
    assert folders == set(STAGES), f"stage folders {sorted(folders)} vs the table's {sorted(STAGES)}"


@pytest.mark.parametrize(
    "folder", sorted({path.parent for path in MODULES.values()}), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_folder_holds_more_than_fifteen_modules(folder: Path) -> None:
    modules = [path for path in folder.glob("*.py") if path.name != "__init__.py"]
    assert len(modules) <= MAX_MODULES_PER_FOLDER, (
        f"{folder.relative_to(PACKAGE)} holds {len(modules)} modules: group them by stage into sub-packages"
    )


def test_the_tests_mirror_the_core() -> None:
    """Each core module with a test has it at ``tests/core/<stage>/test_<module>.py``, and no test
    module of ``tests/core/`` names a module that does not exist."""
    tests = ROOT / "tests" / "core"
    orphans = [
        path.relative_to(ROOT).as_posix()
        for path in tests.rglob("test_*.py")
        if f"core.{path.parent.name}.{path.stem.removeprefix('test_')}" not in MODULES
    ]
    assert not orphans, (
        f"test modules naming no core module (rename them after the module they test): {orphans}"
    )


def test_the_emulator_and_the_core_never_import_each_other_the_wrong_way() -> None:
    for name, path in MODULES.items():
        if name.startswith("core."):
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
