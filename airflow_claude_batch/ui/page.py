"""The "Claude batches" page: a filter form, two inline SVG charts and the table of pipeline runs.

Rendered on the server as one HTML document (no CDN, no script from elsewhere, no build step), so it
shows inside Airflow's UI as an external view and works behind any proxy. The charts are plain SVG:
cost and savings per night, and the outcomes of each run listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

from airflow_claude_batch.core.report import NightTotals, nightly_totals
from airflow_claude_batch.core.run import DISPOSITIONS, Disposition

#: One colour per disposition, in ``DISPOSITIONS`` order.
OUTCOME_COLOURS = {
    Disposition.SUCCEEDED.value: "#2e7d32",
    Disposition.INVALID_OUTPUT.value: "#ef6c00",
    Disposition.REFUSED.value: "#6a1b9a",
    Disposition.DEAD_LETTERED.value: "#c62828",
    Disposition.PENDING.value: "#9e9e9e",
    Disposition.REJECTED.value: "#795548",
}
COLUMNS = (
    "DAG",
    "pipeline",
    "run",
    "state",
    "records",
    Disposition.SUCCEEDED.value,
    "invalid",
    Disposition.REFUSED.value,
    "dead-lettered",
    Disposition.PENDING.value,
    Disposition.REJECTED.value,
    "batches",
    "cost",
    "synchronous",
    "savings",
    "est. → actual",
    "links",
)
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1a1a1a;background:#fff}
h1{font-size:20px;margin:0 0 12px}h2{font-size:15px;margin:16px 0 6px}
form{display:flex;gap:10px;align-items:end;flex-wrap:wrap;margin-bottom:8px}
label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,button{font-size:13px;padding:3px 6px}
table{border-collapse:collapse;font-size:12px}
th,td{border-bottom:1px solid #e0e0e0;padding:3px 5px;text-align:right;white-space:nowrap}
td.w{white-space:normal;overflow-wrap:anywhere;min-width:110px;max-width:210px}
th{background:#f5f5f5;position:sticky;top:0}td.t,th.t{text-align:left}
tr.failed td{background:#fff3f3}tr.focus td{background:#fffbe6}
tr.picked td{background:#e8f0fe}tr:hover td{background:#f0f6ff}
.charts{display:flex;gap:24px;flex-wrap:wrap;margin-bottom:12px}.note{color:#8a6d00;font-size:11px}
.muted{color:#777}.legend span{display:inline-block;margin-right:10px;font-size:11px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:3px;vertical-align:middle}
"""
# A click marks a row; the run the page was opened on (the report task's link) is scrolled to.
SCRIPT = """
document.querySelectorAll('tr[data-run]').forEach(function(row){
  row.addEventListener('click',function(){row.classList.toggle('picked')});});
var first=document.querySelector('tr.focus');if(first){first.scrollIntoView({block:'center'});}
"""


def render_page(
    rows: Sequence[dict[str, Any]],
    *,
    total: int,
    filters: dict[str, str],
    dag_ids: Sequence[str],
    limit: int,
    offset: int,
) -> str:
    """The page's HTML.

    :param rows: the listed runs, as the JSON list gives them.
    :param total: runs matching the filters (all pages).
    :param filters: the filters asked for (``dag_id``, ``since``, ``until``, ``run_id``).
    :param dag_ids: the DAGs the filter offers (the caller's readable DAGs with pipeline runs).
    :param limit: runs per page.
    :param offset: runs skipped before this page.
    """
    nights = nightly_totals((row["night"], _Money(row)) for row in rows)
    body = [
        "<h1>Claude batches</h1>",
        _filter_form(filters, dag_ids),
        f'<p class="muted">{total} pipeline runs; showing {len(rows)} from {offset + 1 if rows else 0}.</p>',
        '<div class="charts">',
        _nights_chart(nights),
        _outcomes_chart(rows),
        "</div>",
        _table(rows, filters.get("run_id")),
        _pager(filters, total, limit, offset),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Claude batches</title>'
        f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head><body>'
        + "".join(body)
        + f"<script>{SCRIPT}</script></body></html>"
    )


class _Money:
    """The two figures :func:`nightly_totals` adds, read from a JSON row."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.actual_usd = row.get("actual_usd") or 0.0
        self.savings_usd = row.get("savings_usd") or 0.0


def _filter_form(filters: dict[str, str], dag_ids: Sequence[str]) -> str:
    chosen = filters.get("dag_id", "")
    options = ['<option value="">all DAGs</option>'] + [
        f'<option value="{escape(d)}"{" selected" if d == chosen else ""}>{escape(d)}</option>'
        for d in dag_ids
    ]
    since, until = escape(filters.get("since", "")), escape(filters.get("until", ""))
    return (
        '<form method="get">'
        f'<label>DAG<select name="dag_id">{"".join(options)}</select></label>'
        f'<label>from (UTC)<input type="date" name="since" value="{since}"></label>'
        f'<label>before (UTC)<input type="date" name="until" value="{until}"></label>'
        '<button type="submit">Show</button></form>'
    )


def _nights_chart(nights: list[NightTotals]) -> str:
    width, height, pad = 420, 180, 28
    title = "<h2>Cost and savings per night (US$)</h2>"
    if not nights:
        return f'<div>{title}<p class="muted">no runs</p></div>'
    top = max(max(n.actual_usd + max(n.savings_usd, 0.0) for n in nights), 1e-9)
    step = (width - pad) / len(nights)
    bar = max(step * 0.7, 1.0)
    parts = []
    for i, night in enumerate(nights):
        x = pad + i * step
        cost_h = night.actual_usd / top * (height - pad)
        save_h = max(night.savings_usd, 0.0) / top * (height - pad)
        y_cost = height - pad - cost_h
        tip = (
            f"{night.night}: {night.runs} runs, ${night.actual_usd:.4f} cost, ${night.savings_usd:.4f} saved"
        )
        parts.append(
            f"<g><title>{escape(tip)}</title>"
            f'<rect x="{x:.1f}" y="{y_cost:.1f}" width="{bar:.1f}" height="{cost_h:.1f}" fill="#1565c0"/>'
            f'<rect x="{x:.1f}" y="{y_cost - save_h:.1f}" width="{bar:.1f}" height="{save_h:.1f}" '
            'fill="#81c784"/></g>'
        )
    first, last = escape(nights[0].night), escape(nights[-1].night)
    labels = (
        f'<text x="{pad}" y="{height - 8}" font-size="10">{first}</text>'
        f'<text x="{width}" y="{height - 8}" font-size="10" text-anchor="end">{last}</text>'
        f'<text x="2" y="10" font-size="10">${top:.2f}</text>'
    )
    legend = '<div class="legend"><span><i style="background:#1565c0"></i>cost</span>'
    legend += '<span><i style="background:#81c784"></i>saved vs. synchronous</span></div>'
    return (
        f'<div>{title}<svg role="img" aria-label="cost and savings per night" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width}" y2="{height - pad}" stroke="#999"/>'
        f"{''.join(parts)}{labels}</svg>{legend}</div>"
    )


def _outcomes_chart(rows: Sequence[dict[str, Any]]) -> str:
    width, height, pad = 420, 180, 40
    title = "<h2>Outcomes per run</h2>"
    runs = [row for row in reversed(rows) if (row.get("records") or 0) > 0]  # oldest first
    if not runs:
        return f'<div>{title}<p class="muted">no records</p></div>'
    step = (width - pad) / len(runs)
    bar = max(step * 0.7, 1.0)
    parts = []
    for i, row in enumerate(runs):
        outcomes = row.get("outcomes") or {}
        whole = max(sum(outcomes.values()), 1)
        y = float(height - pad)
        x = pad + i * step
        tip = f"{row['dag_id']} {row['run_id']}: " + ", ".join(
            f"{outcomes.get(name, 0)} {name}" for name in DISPOSITIONS if outcomes.get(name)
        )
        rects = []
        for name in DISPOSITIONS:
            h = outcomes.get(name, 0) / whole * (height - pad)
            if h <= 0:
                continue
            y -= h
            rects.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{OUTCOME_COLOURS[name]}"/>'
            )
        parts.append(f"<g><title>{escape(tip)}</title>{''.join(rects)}</g>")
    legend = '<div class="legend">' + "".join(
        f'<span><i style="background:{OUTCOME_COLOURS[n]}"></i>{n.replace("_", " ")}</span>'
        for n in DISPOSITIONS
    )
    return (
        f'<div>{title}<svg role="img" aria-label="outcomes per run" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><text x="2" y="10" font-size="10">100 %</text>'
        f"{''.join(parts)}</svg>{legend}</div></div>"
    )


def _table(rows: Sequence[dict[str, Any]], focus_run: str | None) -> str:
    head = "".join(f'<th class="{"t" if i < 4 else ""}">{escape(c)}</th>' for i, c in enumerate(COLUMNS))
    lines = [f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>']
    for row in rows:
        lines.append(_table_row(row, focus=row["run_id"] == focus_run))
    if not rows:
        lines.append(f'<tr><td class="t" colspan="{len(COLUMNS)}">No pipeline runs you may see.</td></tr>')
    lines.append("</tbody></table>")
    return "".join(lines)


def _table_row(row: dict[str, Any], *, focus: bool) -> str:
    outcomes = row.get("outcomes") or {}
    classes = " ".join(c for c in ("failed" if row.get("failure") else "", "focus" if focus else "") if c)
    state = escape(str(row.get("state") or ""))
    if row.get("state") == "skipped" and not row.get("batches"):  # a dry run: estimated, nothing sent
        state += ' <span class="note">dry run</span>'
    if row.get("canceled"):
        state += ' <span class="note">canceled</span>'
    if row.get("failure"):
        state += f' <span class="note" title="{escape(row["failure"])}">failed a bound</span>'
    cells = [
        f'<td class="t w">{escape(row["dag_id"])}</td>',
        f'<td class="t w">{escape(row["pipeline_id"])}</td>',
        f'<td class="t w">{escape(row["run_id"])}</td>',
        f'<td class="t">{state}</td>',
        f"<td>{_count(row.get('records'))}</td>",
        *(f"<td>{_count(outcomes.get(name))}</td>" for name in DISPOSITIONS),
        f"<td>{_count(row.get('batches'))}</td>",
        f"<td>{_usd(row.get('actual_usd'))}</td>",
        f"<td>{_usd(row.get('synchronous_equivalent_usd'))}</td>",
        f"<td>{_usd(row.get('savings_usd'))}</td>",
        f"<td>{_estimate(row)}</td>",
        f'<td class="t">{_links(row)}</td>',
    ]
    attrs = f' class="{classes}"' if classes else ""
    html = f'<tr data-run="{escape(row["run_id"])}"{attrs}>{"".join(cells)}</tr>'
    if row.get("note"):
        span = len(COLUMNS) - 1
        html += f'<tr><td></td><td class="t note" colspan="{span}">{escape(row["note"])}</td></tr>'
    return html


def _links(row: dict[str, Any]) -> str:
    links = [f'<a href="{escape(row["dag_run_url"])}" target="_top">DAG run</a>']
    if row.get("report_url"):
        links.append(f'<a href="{escape(row["report_url"])}" target="_blank" rel="noopener">report</a>')
    return " · ".join(links)


def _estimate(row: dict[str, Any]) -> str:
    estimated = row.get("estimated_usd")
    if estimated is None:
        return '<span class="muted">—</span>'
    if not row.get("batches"):  # nothing sent (a dry run): no actual to compare with
        return f"{_usd(estimated)} → —"
    error = row.get("estimate_error_pct")
    change = "" if error is None else f" ({error:+.0f} %)"
    return f"{_usd(estimated)} → {_usd(row.get('actual_usd'))}{change}"


def _pager(filters: dict[str, str], total: int, limit: int, offset: int) -> str:
    links = []
    if offset > 0:
        links.append(_page_link(filters, limit, max(offset - limit, 0), "← newer"))
    if offset + limit < total:
        links.append(_page_link(filters, limit, offset + limit, "older →"))
    return f"<p>{' '.join(links)}</p>" if links else ""


def _page_link(filters: dict[str, str], limit: int, offset: int, text: str) -> str:
    query = urlencode({**{k: v for k, v in filters.items() if v}, "limit": limit, "offset": offset})
    return f'<a href="?{escape(query)}">{text}</a>'


def _count(value: Any) -> str:
    return "—" if value is None else f"{value:,}"


def _usd(value: Any) -> str:
    if value is None:
        return "—"
    # Cents are enough from a dollar up; below, the fourth decimal still tells small runs apart.
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:,.4f}"
