"""The leaderboard: one row per variant with its latest score on every task, the perception and reasoning
averages, the change against the unmerged VLM baseline, and the perception-reasoning Pareto front.

Split averages are unweighted means of task scores (as the suite's groups define them). So that
averages compare like with like, each split's average runs over one set of tasks for every variant:
the split's tasks that at least half of the variants were evaluated on (or those given with --tasks);
a variant missing one of them gets no average rather than an average over fewer tasks. Each variant is compared with
the baseline named by --baseline, else with the most recent baseline variant on the same VLM, else
with the only baseline variant there is.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from dataclasses import dataclass, field
from statistics import fmean

from rich.table import Table
from rich.text import Text

from harness_ext.results.errors import ResultsError
from harness_ext.results.record import SPLITS
from harness_ext.results.selection import resolve
from harness_ext.results.store import Store

SORT_KEYS = ("reasoning", "perception", "delta-reasoning", "delta-perception", "name", "date")
FRONT, BASE = "★", "baseline"


@dataclass
class Entry:
    """One variant's row."""

    id: str
    name: str
    kind: str
    method: str | None
    lambda_: str | None
    weights: str | None
    layers: str | None
    vlm: str | None
    date: str
    is_baseline: bool
    scores: dict[str, float | None] = field(default_factory=dict)  # task -> primary score
    split_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> split -> score
    averages: dict[str, float | None] = field(default_factory=dict)  # split -> average
    baseline: Entry | None = None
    pareto: bool = False

    def delta(self, key: str) -> float | None:
        """Change against the baseline of a split average ("perception") or a task score."""
        if self.baseline is None or self.baseline is self:
            return None
        mine, theirs = (self.averages, self.baseline.averages) if key in SPLITS else (self.scores, self.baseline.scores)
        return None if mine.get(key) is None or theirs.get(key) is None else mine[key] - theirs[key]


@dataclass
class Leaderboard:
    entries: list[Entry]
    tasks: list[str]  # task columns, perception tasks first
    averaged: dict[str, list[str]]  # split -> tasks its average runs over
    baseline_rule: str


def build(store: Store, tasks: list[str] | None = None, baseline: str | None = None, sort: str = "reasoning",
          ascending: bool = False) -> Leaderboard:
    """The leaderboard of every variant in the store."""
    connection = store.index()
    entries = _entries(connection)
    if not entries:
        raise ResultsError(f"{store.root}: no runs recorded yet; run `merged-vlm track ingest OUTPUT_PATH`")
    seen = {t for e in entries for t in e.scores}
    unknown = [t for t in tasks or [] if t not in seen]
    if unknown:
        raise ResultsError(f"--tasks: no recorded run has {', '.join(unknown)}; recorded: {', '.join(sorted(seen))}")
    columns = _ordered(tasks or sorted(seen), entries)
    averaged = {split: [t for t in columns if any(split in e.split_scores.get(t, {}) for e in entries)
                        and (tasks is not None or 2 * sum(t in e.scores for e in entries) >= len(entries))]
                for split in SPLITS}
    for entry in entries:
        for split, over in averaged.items():
            values = [entry.split_scores.get(t, {}).get(split) for t in over]
            entry.averages[split] = fmean(values) if over and None not in values else None
    rule = _assign_baselines(entries, store, baseline)
    _mark_front(entries)
    return Leaderboard(_sorted(entries, sort, ascending, columns), columns, averaged, rule)


def _entries(connection: sqlite3.Connection) -> list[Entry]:
    variants = connection.execute(
        "SELECT *, MAX(baseline) OVER (PARTITION BY variant_id) AS any_baseline FROM (SELECT *, ROW_NUMBER() OVER "
        "(PARTITION BY variant_id ORDER BY date DESC, run_id DESC) AS rank FROM runs)").fetchall()
    entries = {row["variant_id"]: Entry(row["variant_id"], row["name"], row["kind"], row["method"], row["lambda"],
                                        row["weights"], row["layers"], row["vlm"], row["date"],
                                        bool(row["any_baseline"]))
               for row in variants if row["rank"] == 1}
    for row in connection.execute("SELECT variant_id, task, score, run_id FROM latest"):
        entries[row["variant_id"]].scores[row["task"]] = row["score"]
    for row in connection.execute("SELECT l.variant_id, s.task, s.split, s.score FROM latest l JOIN split_scores s "
                                  "ON s.run_id = l.run_id AND s.task = l.task"):
        entries[row["variant_id"]].split_scores.setdefault(row["task"], {})[row["split"]] = row["score"]
    return list(entries.values())


def _ordered(tasks: list[str], entries: list[Entry]) -> list[str]:
    def rank(task: str) -> tuple[int, str]:
        splits = {s for e in entries for s in e.split_scores.get(task, {})}
        return (0 if splits == {"perception"} else 1 if splits == {"reasoning"} else 2), task

    return sorted(tasks, key=rank)


def _assign_baselines(entries: list[Entry], store: Store, explicit: str | None) -> str:
    if explicit:
        variant_id = resolve(explicit, store).variant.id
        chosen = next((e for e in entries if e.id == variant_id), None)
        if chosen is None:
            raise ResultsError(f"--baseline {explicit}: names a run that is not in the store; ingest it first")
        chosen.is_baseline = True
        for entry in entries:
            entry.baseline = chosen
        return f"baseline: {chosen.name} (--baseline)"
    baselines = sorted((e for e in entries if e.is_baseline), key=lambda e: e.date, reverse=True)
    for entry in entries:
        same_vlm = [b for b in baselines if b.vlm == entry.vlm]
        entry.baseline = entry if entry.is_baseline else (same_vlm or (baselines if len(baselines) == 1 else [None]))[0]
    if not baselines:
        return "no baseline recorded: ingest the unmerged VLM's run with --baseline, or pass --baseline"
    rule = "each variant against the one on its VLM" if len(baselines) > 1 else "the unmerged VLM"
    return f"baseline: {', '.join(b.name for b in baselines)} ({rule})"


def _mark_front(entries: list[Entry]) -> None:
    points = [e for e in entries if None not in (e.averages.get("perception"), e.averages.get("reasoning"))]
    for entry in points:
        p, r = entry.averages["perception"], entry.averages["reasoning"]
        entry.pareto = not any(o.averages["perception"] >= p and o.averages["reasoning"] >= r
                               and (o.averages["perception"] > p or o.averages["reasoning"] > r) for o in points)


def _sorted(entries: list[Entry], key: str, ascending: bool, tasks: list[str]) -> list[Entry]:
    if key not in SORT_KEYS and key not in tasks:
        raise ResultsError(f"--sort {key}: use one of {', '.join(SORT_KEYS)} or a task column ({', '.join(tasks)})")
    if key in ("name", "date"):
        return sorted(entries, key=lambda e: getattr(e, key), reverse=not ascending if key == "date" else ascending)

    def value(entry: Entry) -> float | None:
        if key.startswith("delta-"):
            return entry.delta(key.removeprefix("delta-"))
        return entry.averages.get(key) if key in SPLITS else entry.scores.get(key)

    present = sorted((e for e in entries if value(e) is not None),
                     key=lambda e: (value(e) if ascending else -value(e), e.name))
    return present + sorted((e for e in entries if value(e) is None), key=lambda e: e.name)


# ---- rendering: terminal table, Markdown, CSV ----

def percent(value: float | None) -> str:
    """A score as a percentage with one decimal, "-" when missing."""
    return "-" if value is None else f"{100 * value:.1f}"


def signed(value: float | None) -> str:
    """A change in points with its sign, "" when missing."""
    return "" if value is None else f"{100 * value:+.1f}"


def short(task: str) -> str:
    """A task name without the suite's prefix."""
    return task.removeprefix("mvlm_")


def header(board: Leaderboard) -> list[str]:
    """Column titles shared by the terminal table, Markdown and HTML."""
    return ["variant", "method", "λ", "weights (VLM / sources)", "layers", "hash", "perception", "Δ perc.",
            "reasoning", "Δ reas.", *map(short, board.tasks)]


def cells(board: Leaderboard, entry: Entry) -> list[str]:
    """One row's cells as text (tasks as "score (change)")."""
    name = entry.name + (f" {FRONT}" if entry.pareto else "") + (f" ({BASE})" if entry.is_baseline else "")
    tasks = [percent(entry.scores.get(t)) + (f" ({signed(entry.delta(t))})" if entry.delta(t) is not None else "")
             for t in board.tasks]
    return [name, entry.method or entry.kind, entry.lambda_ or "-", entry.weights or "-", entry.layers or "-",
            short_id(entry.id), percent(entry.averages["perception"]), signed(entry.delta("perception")) or "-",
            percent(entry.averages["reasoning"]), signed(entry.delta("reasoning")) or "-", *tasks]


def caption(board: Leaderboard) -> str:
    """What the averages run over, which baseline applies, and the markers."""
    over = "; ".join(f"{split} average over {', '.join(map(short, tasks)) or 'no task'}"
                     for split, tasks in board.averaged.items())
    return f"Scores in %, changes against the baseline in points. {over} (a variant missing one has none). " \
           f"{board.baseline_rule}. {FRONT}: on the perception-reasoning Pareto front."


def short_id(variant_id: str) -> str:
    """Enough of a variant id to tell variants apart and to name one on the command line."""
    return variant_id[:14] if variant_id.startswith("model-") else variant_id[:10]


def rich_table(board: Leaderboard) -> Table:
    """The terminal table: changes beside the scores, titles broken at underscores so columns stay narrow."""
    table = Table(title="merged-vlm leaderboard", caption=caption(board), caption_justify="left", title_justify="left")
    for title in ("variant", "method", "λ", "weights", "layers", "hash"):
        table.add_column(title, no_wrap=title in ("method", "hash"), overflow="fold")
    for title in ("perception\navg", "reasoning\navg", *(short(t).replace("_", "\n") for t in board.tasks)):
        table.add_column(title, justify="right", no_wrap=True)
    for entry in board.entries:
        name = entry.name + (f" {FRONT}" if entry.pareto else "") + (f" ({BASE})" if entry.is_baseline else "")
        scores = [_scored(entry.averages[s], entry.delta(s)) for s in SPLITS]
        scores += [_scored(entry.scores.get(t), entry.delta(t)) for t in board.tasks]
        table.add_row(name, entry.method or entry.kind, entry.lambda_ or "-", entry.weights or "-",
                      entry.layers or "-", short_id(entry.id), *scores, style="italic" if entry.is_baseline else "")
    return table


def _scored(value: float | None, change: float | None) -> Text:
    text = Text(percent(value), no_wrap=True)
    if change is not None:
        rounded = round(100 * change, 1)
        text.append(f" ({signed(change)})", style="green" if rounded > 0 else "red" if rounded < 0 else "dim")
    return text


def markdown(board: Leaderboard) -> str:
    """A Markdown table with the caption below it."""
    titles = header(board)
    lines = ["| " + " | ".join(titles) + " |",
             "|" + "|".join("---" if i < 6 else "---:" for i in range(len(titles))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(board, e)) + " |" for e in board.entries]
    return "\n".join(lines) + f"\n\n{caption(board)}\n"


def csv_text(board: Leaderboard) -> str:
    """Machine-readable: full ids, scores in percent, one column per task and per task change."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(["variant", "variant_id", "kind", "method", "lambda", "weights", "layers", "vlm", "baseline",
                     "pareto", "baseline_variant", "perception", "delta_perception", "reasoning", "delta_reasoning",
                     *[c for t in board.tasks for c in (t, f"{t}_delta")]])

    def number(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.4f}"

    for e in board.entries:
        writer.writerow([e.name, e.id, e.kind, e.method or "", e.lambda_ or "", e.weights or "", e.layers or "",
                         e.vlm or "", int(e.is_baseline), int(e.pareto), e.baseline.id if e.baseline else "",
                         number(e.averages["perception"]), number(e.delta("perception")),
                         number(e.averages["reasoning"]), number(e.delta("reasoning")),
                         *[number(v) for t in board.tasks for v in (e.scores.get(t), e.delta(t))]])
    return sink.getvalue()
