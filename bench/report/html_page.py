"""leaderboard.html: one self-contained static page (inline CSS and JS, no network assets).

One table per dataset; clicking a column header sorts the rows by that column (numbers descending first,
names ascending first; a second click reverses). Flagged cells carry a dagger and a tooltip naming the flags.
"""

from __future__ import annotations

from html import escape

from bench.report.model import (
    COLUMNS_NOTE,
    FLAG_MARK,
    MEMBERS_NOTE,
    DatasetTable,
    Leaderboard,
    describe_flag,
    format_cell,
    member_texts,
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { cursor: pointer; user-select: none; background: #f4f4f4; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td.best { font-weight: bold; }
td.second { text-decoration: underline; }
td.flagged { background: #fff4e0; cursor: help; }
table.members th, table.members td { text-align: left; cursor: default; }
table.members td:nth-child(-n+3) { white-space: nowrap; }
table.members th:nth-child(n+4):nth-child(-n+5), table.members td:nth-child(n+4):nth-child(-n+5) { text-align: right; }
.meta { color: #555; font-size: 0.9rem; }
"""

_JS = """
function cellValue(row, index, numeric) {
  const cell = row.cells[index];
  if (!numeric) return cell.textContent.trim().toLowerCase();
  const value = parseFloat(cell.dataset.value);
  return Number.isNaN(value) ? -Infinity : value;
}
function sortTable(table, header, index) {
  const numeric = header.dataset.type === "number";
  const current = header.getAttribute("aria-sort");
  const descending = current ? current === "ascending" : numeric;
  table.querySelectorAll("th").forEach(th => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
    const order = x < y ? -1 : x > y ? 1 : 0;
    return descending ? -order : order;
  });
  rows.forEach(row => body.appendChild(row));
}
document.querySelectorAll("table.sortable").forEach(table => {
  table.querySelectorAll("th").forEach((header, index) => {
    header.addEventListener("click", () => sortTable(table, header, index));
  });
});
"""


def _td(table: DatasetTable, detector: str, column: int) -> str:
    cell = table.cell(detector, column)
    if cell is None:
        return '<td data-value="">—</td>'
    classes = {1: ["best"], 2: ["second"]}.get(table.rank(detector, column), [])
    title = ""
    text = escape(format_cell(cell))
    if cell.flags:
        classes.append("flagged")
        title = f' title="{escape("; ".join(describe_flag(f) for f in cell.flags))}"'
        text += FLAG_MARK
    class_attr = f' class="{" ".join(classes)}"' if classes else ""
    return f'<td data-value="{cell.mean!r}"{class_attr}{title}>{text}</td>'


def render_table(table: DatasetTable) -> str:
    """One dataset's sortable table."""
    headers = ['<th data-type="text">Detector</th>']
    headers += [f'<th data-type="number">{escape(c.label)}</th>' for c in table.columns]
    if table.passes:
        headers.append('<th data-type="number">Passes/image</th>')
    rows = []
    for detector in table.detectors:
        cells = [f"<td>{escape(detector)}</td>", *(_td(table, detector, i) for i in range(len(table.columns)))]
        if table.passes:
            passes = table.passes.get(detector)
            cells.append(f'<td data-value="{passes!r}">{passes:.1f}</td>' if passes is not None else "<td>—</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<h2>{escape(table.dataset)}</h2>\n"
        f'<table class="sortable" data-dataset="{escape(table.dataset)}">\n'
        f"<thead><tr>{''.join(headers)}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def render_members(table: DatasetTable) -> str:
    """One dataset's members table (ensemble and worst-case cells); empty when there is no such cell."""
    rows = [
        "<tr>" + "".join(f"<td>{escape(text)}</td>" for text in (d, c.label, m.attack, *member_texts(m))) + "</tr>"
        for d, c, members in table.member_rows()
        for m in members
    ]
    if not rows:
        return ""
    headers = "".join(f"<th>{name}</th>" for name in ("Detector", "Column", "Member", "Robust", "Share", "Note"))
    return (
        f"\n<h3>{escape(table.dataset)}: members</h3>\n"
        f"<p>Per ensemble or worst-case cell, {escape(MEMBERS_NOTE)}.</p>\n"
        f'<table class="members" data-dataset="{escape(table.dataset)}">\n<thead><tr>{headers}</tr></thead>\n'
        "<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
    )


def _meta(board: Leaderboard) -> str:
    items = [("run", board.run_key), ("preset", board.preset)]
    items += [(k, board.manifest.get(k)) for k in ("command", "git_sha", "device")]
    shown = [f"{escape(name)}: <code>{escape(str(value))}</code>" for name, value in items if value]
    return '<p class="meta">' + " · ".join(shown) + "</p>" if shown else ""


def render_html(board: Leaderboard) -> str:
    """The whole page."""
    seeds = f"mean ± std over {board.n_seeds} seeds" if board.n_seeds > 1 else "one seed"
    legend = ""
    if board.flags:
        items = "".join(f"<li>{escape(describe_flag(f))}</li>" for f in board.flags)
        legend = f"<p>{FLAG_MARK} flagged by the sanity ladder (hover a cell for its flags):</p><ul>{items}</ul>"
    tables = "\n".join(render_table(t) + render_members(t) for t in board.tables)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Leaderboard {escape(board.run_key)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Robustness leaderboard</h1>
{_meta(board)}
<p>AUROC (%) averaged over normal classes, {seeds}. {escape(COLUMNS_NOTE)}. Best per column in bold, second
underlined. Click a column header to sort.</p>
{tables}
{legend}
<script>{_JS}</script>
</body>
</html>
"""
