"""A run's records rendered in order (:mod:`.rendering`), each custom_id unique across the whole run.

Uniqueness is tracked in 64-bit digests (8 bytes an id) and a digest match is confirmed by looking back
through the input, so the error names both records and a digest collision is never taken for a
duplicate. A record that cannot be rendered stops the run, or is handed to the build's rejections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from airflow_claude_batch.core.requests.rendering import EncodedRequest, RequestRenderer, RequestTemplate
from airflow_claude_batch.core.requests.sources import Record, RecordSource
from airflow_claude_batch.core.requests.unique_ids import DigestSet, id_digest, raise_if_used_before
from airflow_claude_batch.exceptions import InputError


def iter_requests(
    source: RecordSource,
    template: RequestTemplate,
    on_invalid: Callable[[InputError, str | None], None] | None = None,
) -> Iterator[EncodedRequest]:
    """Render every record of ``source``, in order, checking that custom_ids are unique across the run.

    :param source: records with their locations (re-iterable, so a duplicate's first use can be named).
    :param template: how records become requests.
    :param on_invalid: takes a record's fault (the error and the record's id, when it has one) and
        goes on with the next record, or raises to stop (see
        :mod:`~airflow_claude_batch.core.build.rejections`);
        ``None``: the first fault is raised.
    :raises InputError: a record cannot be rendered, an id repeats, or the source has no record.
    """
    renderer = RequestRenderer(template)
    seen = DigestSet()
    count = rejected = 0
    for record, location in source:
        try:
            request = renderer.render(record, location)
            if not seen.add(id_digest(request.custom_id)):
                raise_if_used_before(
                    source, renderer.custom_id, request.custom_id, request.location, count + rejected
                )
        except InputError as exc:
            if on_invalid is None or exc.location is None:
                raise
            on_invalid(exc, _record_id(record, template.custom_id_field))
            rejected += 1
            continue
        count += 1
        yield request
    if count == 0 and not rejected:
        raise InputError(
            f"{_source_name(source)} has no records; check the source URI or glob and that the files are "
            "not empty"
        )


def _record_id(record: Record, field: str) -> str | None:
    value = record.get(field) if isinstance(record, Mapping) else None
    return str(value) if type(value) in (str, int) else None


def _source_name(source: RecordSource) -> str:
    """Name what was read (the files, or the callable), so that an empty input can be found."""
    labels = getattr(source, "labels", None) or [getattr(source, "label", None)]
    names = [str(label) for label in labels if label]
    if not names:
        return "the source"
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"the source ({shown})"
