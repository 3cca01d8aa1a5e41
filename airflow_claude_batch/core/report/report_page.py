"""``report.html``: the manifest as a page a person reads in a browser.

One self-contained file: inline CSS and inline SVG charts (outcomes per round, cost with batches against
the synchronous equivalent), no script, no external font or stylesheet, so it opens offline and from an
object store's console. Every value is HTML-escaped: custom_ids, error messages and model names are user
or API data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from airflow_claude_batch.core.money.cost_history import RunCost
from airflow_claude_batch.core.report.manifest import Manifest, RoundLedger
from airflow_claude_batch.core.run.outcomes import Disposition, Outcome
from airflow_claude_batch.core.run.storage import StoragePath, atomic_writer

OUTCOME_COLOURS = {
    Outcome.SUCCEEDED: "#2e7d32",
    Outcome.INVALID_OUTPUT: "#f9a825",
    Outcome.ERRORED: "#c62828",
    Outcome.EXPIRED: "#6d4c41",
    Outcome.CANCELED: "#757575",
    Outcome.REFUSED: "#6a1b9a",
}
_COST_COLOURS = {"expected": "#78909c", "upper": "#cfd8dc", "batch": "#1565c0", "synchronous": "#ef6c00"}

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:72rem;
color:#212121;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.sub{color:#616161;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.card{border:1px solid #e0e0e0;border-radius:6px;padding:.6rem .9rem;min-width:9rem}
.card b{display:block;font-size:1.3rem}
.ok{color:#2e7d32}.bad{color:#c62828}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #e0e0e0;padding:.3rem .55rem;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.85rem;word-break:break-all}
svg text{font-family:inherit;font-size:12px}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _int(value: int) -> str:
    return f"{value:,}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = ()) -> str:
    def cell(tag: str, value: Any, index: int) -> str:
        css = ' class="n"' if index < len(numeric) and numeric[index] else ""
        return f"<{tag}{css}>{_e(value)}</{tag}>"

    head = "".join(cell("th", header, i) for i, header in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", value, i) for i, value in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def outcomes_chart(rounds: Sequence[RoundLedger], width: int = 640) -> str:
    """Return an SVG with one stacked bar per round: rows per outcome."""
    bar_height, gap, left, top = 26, 12, 80, 30
    height = top + len(rounds) * (bar_height + gap) + 10
    largest = max((sum(r.outcomes.values()) for r in rounds), default=0) or 1
    scale = (width - left - 90) / largest
    parts = [_legend(OUTCOME_COLOURS, left)]
    for i, round_ in enumerate(rounds):
        y = top + i * (bar_height + gap)
        parts.append(f'<text x="0" y="{y + 17}">round {round_.round}</text>')
        x = float(left)
        for outcome, colour in OUTCOME_COLOURS.items():
            count = round_.outcomes.get(outcome, 0)
            if not count:
                continue
            w = count * scale
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_height}" fill="{colour}">'
                f"<title>{_e(outcome)}: {count:,}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 17}">{sum(round_.outcomes.values()):,}</text>')
    return _svg(width, height, "Outcomes per round", parts)


def cost_chart(manifest: Manifest, width: int = 640) -> str:
    """Return an SVG with bars for the estimate (expected and upper bound), the actual cost and the
    synchronous equivalent."""
    money = manifest.money
    bars = [
        ("estimate (expected)", money.estimated_expected_usd, _COST_COLOURS["expected"]),
        ("estimate (upper)", money.estimated_upper_usd, _COST_COLOURS["upper"]),
        ("actual", money.actual_usd, _COST_COLOURS["batch"]),
        ("synchronous", money.synchronous_equivalent_usd, _COST_COLOURS["synchronous"]),
    ]
    bar_height, gap, left, top = 26, 12, 140, 10
    height = top + len(bars) * (bar_height + gap)
    largest = max((value or 0.0 for _, value, _ in bars), default=0.0) or 1.0
    scale = (width - left - 110) / largest
    parts = []
    for i, (label, value, colour) in enumerate(bars):
        y = top + i * (bar_height + gap)
        w = (value or 0.0) * scale
        parts.append(f'<text x="0" y="{y + 17}">{_e(label)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_height}" fill="{colour}">'
            f"<title>{_e(label)}: {_e(_usd(value))}</title></rect>"
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 17}">{_e(_usd(value))}</text>')
    return _svg(width, height, "Cost: batch against synchronous", parts)


def _legend(colours: Mapping[str, str], left: int) -> str:
    items, x = [], left
    for name, colour in colours.items():
        items.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>')
        items.append(f'<text x="{x + 16}" y="14">{_e(name)}</text>')
        x += 16 + 8 * len(name) + 14
    return "".join(items)


def _svg(width: int, height: int, title: str, parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def _cards(manifest: Manifest) -> str:
    d, r = manifest.dispositions, manifest.reused
    cards = [
        ("input records", _int(manifest.input_records)),
        (Outcome.SUCCEEDED, _int(d.get(Outcome.SUCCEEDED, 0))),
        ("invalid output", _int(d.get(Outcome.INVALID_OUTPUT, 0))),
        (Outcome.REFUSED, _int(d.get(Outcome.REFUSED, 0))),
        ("dead-lettered", _int(d.get(Disposition.DEAD_LETTERED, 0))),
        (Disposition.PENDING, _int(d.get(Disposition.PENDING, 0))),
        ("rejected at build", _int(d.get(Disposition.REJECTED, 0))),
        ("actual cost", _usd(manifest.money.actual_usd)),
        ("expected", _usd(manifest.money.estimated_expected_usd)),
        ("cache hit rate", _pct(manifest.cache_hit_rate)),
        ("saved vs synchronous", _usd(manifest.money.savings_usd)),
        ("reused, bought earlier for", f"{_int(r['requests'])} ({_usd(r['saved_usd'])})"),
    ]
    return (
        '<div class="cards">'
        + "".join(f'<div class="card">{_e(k)}<b>{_e(v)}</b></div>' for k, v in cards)
        + "</div>"
    )


def _reconciliation(manifest: Manifest) -> str:
    total = sum(manifest.dispositions.values())
    if manifest.reconciled:
        verdict = (
            f'<p class="ok">Reconciled: the {_int(total)} dispositions add up to the '
            f"{_int(manifest.input_records)} input records.</p>"
        )
    else:
        verdict = (
            f'<p class="bad">Not reconciled: {_int(total)} dispositions for '
            f"{_int(manifest.input_records)} input records.</p>" + _list(manifest.notes)
        )
    if manifest.warnings:
        verdict += "<p>Warnings:</p>" + _list(manifest.warnings)
    return verdict


def _list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"


def _money_table(manifest: Manifest) -> str:
    m = manifest.money
    pct = "n/a" if m.savings_pct is None else f"{m.savings_pct:.1f} %"
    estimate = manifest.estimate
    basis = estimate.get("basis") or {}
    inputs = estimate.get("inputs") or {}
    source = {
        "history": f"learned from {basis.get('runs')} earlier run(s)",
        "user": "from expected_output_tokens",
        "default": "defaults (no history)",
    }.get(str(basis.get("kind")), "n/a")
    rows = [
        ("estimate, expected", f"{_usd(m.estimated_expected_usd)} ({source})"),
        ("estimate, upper bound", _usd(m.estimated_upper_usd)),
        (
            "budget",
            f"{_usd(estimate.get('max_cost_usd'))} against the {estimate.get('budget_basis', 'n/a')} figure",
        ),
        (
            "cache hit rate: expected / actual",
            f"{_pct(inputs.get('cache_hit_rate'))} / {_pct(manifest.cache_hit_rate)}",
        ),
        ("batches (batch prices)", _usd(m.batch_usd)),
        ("synchronous retries (standard prices)", f"{_usd(m.sync_retry_usd)} ({_sync_counts(manifest)})"),
        ("actual", _usd(m.actual_usd)),
        *(
            [
                (
                    "synchronous retries of unknown outcome (possibly billed, at most)",
                    _usd(m.sync_retry_unknown_usd),
                ),
                ("actual, upper (with what may have been billed)", _usd(m.actual_upper_usd)),
            ]
            if m.sync_retry_unknown_usd
            else []
        ),
        ("same work, synchronous (standard prices)", _usd(m.synchronous_equivalent_usd)),
        ("savings", f"{_usd(m.savings_usd)} ({pct})"),
    ]
    return _table(["", "USD"], rows, numeric=(False, True))


def _sync_counts(manifest: Manifest) -> str:
    """How the run's synchronous retries ended: ``3 succeeded, 1 fell_back``, or ``none``."""
    counts: dict[str, int] = {}
    for round_ledger in manifest.rounds:
        for outcome, count in round_ledger.sync_retry.items():
            counts[outcome] = counts.get(outcome, 0) + count
    shown = [f"{count} {outcome}" for outcome, count in counts.items() if count]
    return ", ".join(shown) or "none"


def _history_table(manifest: Manifest, history: Sequence[RunCost]) -> str:
    if not history:
        return ""
    this = (
        "this run",
        "",
        _int(manifest.input_records),
        _usd(manifest.money.estimated_expected_usd),
        _usd(manifest.money.estimated_upper_usd),
        _usd(manifest.money.actual_usd),
        _pct(manifest.cache_hit_rate),
    )
    rows = [this] + [
        (
            run.run_id,
            run.built_at,
            _int(run.records),
            _usd(run.expected_usd),
            _usd(run.upper_usd),
            _usd(run.actual_usd),
            _pct(run.hit_rate),
        )
        for run in history
    ]
    headers = ["run", "built", "records", "expected", "upper bound", "actual", "cache hit rate"]
    return "<h2>Cost per run of this pipeline</h2>" + _table(
        headers, rows, numeric=(False, False, True, True, True, True, True)
    )


def _prices_note(manifest: Manifest) -> str:
    prices = manifest.prices
    text = f"Prices from {', '.join(manifest.price_sources)}"
    if prices.get("as_of"):
        text += f", as of {prices['as_of']} ({prices.get('source')})"
    notes = "<p>" + _e(text) + ".</p>"
    warnings = (manifest.estimate or {}).get("warnings") or []
    if warnings:
        notes += "<p>Estimate warnings:</p>" + _list(warnings)
    left_out = prices.get("not_modelled") or []
    if left_out:
        notes += "<p>The prices do not model:</p>" + _list(left_out)
    return notes


def _rounds_table(rounds: Sequence[RoundLedger]) -> str:
    headers = [
        "round",
        "shards",
        "requests",
        *OUTCOME_COLOURS,
        "requeued",
        "dead-lettered",
        Disposition.PENDING,
        "cost",
    ]
    rows = [
        [
            r.round,
            r.shards,
            _int(r.requests),
            *(_int(r.outcomes.get(o, 0)) for o in OUTCOME_COLOURS),
            _int(r.requeued),
            _int(r.dead_lettered),
            _int(r.pending),
            _usd(r.batch_usd + r.sync_retry_usd),
        ]
        for r in rounds
    ]
    return _table(headers, rows, numeric=[False] + [True] * (len(headers) - 1))


def _tokens_table(manifest: Manifest) -> str:
    kinds = list(manifest.tokens)
    rows = [["all models", *(_int(manifest.tokens[k]) for k in kinds)]]
    rows += [[model, *(_int(t.get(k, 0)) for k in kinds)] for model, t in manifest.tokens_by_model.items()]
    return _table(["model", *kinds], rows, numeric=[False] + [True] * len(kinds))


def _sample(
    title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], total: int, file: str
) -> str:
    if not total:
        return f"<h2>{_e(title)}</h2><p>None.</p>"
    shown = f"the first {len(rows)} of {_int(total)}" if len(rows) < total else f"all {_int(total)}"
    body = _table(columns, ([row.get(c) for c in columns] for row in rows))
    return f"<h2>{_e(title)}</h2><p>Showing {shown}; every row is in <code>{_e(file)}</code>.</p>{body}"


def render_report(
    manifest: Manifest,
    samples: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    history: Sequence[RunCost] = (),
) -> str:
    """Return the report page of a run.

    :param manifest: the run's manifest.
    :param samples: the first rows of the run's dead-letter, pending and rejected files
        (``"dead_letter"``, ``"pending"``, ``"rejected"``), shown as tables.
    :param history: earlier runs of the same pipeline, newest first, for a table of cost per run.
    """
    samples = samples or {}
    batches = "".join(f"<li><code>{_e(batch_id)}</code></li>" for batch_id in manifest.batch_ids)
    files = _table(["file", "path"], manifest.files.items())
    return (
        "<!DOCTYPE html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Claude batch run report</title><style>{_STYLE}</style></head><body>"
        f'<h1>Claude batch run</h1><p class="sub">{_e(manifest.run_uri)}</p>'
        + _cards(manifest)
        + _reconciliation(manifest)
        + "<h2>Outcomes per round</h2>"
        + outcomes_chart(manifest.rounds)
        + _rounds_table(manifest.rounds)
        + "<h2>Cost</h2>"
        + cost_chart(manifest)
        + _money_table(manifest)
        + _history_table(manifest, history)
        + _prices_note(manifest)
        + "<h2>Tokens</h2>"
        + _tokens_table(manifest)
        + f"<h2>Batches ({len(manifest.batch_ids)})</h2><ul>{batches}</ul>"
        + _sample(
            "Dead-lettered",
            samples.get("dead_letter", ()),
            ["custom_id", "round", "reason", "error_type", "message"],
            manifest.dispositions.get(Disposition.DEAD_LETTERED, 0),
            manifest.files.get("dead_letter", ""),
        )
        + _sample(
            "Pending",
            samples.get(Disposition.PENDING, ()),
            ["custom_id", "round", "last_outcome", "reason"],
            manifest.dispositions.get(Disposition.PENDING, 0),
            manifest.files.get(Disposition.PENDING, ""),
        )
        + _sample(
            "Rejected at build",
            samples.get(Disposition.REJECTED, ()),
            ["custom_id", "location", "rule", "error"],
            manifest.dispositions.get(Disposition.REJECTED, 0),
            manifest.files.get(Disposition.REJECTED, ""),
        )
        + "<h2>Files</h2>"
        + files
        + "</body></html>"
    )


def write_report(
    path: StoragePath,
    manifest: Manifest,
    samples: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    history: Sequence[RunCost] = (),
) -> None:
    """Write the report page to ``path``, whole or not at all."""
    with atomic_writer(path) as out:
        out.write(render_report(manifest, samples, history).encode("utf-8"))
