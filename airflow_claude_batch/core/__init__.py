"""The Airflow-free core: everything here is plain Python, tested without Airflow.

Modules take path-like storage objects (``pathlib.Path``, ``upath.UPath`` or Airflow's
``ObjectStoragePath``) and plain dicts; they never import Airflow.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A stage package's ``__getattr__`` and ``__dir__`` (PEP 562) that import each name on first use.

    Importing a stage then loads none of its modules: a DAG file's parse pays only for the modules the
    operators it builds need, not for every stage's every module (and their libraries).

    :param package: the stage package's ``__name__``.
    :param exports: module name within the package → the names it exports through the package.
    """
    module_of = {name: module for module, names in exports.items() for name in names}
    # A name that is also a module's (``report.round_budget``) is bound now: importing that module later
    # would set the package's attribute to the module, and ``__getattr__`` would never be asked.
    for name in [name for name in module_of if name in exports]:
        value = getattr(importlib.import_module(f"{package}.{module_of.pop(name)}"), name)
        setattr(sys.modules[package], name, value)

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)  # the next lookup does not come here
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *module_of})  # the names not imported yet too

    return __getattr__, __dir__
