"""One call that wires a whole batch run into a DAG: build, then rounds of submit, wait, fan out and
requeue, then the report.

::

    build ─► round_0: submit ─► wait ─► fanout ─► requeue ─► round_1: submit ─► ... ─► report

Each round maps its tasks over the round's shards (``.expand(shard=...)``), so a run of twenty shards
shows twenty submit, wait and fanout task instances per round, and XCom carries only the shards'
descriptors. A round whose shard list is empty (nothing left to requeue, or a dry run) is skipped by
Airflow together with the rounds after it; the report still runs. The report runs only when no task
before it failed: a failed fanout means results are missing, and a manifest written then would
under-count. Rerunning the failed task (or clearing the run) resumes without paying twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import TaskGroup, TriggerRule

from airflow_claude_batch.operators.build import ClaudeBatchBuildOperator
from airflow_claude_batch.operators.fanout import ClaudeBatchFanoutOperator
from airflow_claude_batch.operators.report import ClaudeBatchReportOperator
from airflow_claude_batch.operators.requeue import ClaudeBatchRequeueOperator
from airflow_claude_batch.operators.submit import ClaudeBatchSubmitOperator
from airflow_claude_batch.sensors.batch import ClaudeBatchSensor

if TYPE_CHECKING:
    from airflow.providers.standard.operators.python import ShortCircuitOperator
    from typing_extensions import Unpack

    from airflow_claude_batch.operators.build_options import BuildOptions

#: The most rounds a pipeline may have; each round adds a few tasks to the DAG.
MAX_ROUNDS = 10


class ClaudeBatchPipeline(TaskGroup):
    """The task group ``claude_batch_pipeline`` adds; what its run gives back is at hand:

    - ``output``: the report task's summary (XCom), for a downstream task: ``input_records``,
      ``dispositions``, ``batches``, the money (``actual_cost_usd``, ``savings_usd``, ...), and
      ``files`` (``output``: the flat output's URI, ``manifest``, ``report``, ``dead_letter``, ...);
    - ``report``: the report task itself.
    """

    @property
    def report(self) -> ClaudeBatchReportOperator:
        return self.get_child_by_label("report")  # type: ignore[return-value]

    @property
    def output(self) -> Any:
        return self.report.output


def claude_batch_pipeline(
    group_id: str = "claude_batch",
    *,
    max_rounds: int = 3,
    requeue_rounds: int | str | None = None,
    poll_interval: float | None = None,
    pacing_timeout: float | None = None,
    deferrable: bool | None = None,
    output_parser: Callable[[str], Any] | None = None,
    keep_thinking: bool = False,
    output_uri: str | None = None,
    outlets: Iterable[Any] | None = None,
    requeue_canceled: bool = True,
    custom_input: bool | str = False,
    max_invalid_fraction: float | str | None = None,
    max_dead_letter_fraction: float | str | None = None,
    max_pending_fraction: float | str | None = None,
    replace_output: bool | str = False,
    **build_options: Unpack[BuildOptions],
) -> ClaudeBatchPipeline:
    """Add a Claude batch run to the current DAG as one task group and return the group.

    It takes every parameter of
    :class:`~airflow_claude_batch.operators.build.ClaudeBatchBuildOperator` but ``pipeline_id`` and
    ``later_templates`` (``source``, ``storage``, ``model``, ``max_cost_usd`` ...: the keys of
    :class:`~airflow_claude_batch.operators.build_options.BuildOptions`), with the same names, defaults
    and meaning, and passes them to the build task unchanged, templates included; the connections,
    ``storage``, the shard limits, ``output_schema``, ``prices_file`` and ``retry_errored_sync`` reach
    the other tasks too.

    :param group_id: the task group's id; task ids are ``{group_id}.build``,
        ``{group_id}.round_0.submit`` ... ``{group_id}.report``. It is also the pipeline's name in its
        run folder, ``{storage}/{dag_id}/{run_id}/{group_id}/``: give each pipeline of a DAG its own.
    :param max_rounds: rounds in all, the first submission included (``1``: no requeue). Fixed when
        the DAG is parsed, because each round is a set of tasks.
    :param requeue_rounds: how many of the ``max_rounds - 1`` requeue rounds a run may use, usually a
        template such as ``"{{ params.requeue_rounds }}"`` so that a manual trigger can lower it.
        ``None`` uses them all. What a run does not requeue is listed in its ``pending.jsonl``.
    :param poll_interval: seconds between polls of each batch (default: ``[claude_batch]
        poll_interval``, 60).
    :param pacing_timeout: seconds a submit task may wait for the API's capacity (its queue or rate
        limit full) before it fails (see the submit operator; default 24 hours).
    :param deferrable: wait in the triggerer (``True``) or in a worker (``False``), for batches and for
        the proof of a lost create; ``None`` keeps ``[operators] default_deferrable``.
    :param output_parser: turns a succeeded answer's text into a value (see the fanout operator).
    :param output_schema: (a build parameter) also checked by every fanout and requeue: a JSON-schema
        dict or a Pydantic model the parsed answer must satisfy; the build asks for it in every request
        as ``structured_output`` says (see the build operator).
    :param keep_thinking: keep each answer's thinking blocks in its row (see the fanout operator).
    :param output_uri: where the report writes the flat, joinable output (one row per succeeded
        record); templated, e.g. ``"{{ var.value.out }}/labels/{{ ds }}.jsonl"``.
    :param outlets: Assets the report task updates, e.g. ``[Asset("ticket_labels")]``.
    :param requeue_canceled: requeue canceled requests (of batches nobody cancelled on purpose) as
        well as expired ones.
    :param retry_errored_sync: (a build parameter) retry retryable errored requests once synchronously,
        at standard prices, before requeueing what still fails (see the requeue operator; templated,
        e.g. ``"{{ params.retry_errored_sync }}"``); the build's upper bound then prices every answer at
        standard prices. Where the synchronous endpoint is missing or unreachable the requests are
        requeued as without it.
    :param prices_file: (a build parameter) a JSON price table over the shipped prices, for every
        estimate and cost of the run.
    :param reuse_answers: (a build parameter) answer a request from the answer store under ``storage``
        when any run sharing the root already bought its answer (same model and params); ``True`` or a
        maximum age such as ``"30d"`` (see the build operator). The fanouts and synchronous retries store
        the run's good answers. Leave it off to sample several answers on purpose, or with a
        temperature above 0.
    :param custom_input: the run reads an input other than its interval's own (templated, e.g.
        ``"{{ params.input_path is not none }}"``): its flat output goes into its run folder, never to
        ``output_uri`` (see the report operator).
    :param max_invalid_fraction: fail the run (its report task, so its ``outlets`` are not updated)
        when more than this share of the input records ended ``invalid_output``; default ``None``:
        never. The manifest's ``failure`` and the report page say why (templated).
    :param max_dead_letter_fraction: the same bound for dead-lettered records (templated).
    :param max_pending_fraction: the same bound for records left pending after the last round
        (templated): out of rounds or held by the budget, they would otherwise leave the run green.
    :param replace_output: let the run replace ``output_uri`` (and own it) although the run that owns
        it ran other request settings over the same interval and input (templated, e.g.
        ``"{{ params.replace_output }}"``; default ``False``: such a run, an experiment with another
        model or ``max_tokens``, writes its flat output into its own run folder; see the report operator).
    :return: the task group; ``upstream >> group >> downstream`` works as for a task, and
        ``group.output`` is the report's summary for a downstream task (see :class:`ClaudeBatchPipeline`).
    """
    options = _build_arguments(build_options)
    if not 1 <= max_rounds <= MAX_ROUNDS:
        raise ValueError(f"max_rounds must be between 1 and {MAX_ROUNDS}, got {max_rounds}")
    tooltip = "Claude Message Batches: build, submit, wait, fan out, report"
    with ClaudeBatchPipeline(group_id, tooltip=tooltip) as group:
        later_templates = {
            "output_uri": output_uri,
            "requeue_rounds": requeue_rounds,
            "custom_input": custom_input,
            "max_invalid_fraction": max_invalid_fraction,
            "max_dead_letter_fraction": max_dead_letter_fraction,
            "max_pending_fraction": max_pending_fraction,
            "replace_output": replace_output,
        }
        build = ClaudeBatchBuildOperator(
            task_id="build",
            **options,
            pipeline_id=group.group_id,
            later_templates={k: v for k, v in later_templates.items() if isinstance(v, str)},
        )
        answer_checks = {
            "output_parser": output_parser,
            "output_schema": options["output_schema"],
            "keep_thinking": keep_thinking,
        }
        round_settings = _RoundSettings(
            conn_id=options["conn_id"],
            storage_conn_id=options["storage_conn_id"],
            poll_interval=poll_interval,
            sensor_kwargs={} if deferrable is None else {"deferrable": deferrable},
            submit_kwargs={} if pacing_timeout is None else {"pacing_timeout": pacing_timeout},
            fanout_kwargs={
                **answer_checks,
                "prices_file": options["prices_file"],
                "reuse_answers": options["reuse_answers"],
            },
            requeue_kwargs={
                **answer_checks,
                "reuse_answers": options["reuse_answers"],
                "prices_file": options["prices_file"],
                "requeue_canceled": requeue_canceled,
                "retry_errored_sync": options["retry_errored_sync"],
                "max_requests_per_shard": options["max_requests_per_shard"],
                "max_bytes_per_shard": options["max_bytes_per_shard"],
            },
            requeue_rounds=requeue_rounds,
        )
        shards: Any = build.output
        ends_of_rounds: list[Any] = []
        for round_index in range(max_rounds):
            is_last = round_index == max_rounds - 1
            with TaskGroup(f"round_{round_index}", tooltip=f"round {round_index}: submit, wait, fan out"):
                fanout, requeue = _add_round(round_index, shards, round_settings, requeue=not is_last)
            ends_of_rounds.append(fanout)
            if requeue is not None:
                ends_of_rounds.append(requeue)
                shards = requeue.output
        report = ClaudeBatchReportOperator(
            task_id="report",
            storage=options["storage"],
            storage_conn_id=options["storage_conn_id"],
            max_rounds=max_rounds,
            prices_file=options["prices_file"],
            output_uri=output_uri,
            outlets=list(outlets or []),
            pipeline_id=group.group_id,
            custom_input=custom_input,
            replace_output=replace_output,
            max_invalid_fraction=max_invalid_fraction,
            max_dead_letter_fraction=max_dead_letter_fraction,
            max_pending_fraction=max_pending_fraction,
            # Skipped rounds (no shards left, or a dry run) must not skip the report; a failed or
            # upstream-failed task must stop it: none_failed is exactly that.
            trigger_rule=TriggerRule.NONE_FAILED,
        )
        [build, *ends_of_rounds] >> report
    return group


#: The build operator's parameters the pipeline passes on: all but the two it sets itself.
_BUILD_PARAMETERS = [
    parameter
    for name, parameter in inspect.signature(ClaudeBatchBuildOperator.__init__).parameters.items()
    if name not in ("self", "kwargs", "pipeline_id", "later_templates")
]


def _build_arguments(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every build parameter, as given or else at the build operator's default; a missing or unknown
    one is a ``TypeError`` naming it, as for a parameter of the pipeline's own."""
    try:
        bound = inspect.Signature(_BUILD_PARAMETERS).bind(**given)
    except TypeError as exc:
        raise TypeError(f"claude_batch_pipeline() {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _with_build_parameters(signature: inspect.Signature) -> inspect.Signature:
    """The pipeline's signature as ``help()`` and ``inspect`` show it: the build parameters, by name, in
    the place of ``**build_options``."""
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return signature.replace(parameters=[own[0], *_BUILD_PARAMETERS, *own[1:]])


claude_batch_pipeline.__signature__ = _with_build_parameters(  # type: ignore[attr-defined]
    inspect.signature(claude_batch_pipeline)
)


@dataclass(frozen=True)
class _RoundSettings:
    """What every round's tasks share, gathered so that ``_add_round`` stays short."""

    conn_id: str
    storage_conn_id: str | None
    poll_interval: float | None
    sensor_kwargs: Mapping[str, Any]
    submit_kwargs: Mapping[str, Any]
    fanout_kwargs: Mapping[str, Any]
    requeue_kwargs: Mapping[str, Any]
    requeue_rounds: int | str | None


def _add_round(round_index: int, shards: Any, settings: _RoundSettings, *, requeue: bool) -> tuple[Any, Any]:
    """Add one round's tasks inside the current task group; return its fanout and its requeue task."""
    # [START howto_operators_claude_batch_round]
    submit = ClaudeBatchSubmitOperator.partial(
        task_id="submit",
        conn_id=settings.conn_id,
        storage_conn_id=settings.storage_conn_id,
        # a lost create's candidates are looked at as often as batches are polled
        **({} if settings.poll_interval is None else {"recheck_interval": max(settings.poll_interval, 1.0)}),
        **settings.submit_kwargs,
        **settings.sensor_kwargs,
    ).expand(shard=shards)
    wait = ClaudeBatchSensor.partial(
        task_id="wait",
        conn_id=settings.conn_id,
        poll_interval=settings.poll_interval,
        # a shard stopped by a cancel is skipped; the other shards' batches are still waited for and
        # fanned out (their processed requests are billed), so none_failed, not all_success
        trigger_rule=TriggerRule.NONE_FAILED,
        **settings.sensor_kwargs,
    ).expand(shard=submit.output)
    fanout = ClaudeBatchFanoutOperator.partial(
        task_id="fanout",
        trigger_rule=TriggerRule.NONE_FAILED,
        conn_id=settings.conn_id,
        storage_conn_id=settings.storage_conn_id,
        **settings.fanout_kwargs,
    ).expand(shard=wait.output)
    if not requeue:
        return fanout, None
    requeue_task = ClaudeBatchRequeueOperator(
        task_id="requeue",
        shards=fanout.output,
        round_index=round_index,
        conn_id=settings.conn_id,
        storage_conn_id=settings.storage_conn_id,
        **settings.requeue_kwargs,
    )
    # [END howto_operators_claude_batch_round]
    if settings.requeue_rounds is not None:
        fanout >> _requeue_gate(round_index, settings.requeue_rounds) >> requeue_task
    return fanout, requeue_task


def _requeue_gate(round_index: int, requeue_rounds: int | str) -> ShortCircuitOperator:
    """A task that skips this round's requeue (and so the rounds after it) beyond the run's limit.

    Only the requeue is skipped directly; the later rounds skip through their trigger rules and the
    report, whose rule is ``none_failed``, still runs.
    """
    # Imported when a DAG uses requeue rounds (the standard provider's python operators are not light).
    from airflow.providers.standard.operators.python import ShortCircuitOperator

    return ShortCircuitOperator(
        task_id="may_requeue",
        python_callable=_within_requeue_limit,
        op_kwargs={"round_index": round_index, "requeue_rounds": requeue_rounds},
        ignore_downstream_trigger_rules=False,
        doc_md="Skips the requeue when the run's `requeue_rounds` limit is reached.",
    )


def _within_requeue_limit(round_index: int, requeue_rounds: int | str) -> bool:
    """Return whether round ``round_index`` may requeue, given the run's limit of requeue rounds."""
    try:
        limit = int(requeue_rounds)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"requeue_rounds must be a whole number of rounds, got {requeue_rounds!r}; "
            "check the value given in the trigger form or the template"
        ) from exc
    return round_index < limit
