"""``GET /v1/models`` and ``GET /v1/models/{model_id}``: the catalogue with the SDK's ``ModelInfo`` fields.

The list is newest first and pages with ``limit`` (1 to 1000, default 20), ``after_id`` and
``before_id`` as the batch list does. A model is found by its id or an alias, exactly (case-sensitive).
"""

from __future__ import annotations

from typing import Any

from airflow_claude_batch.core.api.model_catalogue import ModelCatalogue, ModelSpec
from airflow_claude_batch.emulator.checks.errors import ApiError


def model_info(spec: ModelSpec) -> dict[str, Any]:
    """Return the API's model object for ``spec``."""
    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.display_name,
        "created_at": spec.created_at,
        "lifecycle": "active",
        "deprecated_at": None,
        "retires_at": None,
        "line": spec.family,
        "max_input_tokens": spec.context_window,
        "max_tokens": spec.max_output_tokens,
    }


def get_model_info(catalogue: ModelCatalogue, model_id: str) -> dict[str, Any]:
    """Return one model's object.

    :raises ApiError: 404 ``not_found_error`` for an unknown id.
    """
    spec = catalogue.find(model_id)
    if spec is None:
        raise ApiError("not_found_error", f"model: {model_id}")
    return model_info(spec)


def list_models(
    catalogue: ModelCatalogue, *, limit: int, after_id: str | None, before_id: str | None
) -> dict[str, Any]:
    """Return one page of models, newest first."""
    ids = [spec.id for spec in catalogue]
    for cursor in (after_id, before_id):
        if cursor is not None and cursor not in ids:
            raise ApiError("invalid_request_error", f"{cursor!r} is not a model id of this list")
    if before_id is not None:
        end = ids.index(before_id)
        page = ids[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        start = ids.index(after_id) + 1 if after_id is not None else 0
        page = ids[start : start + limit]
        has_more = start + limit < len(ids)
    return {
        "data": [model_info(catalogue.get(model_id)) for model_id in page],
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
