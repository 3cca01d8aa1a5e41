"""The JSON files shipped beside the core's modules, and a user's file of the same shape laid over one.

``prices.json`` and ``models.json`` are read the same way: the shipped document, then the user's file
(a path passed in, else the one an environment variable names) read whole and checked to be a JSON
object; the caller lays its entries over the shipped ones.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from airflow_claude_batch.exceptions import InputError


def read_shipped(name: str) -> Any:
    """Return the parsed JSON file ``name`` shipped in this package.

    :param name: the file's name beside the core's modules (``prices.json``).
    """
    return orjson.loads(resources.files(__package__).joinpath(name).read_bytes())


def override_path(path: Any | None, env_var: str) -> Any | None:
    """Return ``path``, else the path named by ``env_var`` when it is set and not empty, else ``None``.

    :param path: a path given by the caller.
    :param env_var: the environment variable that names a user's file.
    """
    return path if path is not None else os.environ.get(env_var) or None


def read_override(path: Any, *, kind: str, hint: str) -> Mapping[str, Any]:
    """Return a user's file as a JSON object.

    :param path: a local path, or a path-like object with ``open``.
    :param kind: what the file holds, for messages (``prices``, ``models``).
    :param hint: where the path came from, for messages (``prices_file= or CLAUDE_BATCH_PRICES_FILE``).
    :raises InputError: the file cannot be read, is not JSON, or is not a JSON object.
    """
    try:
        if isinstance(path, str) or not hasattr(path, "open"):
            data = Path(path).read_bytes()
        else:
            with path.open("rb") as handle:
                data = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read the {kind} file {path}: {exc}; check {hint}") from exc
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the {kind} file {path} is not valid JSON ({exc}); fix the file") from exc
    if not isinstance(document, dict):
        raise InputError(f"the {kind} file {path} must hold a JSON object with a 'models' object")
    return document
