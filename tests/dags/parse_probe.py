"""Parse a DAG folder the way the DAG processor does, and report everything the parse touched.

Run in a fresh interpreter: ``python parse_probe.py DAGS_FOLDER PACKAGE_DIR RESULT_FILE``. Airflow
is imported and warmed up first (the DAG processor has it loaded before it parses a file); then an
audit hook records every file opened outside the code paths, every socket connection, SQLite
connection and process spawned while the ``DagBag`` parses the folder. Writes one JSON object to
RESULT_FILE: ``dag_ids``, ``import_errors``, ``warnings``, ``touched`` (what the parse should not have
done) and ``tasks``.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import tempfile
import warnings
from typing import Any

CODE_SUFFIXES = (".py", ".pyc", ".pyi", ".so", ".pth")
WATCHED_EVENTS = ("socket.connect", "socket.getaddrinfo", "sqlite3.connect", "subprocess.Popen", "os.system")


def _python_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        paths["stdlib"],
        paths["purelib"],
        paths["platlib"],
    }
    return tuple(os.path.realpath(root) + os.sep for root in roots)


def main(dags_folder: str, package_dir: str) -> dict[str, Any]:
    from airflow_claude_batch.compat import dag_bag_class

    DagBag = dag_bag_class()

    # Warm up what Airflow loads once per process (plugins, providers, timetables), outside the probe.
    with tempfile.TemporaryDirectory() as empty:
        DagBag(dag_folder=empty)

    python_roots = _python_roots()
    code_roots = tuple(os.path.realpath(p) + os.sep for p in (dags_folder, package_dir))
    touched: list[str] = []

    def allowed_open(path: str) -> bool:
        real = os.path.realpath(path)
        if real.startswith(python_roots) or real == "/dev/null":
            return True
        # Airflow 3.1 reads the source of the calling frames (this probe) while a DAG is built, and its
        # import machinery opens the entries it puts on sys.path (config/, plugins/): neither is the
        # DAG file's doing.
        if real == os.path.realpath(__file__) or real in {os.path.realpath(entry) for entry in sys.path}:
            return True
        # In the package and the DAG folder only code may be read: no data file, prompt or price table.
        return real.startswith(code_roots) and (
            real.endswith(CODE_SUFFIXES) or os.path.basename(real) == ".airflowignore"
        )

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path = args[0]
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if isinstance(path, str) and not allowed_open(path):
                touched.append(f"open {path}")
        elif event in WATCHED_EVENTS:
            touched.append(f"{event} {args[:2]!r}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Airflow reads .airflowignore through a pathspec API that pathspec deprecates: Airflow's own.
        warnings.filterwarnings("ignore", message=r"GitWildMatchPattern .* is deprecated")
        sys.addaudithook(hook)
        bag = DagBag(dag_folder=dags_folder)
    return {
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": bag.import_errors,
        "warnings": [f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}" for w in caught]
        + [text for texts in bag.captured_warnings.values() for text in texts],
        "touched": sorted(set(touched)),
        "tasks": {dag_id: sorted(bag.dags[dag_id].task_dict) for dag_id in bag.dag_ids},
    }


if __name__ == "__main__":
    folder, package, result_file = sys.argv[1:4]
    report = main(folder, package)
    with open(result_file, "w") as out:  # written after the probe: the hook no longer matters
        json.dump(report, out)
