"""OpenLineage for the build, fanout and report tasks, when the OpenLineage provider is installed.

Each of those operators records the files it read and wrote while it runs and answers
``get_openlineage_facets_on_complete`` with them: the build reads the source files and writes the
shard request files; a fanout reads its shard's request file and writes the shard's outcome files; the
report reads the run folder and writes the manifest, the report page, the dead-letter and pending
files and the flat output. Without ``apache-airflow-providers-openlineage`` nothing here is imported
and the method returns ``None`` (Airflow never calls it then).

Datasets are named as OpenLineage names objects: ``s3://bucket/key`` is namespace ``s3://bucket`` and
name ``key``; a local file is namespace ``file`` and its absolute path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit


def dataset_name(uri: str) -> tuple[str, str]:
    """Return ``(namespace, name)`` for a file URI or path, as OpenLineage names datasets.

    :param uri: ``s3://bucket/key``, ``file:///abs/path`` or a local path.
    """
    text = str(uri)
    parts = urlsplit(text)
    if parts.scheme in ("", "file"):
        return "file", parts.path if parts.scheme else text
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def operator_lineage(inputs: Iterable[Any], outputs: Iterable[Any]) -> Any:
    """An ``OperatorLineage`` of the given files, or ``None`` without the OpenLineage provider.

    :param inputs: the files read (URIs, paths or path objects).
    :param outputs: the files written.
    """
    try:
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None

    def datasets(uris: Iterable[Any]) -> list[Any]:
        unique = dict.fromkeys(dataset_name(str(uri)) for uri in uris)
        return [Dataset(namespace=namespace, name=name) for namespace, name in unique]

    return OperatorLineage(inputs=datasets(inputs), outputs=datasets(outputs))


class LineageMixin:
    """Remembers what a task read and wrote, and answers OpenLineage with it on completion."""

    _lineage_inputs: tuple[str, ...] = ()
    _lineage_outputs: tuple[str, ...] = ()

    def record_lineage(self, inputs: Iterable[Any], outputs: Iterable[Any]) -> None:
        """Remember the files this run read and wrote.

        :param inputs: the files read.
        :param outputs: the files written.
        """
        self._lineage_inputs = tuple(str(uri) for uri in inputs)
        self._lineage_outputs = tuple(str(uri) for uri in outputs)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The files read and written, for the OpenLineage provider (``None`` without it)."""
        return operator_lineage(self._lineage_inputs, self._lineage_outputs)
