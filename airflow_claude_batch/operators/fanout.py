"""The fanout task: a shard's batch results, streamed once into its outcome files."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_claude_batch import DEFAULT_CONN_ID
from airflow_claude_batch.compat import AirflowFailException
from airflow_claude_batch.core.results import OutputValidator, fan_out_shard
from airflow_claude_batch.core.reuse import store_shard_answers
from airflow_claude_batch.core.run import RunFolder, ShardDescriptor
from airflow_claude_batch.exceptions import BeforeSubmitError
from airflow_claude_batch.lineage import LineageMixin
from airflow_claude_batch.operators.task_inputs import answer_store_for, load_prices


class ClaudeBatchFanoutOperator(LineageMixin, BaseOperator):
    """Stream a shard's results once and write one row per request into the shard's outcome files.

    Writes ``round-r/shard-nnnnn/{succeeded,invalid_output,errored,expired,canceled}.jsonl``, all
    published together once every request of the shard has exactly one row, so a retried task never
    leaves a half file or a line twice. A download cut in the middle is read again from the start (a
    few times) without writing a line twice. Result lines for ids the shard does not hold, and repeated
    lines, are left out and counted (``unknown_ids``, ``duplicates`` in ``outcome_counts``); a request
    without a result line fails the task (``ReconciliationError``, retried).

    Returns the descriptor with ``outcome_counts``, ``tokens`` (by kind, cache writes and reads apart)
    and ``cost_usd`` at batch prices.

    :param shard: the shard's descriptor (templated) as the wait returns it, with its ``batch_id``.
    :param conn_id: the Claude connection (templated).
    :param storage_conn_id: the connection for the run folder's storage (templated).
    :param output_parser: a callable ``text -> value``; its value is the row's ``parsed``; an exception
        sends the answer to ``invalid_output.jsonl`` with the error. A parser with a ``message`` keyword
        gets the whole Message dict too (tool calls, thinking, stop reason).
    :param output_schema: a JSON-schema dict or a Pydantic model class the answer (the schema tool's
        input, else the text read as JSON, or the parser's value) must satisfy; a violation sends it to
        ``invalid_output.jsonl``.
    :param keep_thinking: keep each answer's thinking blocks in its row (``thinking``); by default they
        are dropped (``text`` never holds them either way).
    :param sink: a callable receiving each succeeded row as it streams (for example an upsert into a
        table). A retried task calls it again for the same rows: make it idempotent on ``custom_id``.
    :param prices_file: a prices file over the shipped prices (templated; default:
        ``[claude_batch] prices_file`` or ``CLAUDE_BATCH_PRICES_FILE``).
    :param reuse_answers: store the shard's good answers (its ``succeeded`` rows, which passed the parser
        and the schema) in the answer store under the run folder's storage root, for later runs
        (templated; ``True`` or a maximum age: see the build operator). Invalid, refused, errored,
        expired and canceled answers are never stored.
    """

    template_fields: Sequence[str] = ("shard", "conn_id", "storage_conn_id", "prices_file", "reuse_answers")
    ui_color = "#e4f0d8"

    def __init__(
        self,
        *,
        shard: dict[str, Any],
        conn_id: str = DEFAULT_CONN_ID,
        storage_conn_id: str | None = None,
        output_parser: Callable[[str], Any] | None = None,
        output_schema: Mapping[str, Any] | type | None = None,
        keep_thinking: bool = False,
        sink: Callable[[dict[str, Any]], None] | None = None,
        prices_file: str | None = None,
        reuse_answers: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reuse_answers = reuse_answers
        self.shard = shard
        self.conn_id = conn_id
        self.storage_conn_id = storage_conn_id
        self.output_parser = output_parser
        self.output_schema = output_schema
        self.keep_thinking = keep_thinking
        self.sink = sink
        self.prices_file = prices_file

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_claude_batch.hooks.claude import ClaudeBatchHook

        shard = ShardDescriptor.from_dict(self.shard)
        if not shard.batch_id:
            raise AirflowFailException(
                f"round {shard.round}, shard {shard.index} has no batch_id: fan out the output of the wait "
                "task, which carries it"
            )
        batch_id = shard.batch_id
        folder = RunFolder(ObjectStoragePath(shard.run_uri, conn_id=self.storage_conn_id))
        hook = ClaudeBatchHook(conn_id=self.conn_id)
        try:
            validator = OutputValidator.from_options(
                self.output_parser, self.output_schema, keep_thinking=self.keep_thinking
            )
            prices = load_prices(self.prices_file, self.storage_conn_id)
            batch = hook.get_batch(batch_id)
            summary = fan_out_shard(
                folder=folder,
                round_index=shard.round,
                shard_index=shard.index,
                requests_path=folder.shard_requests(shard.round, shard.index),
                open_results=lambda: hook.iter_results(batch_id),
                prices=prices,
                validator=validator,
                sink=self.sink,
                cancel_initiated_at=batch.get("cancel_initiated_at"),
                batch_id=batch_id,
                marker_id=shard.marker_id,
            )
            self._store_answers(folder, shard.round, shard.index, batch_id)
        except BeforeSubmitError as exc:
            # A configuration fault (schema, prices file, connection): a retry cannot fix it.
            raise AirflowFailException(str(exc)) from exc
        finally:
            hook.close()
        self.log.info(
            "batch %s (round %d, shard %d): %s; %d tokens in, %d out; $%.4f at batch prices",
            batch_id,
            shard.round,
            shard.index,
            ", ".join(f"{count} {outcome}" for outcome, count in summary.outcome_counts.items()),
            summary.tokens.total_input,
            summary.tokens.output,
            summary.cost_usd,
        )
        self.record_lineage(
            [folder.shard_requests(shard.round, shard.index)],
            [
                folder.shard_outcome(shard.round, shard.index, outcome)
                for outcome, count in summary.outcome_counts.items()
                if count
            ],
        )
        return shard.evolve(
            outcome_counts=summary.descriptor_counts(),
            tokens=summary.tokens.to_dict(),
            cost_usd=round(summary.cost_usd, 6),
        ).to_dict()

    def _store_answers(self, folder: RunFolder, round_index: int, shard_index: int, batch_id: str) -> None:
        store = answer_store_for(self.reuse_answers, folder.storage_root)
        if store is None:
            return
        stored = store_shard_answers(store, folder, round_index, shard_index, batch_id)
        self.log.info("reuse_answers: %d good answer(s) of batch %s stored for later runs", stored, batch_id)
