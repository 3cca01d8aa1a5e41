"""Who owns a flat output: the rule that stops one run from replacing another run's ``output_uri``.

A flat output such as ``labels/2026-11-02.jsonl`` is shared by every run whose ``output_uri`` renders to
it, so it gets an owner record beside it, ``labels/2026-11-02.jsonl.owner.json``, naming the DAG, the
pipeline, the data interval, the input (the source URIs the build read), the digest of the request
settings (the input fingerprint's ``params_digest``: model, prompt and system, ``max_tokens`` and the
other params, the output schema...) and the run that wrote it.

The rule, checked by the report before it writes:

- A run that read a custom input (``custom_input``: for example a path typed in the trigger form)
  never writes ``output_uri``: its flat output goes into its own run folder.
- Otherwise a run replaces ``output_uri`` only when it *claims the same thing* as the owner record:
  same DAG, same pipeline, same data interval, same input sources. A rerun, a backfill of the interval
  or a re-sweep of it after late data replace it; a run over another interval, another input or from
  another DAG or pipeline does not. A run over a data interval may also replace what a run without
  one (a manual run over the same input) wrote.
- The request settings must be the owner's too: an experiment over the same interval and input with
  another model, prompt or ``max_tokens`` writes its own output, unless it is run with
  ``replace_output=True`` (a documented parameter of the pipeline and the report), which lets it
  replace the output, and own it, although its settings differ. An owner record written before the
  settings were recorded (schema 1) has no digest: its settings are taken as the same.
- No owner record and no file: the run writes it and becomes its owner. A file without an owner record
  (written by hand or by an older version) is never replaced.

A run that may not replace the output writes its flat output into its own run folder instead
(``{run folder}/output.jsonl``, or ``.csv``) and says so in its log, manifest and Asset event. The owner
record is written before the output (both whole or not at all), so a run stopped between the two still
owns the path on its rerun. Two runs writing the same path at the same instant are not serialized: the
rule is about which runs may, not a lock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from airflow_claude_batch.core.run.layout import RunFolder
from airflow_claude_batch.core.run.storage import StoragePath, read_json, write_json

OWNER_SCHEMA_VERSION = 2
# Version 1 records (no settings digest) are still read: their settings are unknown, never a difference.
_READABLE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class OutputClaim:
    """What a run claims when it writes a flat output.

    :param dag_id: the run's DAG.
    :param pipeline_id: the pipeline (task group id) in the DAG.
    :param run_id: the run.
    :param data_interval: ``[start, end]`` as ISO 8601 text, or ``None`` for a run without one.
    :param sources: the input URIs the build read, sorted (``None``: unknown, e.g. a callable source).
    :param run_folder: the run folder that holds the answers.
    :param params_digest: the digest of the run's request settings (the input fingerprint's
        ``params_digest``), or ``None`` when unknown.
    """

    dag_id: str
    pipeline_id: str
    run_id: str
    data_interval: tuple[str, str] | None
    sources: tuple[str, ...] | None
    run_folder: str
    params_digest: str | None = None
    schema_version: int = OWNER_SCHEMA_VERSION

    def same_claim(self, other: OutputClaim) -> bool:
        """Whether ``other`` claims the same DAG, pipeline, interval and input (the run may differ)."""
        return (
            self.dag_id == other.dag_id
            and self.pipeline_id == other.pipeline_id
            and self.data_interval == other.data_interval
            and self.sources is not None
            and self.sources == other.sources
        )

    def same_settings(self, owner: OutputClaim) -> bool:
        """Whether the request settings are the owner's; an unknown digest is never a difference."""
        return None in (self.params_digest, owner.params_digest) or self.params_digest == owner.params_digest

    def may_replace(self, owner: OutputClaim, *, replace_output: bool = False) -> bool:
        """Whether a run claiming this may replace the output ``owner`` wrote.

        The same claim may, with the same request settings (or other settings and ``replace_output``);
        so may a run over a data interval replacing what a run without one (a manual run over the same
        input) wrote, since only a run over the interval is its own.
        """
        if not (replace_output or self.same_settings(owner)):
            return False
        if self.same_claim(owner):
            return True
        if owner.data_interval is not None or self.data_interval is None:
            return False
        return self.same_claim(dataclasses.replace(owner, data_interval=self.data_interval))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> OutputClaim | None:
        """Read a stored owner record; ``None`` when it is not one this version understands."""
        if not isinstance(data, dict) or data.get("schema_version") not in _READABLE_VERSIONS:
            return None
        try:
            interval = data.get("data_interval")
            sources = data.get("sources")
            return cls(
                dag_id=str(data["dag_id"]),
                pipeline_id=str(data["pipeline_id"]),
                run_id=str(data["run_id"]),
                data_interval=None if interval is None else (str(interval[0]), str(interval[1])),
                sources=None if sources is None else tuple(str(uri) for uri in sources),
                run_folder=str(data["run_folder"]),
                params_digest=None if data.get("params_digest") is None else str(data["params_digest"]),
            )
        except (KeyError, IndexError, TypeError):
            return None


@dataclass(frozen=True)
class OutputPlace:
    """Where a run's flat output goes, and why.

    :param target: the file to write.
    :param owned: whether ``target`` is the shared ``output_uri`` (the run owns it).
    :param reason: why the run does not own ``output_uri``, when it does not.
    :param previous: the owner record the run replaces or respects, if there was one.
    """

    target: StoragePath
    owned: bool
    reason: str | None = None
    previous: OutputClaim | None = None


def owner_record_path(output: StoragePath) -> StoragePath:
    """The owner record beside ``output``: ``{output}.owner.json``."""
    return output.parent / f"{output.name}.owner.json"  # type: ignore[attr-defined]


def own_folder_output(folder: RunFolder, output: StoragePath) -> StoragePath:
    """The flat output inside the run folder, for a run that does not own ``output``."""
    suffix = ".csv" if output.name.lower().endswith(".csv") else ".jsonl"
    return folder.root / f"output{suffix}"


def place_output(
    output: StoragePath,
    folder: RunFolder,
    claim: OutputClaim,
    *,
    custom_input: bool,
    replace_output: bool = False,
) -> OutputPlace:
    """Apply the ownership rule (see the module's docstring) to a run about to write ``output``.

    :param replace_output: the user asked to replace an output whose owner ran other request settings.
    """
    if custom_input:
        reason = "the run read a custom input, not its interval's own"
        return OutputPlace(own_folder_output(folder, output), False, reason)
    previous = OutputClaim.from_dict(read_json(owner_record_path(output)))
    if previous is None:
        if output.exists():
            reason = f"{output} exists without an owner record (written by hand or an older version)"
            return OutputPlace(own_folder_output(folder, output), False, reason)
        return OutputPlace(output, True)
    if claim.may_replace(previous, replace_output=replace_output):
        return OutputPlace(output, True, previous=previous)
    reason = (
        f"{output} is owned by run {previous.run_id} of {previous.dag_id}.{previous.pipeline_id} over "
        f"interval {_interval_text(previous.data_interval)} and input {_sources_text(previous.sources)}"
    )
    if claim.same_claim(previous) and not claim.same_settings(previous):
        reason += (
            ", whose request settings (model, prompt, max_tokens or other params) differ from this "
            "run's; run with replace_output=True to replace it on purpose"
        )
    return OutputPlace(own_folder_output(folder, output), False, reason, previous)


def claim_output(output: StoragePath, claim: OutputClaim) -> None:
    """Write the owner record of ``output`` (before the output itself)."""
    write_json(owner_record_path(output), claim.to_dict())


def _interval_text(interval: tuple[str, str] | None) -> str:
    return "none" if interval is None else f"{interval[0]} to {interval[1]}"


def _sources_text(sources: tuple[str, ...] | None) -> str:
    if sources is None:
        return "unknown"
    return ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
