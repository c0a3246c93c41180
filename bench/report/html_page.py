"""leaderboard.html: one self-contained page (inline CSS and JS, plots as data URIs): ranked sortable leaderboards,
flag badges and their legend, per-class and members tables, plots and the provenance of every run.
"""

from __future__ import annotations

import base64
import json
from html import escape
from typing import Any

import pandas as pd

from bench.report.model import (
    COLUMNS_NOTE,
    FLAG_DESCRIPTIONS,
    INTERVAL_NOTE,
    MEMBERS_NOTE,
    RANKING_NOTE,
    cell_text,
    describe_flag,
    flag_base,
    flagged,
    flags_of,
    header,
    marks,
    number,
    spread_text,
    yes,
)
from bench.report.plots import safe_name
from bench.results import PAPER_NUMBERS, PASSES, auroc_columns

#: Badge colours, one per known flag (in sorted order); unknown flags are grey.
FLAG_COLOURS = ("#b3261e", "#8a4b00", "#6a1b9a", "#00639b", "#2e7d32", "#ad1457", "#4e5b00", "#00695c", "#5d4037")
#: The figure groups of the plots section, by file-name prefix (``robust_vs_eps_`` figures sit with their dataset).
FIGURE_GROUPS = (("scores_", "Clean vs adversarial score histograms"), ("examples_", "Example perturbations"))
#: A figure group with more figures than this starts folded.
OPEN_FIGURES = 6
MARK_CLASSES = {1: "best", 2: "second"}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 110rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.92rem; }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top; }
th.text, td.text { text-align: left; }
td { white-space: nowrap; }
td.paper { white-space: normal; min-width: 14rem; max-width: 22rem; font-size: 0.8rem; color: #444; }
thead th { position: sticky; top: 0; background: #f4f4f4; cursor: pointer; user-select: none; white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tbody tr:hover { background: #f7f9ff; }
td.best { font-weight: bold; }
td.second { text-decoration: underline; }
td.flagged { background: #fff4e0; }
.spread { color: #666; font-size: 0.8rem; }
.flags { white-space: normal; }
.flag { display: inline-block; margin: 0.1rem 0 0 0.3rem; padding: 0 0.35rem; border-radius: 0.6rem;
  background: var(--c); color: #fff; font-size: 0.7rem; white-space: nowrap; cursor: help; }
dl.legend dt { margin-top: 0.3rem; }
dl.legend dd { margin-left: 1rem; color: #444; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.8rem; color: #555; }
summary h3 { display: inline; }
table.provenance th, table.provenance td { text-align: left; cursor: default; position: static; }
table.provenance td { white-space: normal; }
table.provenance th { background: none; font-weight: 600; white-space: nowrap; }
.meta { color: #555; font-size: 0.9rem; }
"""

_JS = """
function sortKey(cell, numeric) {
  if (!numeric) return cell.textContent.trim().toLowerCase();
  const value = parseFloat(cell.dataset.value);
  return Number.isNaN(value) ? null : value;
}
function sortTable(table, header, index) {
  const numeric = header.dataset.type === "number";
  const current = header.getAttribute("aria-sort");
  const first = header.dataset.first || (numeric ? "descending" : "ascending");
  const order = current ? (current === "ascending" ? "descending" : "ascending") : first;
  table.querySelectorAll("thead th").forEach(th => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", order);
  const sign = order === "ascending" ? 1 : -1;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = sortKey(a.cells[index], numeric), y = sortKey(b.cells[index], numeric);
    if (x === null || y === null) return (x === null) - (y === null);
    return sign * (x < y ? -1 : x > y ? 1 : 0);
  });
  rows.forEach(row => body.appendChild(row));
}
document.querySelectorAll("table.sortable").forEach(table => {
  table.querySelectorAll("thead th").forEach((header, index) => {
    header.addEventListener("click", () => sortTable(table, header, index));
    header.addEventListener("keydown", event => { if (event.key === "Enter") sortTable(table, header, index); });
  });
});
"""


def flag_badge(flag: str) -> str:
    """A coloured span naming the flag, its explanation as the tooltip."""
    known = sorted(FLAG_DESCRIPTIONS)
    base = flag_base(flag)
    colour = FLAG_COLOURS[known.index(base) % len(FLAG_COLOURS)] if base in known else "#616161"
    return f'<span class="flag" style="--c:{colour}" title="{escape(describe_flag(flag))}">{escape(base)}</span>'


def _td(html: str, value: Any = None, classes: tuple[str, ...] = ()) -> str:
    """A cell of ready ``html``; ``value``: the number it sorts by (a text cell when None)."""
    numeric = value is not None
    names = " ".join([*([] if numeric else ["text"]), *classes])
    attrs = f' class="{names}"' if names else ""
    if numeric:
        attrs += f' data-value="{"" if pd.isna(value) else repr(float(value))}"'
    return f"<td{attrs}>{html}</td>"


def _text(value: Any) -> str:
    return "" if value is None or pd.isna(value) else escape(str(value))


def _paper(row: pd.Series) -> str:
    """The paper's title, a link where the registry gives an http(s) one."""
    title, link = _text(row.get("paper")), row.get("link")
    if title and isinstance(link, str) and link.startswith(("https://", "http://")):
        return f'<a href="{escape(link)}">{title}</a>'
    return title


def _auroc(row: pd.Series, column: str, mark: int) -> str:
    """An AUROC cell: the number, its spread (std or interval), its flags as badges; best / second marked."""
    value = row[column]
    html = escape(number(value))
    if pd.notna(value) and (spread := spread_text(row, column)):
        html += f'<span class="spread">{escape(spread)}</span>'
    flags = flagged(row, column)
    if flags:
        html += '<div class="flags">' + "".join(map(flag_badge, flags)) + "</div>"
    classes = (*([MARK_CLASSES[mark]] if mark in MARK_CLASSES else []), *(["flagged"] if flags else []))
    return _td(html, value, classes)


def _header(label: str, numeric: bool, extra: str = "") -> str:
    kind = "number" if numeric else "text"
    text_class = "" if numeric else ' class="text"'
    return f'<th scope="col" tabindex="0" data-type="{kind}"{text_class}{extra}>{escape(label)}</th>'


def _sortable(caption: str, headers: list[str], rows: list[str]) -> str:
    return (
        f'<div class="scroll"><table class="sortable" aria-label="{escape(caption)}">\n'
        f"<thead><tr>{''.join(headers)}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>"
    )


def render_table(table: pd.DataFrame, caption: str) -> str:
    """A sortable table of a ``leaderboard`` frame (rows in rank order) or a ``per_class`` frame (by class, then
    rank): rank, detector, class, the paper's columns where any row has them, the AUROC columns (best in bold,
    second underlined: per class in a per-class table), passes/image and the paper's numbers where known."""
    per_class = "normal_class" in table.columns
    papers = table["paper"].notna().any()
    aurocs = auroc_columns(table)
    extras = [c for c in (PASSES, *PAPER_NUMBERS) if table[c].notna().any()]
    by_class = table.groupby("normal_class", sort=False) if per_class else None
    ranks = {c: by_class[c].transform(marks) if by_class is not None else marks(table[c]) for c in aurocs}
    ascending = ' data-first="ascending"'
    headers = [_header("Rank", True, ascending + ("" if per_class else ' aria-sort="ascending"'))]
    headers += [_header("Detector", False), *([_header("Class", True, ascending)] if per_class else [])]
    if papers:
        headers += [_header("Paper", False), _header("Venue", False), _header("Adv. trained", False)]
    headers += [_header(header(c), True) for c in [*aurocs, *extras]]
    rows = []
    for label, row in table.iterrows():
        cells = [_td(escape(str(row["rank"])), row["rank"]), _td(_text(row["detector"]))]
        if per_class:
            cells.append(_td(_text(row["class"]), row["normal_class"]))
        if papers:
            cells += [_td(_paper(row), classes=("paper",)), _td(_text(row["venue"])), _td(yes(row["adv_trained"]))]
        cells += [_auroc(row, c, ranks[c][label]) for c in aurocs]
        cells += [_td(escape(number(row[c])), row[c]) for c in extras]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return _sortable(caption, headers, rows)


def render_members(table: pd.DataFrame, caption: str) -> str:
    """A sortable table of a ``members`` frame: each member's own robust AUROC and its share of worst cases."""
    headers = [_header(h, False) for h in ("Detector", "Column", "Member")]
    headers += [_header("Robust", True), _header("Share", True), _header("Note", False)]
    rows = [
        "<tr>"
        + "".join(_td(_text(row[c])) for c in ("detector", "column", "member"))
        + "".join(_td(escape(cell_text(row, c)), row[c]) for c in ("robust", "share"))
        + _td(escape(f"skipped: {row['skipped']}") if row["skipped"] else "")
        + "</tr>"
        for _, row in table.iterrows()
    ]
    return _sortable(caption, headers, rows)


def _figure(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{escape(name)}">'
        f"<figcaption>{escape(name)}</figcaption></figure>"
    )


def render_legend(flags: list[str]) -> str:
    """The flag legend: each badge and what it means."""
    if not flags:
        return "<p>No sanity flag was raised.</p>"
    items = "".join(f"<dt>{flag_badge(f)}</dt><dd>{escape(FLAG_DESCRIPTIONS.get(f, f))}</dd>" for f in flags)
    return f'<p>Flags raised by the sanity ladder (hover a badge for its details):</p>\n<dl class="legend">{items}</dl>'


def _value_text(value: Any) -> str:
    """A manifest value as one line: dicts as ``key: value`` pairs, lists comma-separated."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(map(_value_text, value))
    return str(value)


def render_provenance(manifest: dict[str, Any]) -> str:
    """One run's provenance: command, git state, executor, hardware, packages, times, and its config."""
    git = manifest.get("git_sha")
    if git is not None:
        dirty = manifest.get("git_dirty")
        git = f"{git} ({'dirty: uncommitted changes' if dirty else 'clean' if dirty is not None else 'state unknown'})"
    items = [
        ("folder", manifest.get("run")),
        ("command", manifest.get("command")),
        ("git", git),
        ("preset", manifest.get("preset")),
        ("executor", manifest.get("executor")),
        ("devices", manifest.get("devices")),
        ("host", manifest.get("host")),
        ("python", manifest.get("python")),
        ("packages", manifest.get("packages")),
        ("seeds", manifest.get("seeds")),
        ("cells", manifest.get("n_cells")),
        ("started", manifest.get("started")),
        ("finished", manifest.get("finished")),
        ("seconds", manifest.get("seconds")),
    ]
    rows = "".join(
        f'<tr><th scope="row">{name}</th><td><code>{escape(_value_text(value))}</code></td></tr>'
        for name, value in items
        if value not in (None, "", [], {})
    )
    config = ""
    if manifest.get("config"):
        text = json.dumps(manifest["config"], indent=1, sort_keys=True, default=str)
        config = f"<details><summary>config</summary><pre>{escape(text)}</pre></details>"
    title = escape(str(manifest.get("run_key") or "run"))
    return f'<h3>Run {title}</h3>\n<table class="provenance"><tbody>{rows}</tbody></table>\n{config}'


def render_plots(figures: dict[str, bytes]) -> str:
    """The plots section's figures, grouped by kind (file-name prefix; unknown kinds last), large groups folded."""
    groups = [(title, [n for n in figures if n.startswith(prefix)]) for prefix, title in FIGURE_GROUPS]
    grouped = {n for _, names in groups for n in names}
    groups.append(("Other figures", [n for n in figures if n not in grouped]))
    return "\n".join(
        f"<details{' open' if len(names) <= OPEN_FIGURES else ''}><summary><h3>{escape(title)} ({len(names)})</h3>"
        "</summary>\n" + "\n".join(_figure(n, figures[n]) for n in names) + "</details>"
        for title, names in groups
        if names
    )


def _spread_note(tables: list[pd.DataFrame]) -> str:
    """What the text after a number means, for the tables shown."""
    notes = []
    if any(c.endswith(" std") for t in tables for c in t.columns):
        notes.append("± = std over seeds")
    if any(c.endswith(" ci") and t[c].notna().any() for t in tables for c in t.columns):
        notes.append(INTERVAL_NOTE)
    return "; ".join(notes)


def render_html(
    boards: dict[str, pd.DataFrame],
    per_class: dict[str, pd.DataFrame],
    manifests: list[dict[str, Any]],
    figures: dict[str, bytes],
    members: dict[str, pd.DataFrame] | None = None,
) -> str:
    """The whole page.

    Args:
        boards: per dataset, its leaderboard frame (``bench.results.leaderboard``).
        per_class: per dataset, its per-class frame (``bench.results.per_class``).
        manifests: every reported run's manifest (``bench.results.manifests``; one provenance entry each).
        figures: PNG bytes by file name (``bench.report.plots.figures``).
        members: per dataset, its members frame (``bench.results.members``), where there is one.
    """
    members = members or {}
    sections, placed = [], set()
    for dataset, board in boards.items():
        parts = [f'<section id="dataset-{escape(safe_name(dataset))}">\n<h2>{escape(dataset)}</h2>']
        parts.append(render_table(board, dataset))
        if dataset in per_class:
            summary = f"{escape(dataset)}: per class ({len(per_class[dataset])} rows)"
            table = render_table(per_class[dataset], f"{dataset} per class")
            parts.append(f'<details class="per-class"><summary>{summary}</summary>\n{table}</details>')
        if dataset in members and not members[dataset].empty:
            summary = f"{escape(dataset)}: members of ensemble and worst-case cells"
            table = render_members(members[dataset], f"{dataset} members")
            note = f"<p>Per ensemble or worst-case cell, {escape(MEMBERS_NOTE)}.</p>"
            parts.append(f'<details class="members"><summary>{summary}</summary>\n{note}\n{table}</details>')
        name = f"robust_vs_eps_{safe_name(dataset)}.png"
        if name in figures:
            parts.append(_figure(name, figures[name]))
            placed.add(name)
        sections.append("\n".join(parts) + "\n</section>")
    plots = render_plots({n: png for n, png in figures.items() if n not in placed})
    tables = [*boards.values(), *per_class.values()]
    notes = " ".join(f"{escape(n)}." for n in (_spread_note(tables), RANKING_NOTE, COLUMNS_NOTE) if n)
    runs = ", ".join(str(m.get("run_key") or m.get("run") or "run") for m in manifests)
    provenance = "\n".join(map(render_provenance, manifests)) or "<p>No manifest.</p>"
    body = "\n".join(sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Leaderboard {escape(runs)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Robustness leaderboard</h1>
<p class="meta">{escape(runs)} · <a href="#flags">flags</a> · <a href="#plots">plots</a> ·
<a href="#provenance">provenance</a></p>
<p>AUROC (%) averaged over normal classes. {notes} Best per column in bold, second underlined; flags as badges
(hover one for its meaning). Click a column header to sort.</p>
{body}
<section id="flags">
<h2>Flags</h2>
{render_legend(flags_of(tables))}
</section>
<section id="plots">
<h2>Plots</h2>
{plots or "<p>No plot.</p>"}
</section>
<section id="provenance">
<h2>Provenance</h2>
{provenance}
</section>
<script>{_JS}</script>
</body>
</html>
"""
