"""The leaderboard as one self-contained HTML page: styles, the scatter (inline PNG) and a sortable table."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

from harness_ext.results.leaderboard import (
    BASE,
    FRONT,
    OTHER_DOCS,
    PARTIAL,
    Entry,
    Leaderboard,
    caption,
    documents,
    header,
    percent,
    short,
    short_id,
    signed,
)

STYLE = """
body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328;
       margin: 2rem 0; padding: 0 2rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
p.meta { color: #59636e; margin-top: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #d1d9e0; white-space: nowrap; }
th { background: #f6f8fa; text-align: left; vertical-align: bottom; }
thead tr.columns th { cursor: pointer; user-select: none; white-space: normal; min-width: 3.5rem; }
thead tr.groups th { text-align: center; font-weight: 600; color: #59636e; font-size: .85em; border-bottom: 0; }
thead tr.groups th + th { border-left: 2px solid #fff; }
th.num, td.num { text-align: right; }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: .7em; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: .7em; }
tr:hover td { background: #f6f8fa; }
tr.baseline td { font-style: italic; background: #fbfbf4; }
tr.columns th:first-child, tbody td:first-child { position: sticky; left: 0; background: #fff; z-index: 1; }
tr.columns th:first-child { background: #f6f8fa; } tr.baseline td:first-child { background: #fbfbf4; }
td.front { font-weight: 600; }
code { font-size: .9em; color: #59636e; }
.up { color: #1a7f37; } .down { color: #cf222e; } .delta { display: block; font-size: .8em; line-height: 1.1; }
figure { margin: 1.5rem 0; max-width: 900px; } figure img { width: 100%; height: auto; border: 1px solid #d1d9e0; }
figcaption, p.caption { color: #59636e; font-size: .9em; }
"""

SCRIPT = """
document.querySelectorAll("table.board tr.columns th").forEach((th, column) => {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0];
    const descending = th.getAttribute("aria-sort") !== "descending";
    th.closest("tr").querySelectorAll("th").forEach((other) => other.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    const key = (row) => row.cells[column].dataset.v;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      const order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
      return descending ? -order : order;
    });
    rows.forEach((row) => body.appendChild(row));
  });
});
"""

LEFT_COLUMNS = 7  # variant, method, lambda, weights, layers, hash, n


def page(board: Leaderboard, plot_png: bytes | None) -> str:
    """The whole page as a string."""
    titles = [*header(board)[:LEFT_COLUMNS], "perception", "reasoning", *map(short, board.tasks)]
    head = "".join(f'<th scope="col"{" class=num" if i >= LEFT_COLUMNS - 1 else ""}>{_breakable(t)}</th>'
                   for i, t in enumerate(titles))
    body = "\n".join(_row(board, entry) for entry in board.entries)
    figure = "" if plot_png is None else (
        '<figure><img alt="Scatter of perception average against reasoning average per variant, Pareto front '
        f'dashed" src="data:image/png;base64,{base64.b64encode(plot_png).decode()}">'
        "<figcaption>Each point is a variant; dashed: the Pareto front (no other variant is better at both); "
        "diamond: the unmerged VLM.</figcaption></figure>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>merged-vlm leaderboard</title>
<style>{STYLE}</style>
</head>
<body>
<h1>merged-vlm leaderboard</h1>
<p class="meta">{len(board.entries)} variant{'s' if len(board.entries) != 1 else ''}, generated {stamp}.
Click a column title to sort.</p>
<div class="scroll">
<table class="board" id="leaderboard">
<thead><tr class="groups">{_groups(board)}</tr><tr class="columns">{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</div>
<p class="caption">{html.escape(caption(board))}</p>
{figure}
<script>{SCRIPT}</script>
</body>
</html>
"""


def _groups(board: Leaderboard) -> str:
    """The row above the column titles: variant, averages, and the tasks of each split."""
    spans = [("merge", LEFT_COLUMNS), ("averages", 2)]
    for task in board.tasks:
        splits = {s for e in board.entries for s in e.split_scores.get(task, {})}
        title = f"{splits.pop()} tasks" if len(splits) == 1 else "other tasks"
        if spans[-1][0] == title:
            spans[-1] = (title, spans[-1][1] + 1)
        else:
            spans.append((title, 1))
    return "".join(f'<th colspan="{n}">{html.escape(title)}</th>' for title, n in spans)


def _breakable(title: str) -> str:
    """A column title that may break after underscores."""
    return "_<wbr>".join(html.escape(part) for part in title.split("_"))


def _row(board: Leaderboard, entry: Entry) -> str:
    name = html.escape(entry.name) + (f' <span title="on the Pareto front">{FRONT}</span>' if entry.pareto else "")
    name += f" <code>({BASE})</code>" if entry.is_baseline else ""
    text = [(name, entry.name), *[(html.escape(v), v) for v in (entry.method or entry.kind, entry.lambda_ or "-",
                                                              entry.weights or "-", entry.layers or "-")],
            (f'<code title="{html.escape(entry.id)}">{html.escape(short_id(entry.id))}</code>', entry.id)]
    cells = [f'<td{" class=front" if i == 0 and entry.pareto else ""} data-v="{html.escape(v, quote=True)}">{c}</td>'
             for i, (c, v) in enumerate(text)]
    n = min((c.n for t, c in entry.coverage.items() if t in board.tasks and c.n is not None), default=None)
    cells.append(f'<td class="num" data-v="{"" if n is None else n}">{html.escape(documents(entry, board.tasks))}'
                 "</td>")
    cells += [_number(entry, key, entry.averages[key]) for key in ("perception", "reasoning")]
    cells += [_number(entry, task, entry.scores.get(task)) for task in board.tasks]
    return f'<tr{" class=baseline" if entry.is_baseline else ""}>{"".join(cells)}</tr>'


def _number(entry: Entry, key: str, value: float | None) -> str:
    """A score cell: † when it rests on part of the documents, its change, or ≠ without a same-documents one."""
    change = entry.delta(key)
    mark = (f'<span title="rests on part of the task&#39;s documents">{PARTIAL}</span>'
            if value is not None and entry.partial(key) else "")
    if change is not None:
        delta = f'<span class="delta {_direction(change)}">{signed(change)}</span>'
    elif entry.differs(key):
        delta = f'<span class="delta" title="the baseline has no run on these documents">{OTHER_DOCS}</span>'
    else:
        delta = ""
    return f'<td class="num" data-v="{"" if value is None else value}">{percent(value)}{mark}{delta}</td>'


def _direction(value: float) -> str:
    return "up" if round(100 * value, 1) > 0 else "down" if round(100 * value, 1) < 0 else ""
