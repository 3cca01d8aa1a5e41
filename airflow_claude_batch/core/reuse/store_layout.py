"""Where the answer store lives: every path and file name of it, in one place.

The store is under the storage root, beside the run folders, and shared by every pipeline and run
that uses the root::

    {storage}/_answers/v1/{key[0:2]}/{key}.json   one stored answer (``answer_store.StoredAnswer``)

``v1`` is the layout's version (a new layout starts an empty folder, never a mixed one); the two-digit
prefix folder keeps a folder's listing small at millions of answers. No DAG may be called ``_answers``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from airflow_claude_batch.core.run.layout import ANSWERS_FOLDER
from airflow_claude_batch.core.run.storage import StoragePath

LAYOUT_VERSION = "v1"
_KEY = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX = ".json"


@dataclass(frozen=True)
class AnswerStoreLayout:
    """The answer store's paths under ``storage_root``."""

    storage_root: StoragePath

    @property
    def folder(self) -> StoragePath:
        """``{storage}/_answers/v1``."""
        return self.storage_root / ANSWERS_FOLDER / LAYOUT_VERSION

    def entry(self, key: str) -> StoragePath:
        """The file of the answer stored under ``key``."""
        if not _KEY.match(key):
            raise ValueError(f"not an answer key: {key!r}")
        return self.folder / key[:2] / f"{key}{_SUFFIX}"

    def entries(self) -> Iterator[StoragePath]:
        """Every stored answer's file (for pruning), prefix folder by prefix folder."""
        if not self.folder.exists():
            return
        for prefix in sorted(self.folder.iterdir(), key=lambda path: path.name):  # type: ignore[attr-defined]
            for path in sorted(prefix.iterdir(), key=lambda path: path.name):
                if path.name.endswith(_SUFFIX) and _KEY.match(path.name[: -len(_SUFFIX)]):
                    yield path
