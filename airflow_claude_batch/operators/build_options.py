"""The build parameters ``claude_batch_pipeline`` passes on to its build task, for type checkers and
editors: ``claude_batch_pipeline(**build_options: Unpack[BuildOptions])``.

Each parameter is declared once, in ``ClaudeBatchBuildOperator.__init__``
(:mod:`airflow_claude_batch.operators.build`): its name, type, default and ``:param:`` row; whether
Airflow renders it is the operator's ``template_fields``. This record names them again, with their
types, so that an editor completes ``claude_batch_pipeline(model=...)`` and a type checker checks it;
it holds no default and no doc. ``tests/test_signatures.py`` holds it to the operator: the same names
(all but ``pipeline_id`` and ``later_templates``, which the pipeline sets itself) and the same types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Required

    from airflow_claude_batch.core.requests import RenderCallable

#: What ``source`` may be: a URI or a glob, a list of them, or a callable that yields records.
SourceSpec = str | Sequence[str] | Callable[[], Iterable[Mapping[str, Any]]]


class BuildOptions(TypedDict, total=False):
    """The build operator's parameters the pipeline takes, by name and type (see the module's text).

    ``source`` and ``storage`` are required; the others take the build operator's defaults.
    """

    source: Required[SourceSpec]
    storage: Required[str]
    storage_conn_id: str | None
    source_conn_id: str | None
    conn_id: str
    custom_id_field: str
    prompt_field: str
    render: RenderCallable | None
    model: str | None
    max_tokens: int | str
    system: str | None
    cache_system: str | None
    max_requests_per_shard: int | str
    max_bytes_per_shard: int | str
    max_cost_usd: float | str | None
    expected_output_tokens: int | str | None
    source_format: str | None
    dry_run: bool | str
    prices_file: str | None
    budget_basis: str
    retry_errored_sync: bool | str
    on_input_change: str
    on_invalid_record: str
    max_rejected_fraction: float | str
    output_schema: Mapping[str, Any] | type | None
    structured_output: str | None
    check_model: bool | str
    passthrough_fields: Sequence[str] | str | None
    reuse_answers: bool | str
