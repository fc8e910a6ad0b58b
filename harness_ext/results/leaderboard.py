"""The leaderboard: one row per variant with its score on every task, the perception and reasoning
averages, the change against the unmerged VLM baseline, and the perception-reasoning Pareto front.

Coverage is part of every score. Per variant and task the row shows the run on the most documents
(the most recent of those), so a run on part of the documents (`--limit`) never displaces a complete
one; the `n` column says how many documents each score rests on, and a score on part of its task's
documents is marked †. A change against the baseline is taken on the same documents: against the
baseline's run on the variant's document set; where the baseline has none, no change is shown (≠).
Scores are under one scoring protocol (`--protocol`, "official" by default).

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

from rich import box
from rich.table import Table
from rich.text import Text

from harness_ext.results.errors import ResultsError
from harness_ext.results.record import DEFAULT_PROTOCOL, SPLITS, count_span
from harness_ext.results.selection import find
from harness_ext.results.store import Store

SORT_KEYS = ("reasoning", "perception", "delta-reasoning", "delta-perception", "name", "date")
FRONT, BASE, PARTIAL, OTHER_DOCS = "★", "baseline", "†", "≠"


@dataclass(frozen=True)
class Coverage:
    """The documents a task score rests on."""

    n: int | None
    n_total: int | None
    doc_set: str | None
    partial: bool

    @property
    def key(self) -> str:
        """What a same-documents comparison matches on: the document set, else the count."""
        return self.doc_set or f"first {self.n} of {self.n_total}"


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
    coverage: dict[str, Coverage] = field(default_factory=dict)  # task -> documents of its score
    on_documents: dict[str, dict[str, tuple[float | None, dict[str, float]]]] = field(default_factory=dict)
    # task -> coverage key -> (score, split scores) of the latest run on those documents
    averages: dict[str, float | None] = field(default_factory=dict)  # split -> average
    averaged: dict[str, list[str]] = field(default_factory=dict)  # split -> tasks the average runs over
    baseline: Entry | None = None
    pareto: bool = False
    runs: dict[str, tuple[str, str]] = field(default_factory=dict)  # task -> (run id, aggregation) of its score
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # split -> 95% interval of its average

    @property
    def merges_nothing(self) -> bool:
        """The unmerged VLM run through a recipe (`modules=[]`): no method, λ or weights apply."""
        return self.layers == "modules none"

    def delta(self, key: str) -> float | None:
        """Change against the baseline of a split average ("perception") or a task score, on the same
        documents (None where the baseline has no run on them)."""
        if self.baseline is None or self.baseline is self:
            return None
        if key in SPLITS:
            mine, theirs = self.averages.get(key), self._baseline_average(key)
        else:
            found = self._baseline_on(key)
            mine, theirs = self.scores.get(key), None if found is None else found[0]
        return None if mine is None or theirs is None else mine - theirs

    def differs(self, key: str) -> bool:
        """Whether a change is missing only because the baseline has no run on these documents."""
        if self.baseline is None or self.baseline is self or self.delta(key) is not None:
            return False
        tasks = self.averaged.get(key, []) if key in SPLITS else [key]
        mine = self.averages.get(key) if key in SPLITS else self.scores.get(key)
        return mine is not None and bool(tasks) and all(t in self.baseline.scores for t in tasks)

    def partial(self, key: str) -> bool:
        """Whether a task score, or any score a split average runs over, rests on part of its documents."""
        tasks = self.averaged.get(key, []) if key in SPLITS else [key]
        return any(t in self.coverage and self.coverage[t].partial for t in tasks)

    def _baseline_on(self, task: str) -> tuple[float | None, dict[str, float]] | None:
        """The baseline's (score, split scores) of a task on this entry's documents of it, if it has a run there."""
        if task not in self.coverage or self.baseline is None:
            return None
        return self.baseline.on_documents.get(task, {}).get(self.coverage[task].key)

    def _baseline_average(self, split: str) -> float | None:
        over = self.averaged.get(split) or []
        found = [self._baseline_on(t) for t in over]
        values = [None if f is None else f[1].get(split) for f in found]
        return fmean(values) if over and None not in values else None


@dataclass
class Leaderboard:
    entries: list[Entry]
    tasks: list[str]  # task columns, perception tasks first
    averaged: dict[str, list[str]]  # split -> tasks its average runs over
    baseline_rule: str
    protocol: str = DEFAULT_PROTOCOL
    order: str = ""  # how rows are sorted, in words
    shown: int | None = None  # rows kept by --top (None: all)
    total: int = 0  # variants in the store


def build(store: Store, tasks: list[str] | None = None, baseline: str | None = None, sort: str = "reasoning",
          ascending: bool = False, protocol: str = DEFAULT_PROTOCOL, top: int | None = None) -> Leaderboard:
    """The leaderboard of every variant in the store, scored under `protocol` (the first `top` rows)."""
    if top is not None and top < 1:
        raise ResultsError(f"--top {top}: give a number of rows of at least 1")
    connection = store.index()
    known = [row[0] for row in connection.execute("SELECT DISTINCT protocol FROM protocol_scores ORDER BY protocol")]
    if known and protocol not in known:
        raise ResultsError(f"--protocol {protocol}: no recorded run has it; recorded: {', '.join(known)}")
    entries = _entries(connection, protocol)
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
        entry.averaged = averaged
        for split, over in averaged.items():
            values = [entry.split_scores.get(t, {}).get(split) for t in over]
            entry.averages[split] = fmean(values) if over and None not in values else None
    rule = _assign_baselines(entries, connection, baseline)
    _mark_front(entries)
    rows = _sorted(entries, sort, ascending, columns)[:top]
    for entry in rows:
        _average_intervals(connection, entry, protocol)
    return Leaderboard(rows, columns, averaged, rule, protocol, _order(sort, ascending), top, len(entries))


def _order(sort: str, ascending: bool) -> str:
    if sort in ("name", "date"):
        return f"by {sort}, " + ("earliest first" if sort == "date" and ascending else "latest first" if sort == "date"
                                 else "Z to A" if not ascending else "A to Z")
    what = f"change in {sort.removeprefix('delta-')} average" if sort.startswith("delta-") else \
        f"{sort} average" if sort in SPLITS else short(sort)
    return f"{'lowest' if ascending else 'highest'} {what} first (--sort)"


def _average_intervals(connection: sqlite3.Connection, entry: Entry, protocol: str, alpha: float = 0.05,
                       iterations: int = 2000) -> None:
    """Each split average's percentile interval: per task, bootstrap replicates of its score over the split's
    documents (resampled as the task's score defines them), averaged over the tasks (stratified)."""
    import zlib

    import numpy as np

    from harness_ext.results import stats

    for split, tasks in entry.averaged.items():
        draws = []
        for task in tasks:
            run_id, aggregation = entry.runs.get(task, (None, None))
            rows = connection.execute(
                "SELECT s.category, s.cluster, COALESCE(v.correct, s.value, s.correct) AS value FROM samples s "
                "LEFT JOIN verdicts v ON v.run_id = s.run_id AND v.task = s.task AND v.key = s.key AND v.protocol = ? "
                "WHERE s.run_id = ? AND s.task = ? AND (s.split = ? OR s.split IS NULL)",
                (protocol, run_id, task, split)).fetchall()
            if not rows:
                break
            design = stats.Design.of("micro" if aggregation in (None, "unknown") else aggregation,
                                     [r["category"] for r in rows], [r["cluster"] for r in rows])
            rng = np.random.default_rng([0, zlib.crc32(f"{run_id}/{task}/{split}".encode())])
            draws.append(stats.bootstrap_scores([float(r["value"] or 0.0) for r in rows], design, iterations, rng))
        else:
            if draws:
                entry.intervals[split] = stats.interval(np.mean(draws, axis=0), alpha)


def _entries(connection: sqlite3.Connection, protocol: str) -> list[Entry]:
    variants = connection.execute(
        "SELECT r.*, v.display, MAX(r.baseline) OVER (PARTITION BY r.variant_id) AS any_baseline FROM (SELECT *, "
        "ROW_NUMBER() OVER (PARTITION BY variant_id ORDER BY date DESC, run_id DESC) AS rank FROM runs) r "
        "JOIN variants v USING (variant_id)").fetchall()
    entries = {row["variant_id"]: Entry(row["variant_id"], row["display"], row["kind"], row["method"],
                                        row["lambda"], row["weights"], row["layers"], row["vlm"], row["date"],
                                        bool(row["any_baseline"]))
               for row in variants if row["rank"] == 1}
    chosen = connection.execute(
        "SELECT m.variant_id, m.task, m.run_id, m.aggregation, m.n, m.n_total, m.doc_set, m.limited, p.score FROM "
        "most_complete m "
        "LEFT JOIN protocol_scores p ON p.run_id = m.run_id AND p.task = m.task AND p.protocol = ? AND p.split = ''",
        (protocol,))
    for row in chosen:
        entry = entries[row["variant_id"]]
        entry.scores[row["task"]] = row["score"]
        entry.runs[row["task"]] = (row["run_id"], row["aggregation"])
        entry.coverage[row["task"]] = Coverage(row["n"], row["n_total"], row["doc_set"], bool(row["limited"]))
    for row in connection.execute(
            "SELECT m.variant_id, p.task, p.split, p.score FROM most_complete m JOIN protocol_scores p ON "
            "p.run_id = m.run_id AND p.task = m.task AND p.protocol = ? AND p.split != ''", (protocol,)):
        entries[row["variant_id"]].split_scores.setdefault(row["task"], {})[row["split"]] = row["score"]
    _load_document_sets(connection, entries, protocol)
    return list(entries.values())


def _load_document_sets(connection: sqlite3.Connection, entries: dict[str, Entry], protocol: str) -> None:
    """Per variant, task and document set: the latest run's scores (what changes against a baseline use)."""
    rows = connection.execute(
        "SELECT r.variant_id, t.task, t.n, t.n_total, t.doc_set, p.split, p.score FROM tasks t "
        "JOIN runs r USING (run_id) JOIN protocol_scores p ON p.run_id = t.run_id AND p.task = t.task "
        "AND p.protocol = ? ORDER BY r.date, r.run_id, p.split", (protocol,))
    for row in rows:  # oldest first: a later run on the same documents replaces an earlier one
        key = Coverage(row["n"], row["n_total"], row["doc_set"], False).key
        sets = entries[row["variant_id"]].on_documents.setdefault(row["task"], {})
        score, splits = sets.get(key, (None, {}))
        if row["split"] == "":
            sets[key] = (row["score"], {})
        else:
            sets[key] = (score, {**splits, row["split"]: row["score"]})


def _ordered(tasks: list[str], entries: list[Entry]) -> list[str]:
    def rank(task: str) -> tuple[int, str]:
        splits = {s for e in entries for s in e.split_scores.get(task, {})}
        return (0 if splits == {"perception"} else 1 if splits == {"reasoning"} else 2), task

    return sorted(tasks, key=rank)


def _assign_baselines(entries: list[Entry], connection: sqlite3.Connection, explicit: str | None) -> str:
    if explicit:
        target = find(connection, explicit)
        variant_id = target.id if target.kind == "variant" else connection.execute(
            "SELECT variant_id FROM runs WHERE run_id = ?", (target.id,)).fetchone()[0]
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


def documents(entry: Entry, tasks: list[str]) -> str:
    """The n column: documents per task ("200", "6-20"), "of N" and † when part of the tasks' documents."""
    covered = [entry.coverage[t] for t in tasks if t in entry.coverage and entry.coverage[t].n is not None]
    if not covered:
        return "-"
    text = count_span(sorted(c.n for c in covered))
    if any(c.partial for c in covered):
        totals = sorted(c.n_total for c in covered if c.n_total is not None)
        text += (f" of {count_span(totals)}" if totals else "") + f" {PARTIAL}"
    return text


def header(board: Leaderboard) -> list[str]:
    """Column titles shared by the terminal table, Markdown and HTML."""
    return ["variant", "method", "λ", "weights (VLM / sources)", "layers", "hash", "n", "perception", "Δ perc.",
            "reasoning", "Δ reas.", *map(short, board.tasks)]


def name_cell(entry: Entry) -> str:
    """The variant's name with its markers: ★ on the Pareto front, (baseline)."""
    return entry.name + (f" {FRONT}" if entry.pareto else "") + (f" ({BASE})" if entry.is_baseline else "")


def score_text(entry: Entry, key: str) -> str:
    """A task score or split average with its † when it rests on part of the documents."""
    value = entry.averages.get(key) if key in SPLITS else entry.scores.get(key)
    return percent(value) + (PARTIAL if value is not None and entry.partial(key) else "")


def change_text(entry: Entry, key: str) -> str:
    """The change against the baseline in points, ≠ when the baseline has no run on the same documents."""
    return signed(entry.delta(key)) or (OTHER_DOCS if entry.differs(key) else "")


def cells(board: Leaderboard, entry: Entry) -> list[str]:
    """One row's cells as text (tasks as "score (change)")."""
    tasks = [score_text(entry, t) + (f" ({change_text(entry, t)})" if change_text(entry, t) else "")
             for t in board.tasks]
    method, lambda_, weights = recipe_fields(entry)
    return [name_cell(entry), method, lambda_, weights, entry.layers or "-", short_id(entry.id), documents(entry, board.tasks), score_text(entry, "perception"),
            change_text(entry, "perception") or "-", score_text(entry, "reasoning"),
            change_text(entry, "reasoning") or "-", *tasks]


def recipe_fields(entry: Entry) -> tuple[str, str, str]:
    """Method, λ and weights as shown; "-" for a run that merges nothing (the unmerged VLM)."""
    if entry.merges_nothing:
        return "none (VLM alone)", "-", "-"
    return entry.method or entry.kind, entry.lambda_ or "-", entry.weights or "-"


def recipe_text(entry: Entry) -> str:
    """The terminal table's recipe cell: "linear λ=1.0 0.9/0.1", "+ layers 2-5" when not all layers."""
    if entry.merges_nothing:
        return "none (VLM alone)"
    method, lambda_, weights = recipe_fields(entry)
    parts = [method] + ([f"λ={lambda_}"] if lambda_ != "-" else []) + ([weights.replace(" / ", "/")]
                                                                        if weights != "-" else [])
    if entry.layers not in (None, "all"):
        parts.append(f"layers {entry.layers}")
    return " ".join(parts)


def caption(board: Leaderboard) -> str:
    """What the averages run over, which baseline and protocol apply, the row order and the markers."""
    over = "; ".join(f"{split} over {', '.join(map(short, tasks)) or 'no task'}"
                     for split, tasks in board.averaged.items())
    shown = f"; {len(board.entries)} of {board.total} variants (--top)" if board.shown is not None else ""
    return (f"Scores in %, protocol {board.protocol}; (change): against the baseline, in points, on the same "
            f"documents; n: documents per task. Averages: {over} (none if a task is missing). "
            f"{board.baseline_rule}. Rows: {board.order}{shown}. {PARTIAL}: part of the documents (--limit); "
            f"{OTHER_DOCS}: no baseline run on these documents; {FRONT}: perception-reasoning Pareto front.")


def short_id(variant_id: str) -> str:
    """Enough of a variant id to tell variants apart and to name one on the command line."""
    return variant_id[:14] if variant_id.startswith("model-") else variant_id[:10]


def rich_table(board: Leaderboard) -> Table:
    """The terminal table, readable at 80 columns: method, λ, weights and layers in one recipe cell that wraps,
    changes beside the scores, and a task's column only where its split average does not already show it."""
    table = Table(title="merged-vlm leaderboard", caption=caption(board), caption_justify="left", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("variant", overflow="fold")
    table.add_column("recipe", overflow="fold")
    table.add_column("hash", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    tasks = [t for t in board.tasks if [t] not in board.averaged.values()]
    for title in ("perception\navg", "reasoning\navg", *(short(t).replace("_", "\n") for t in tasks)):
        table.add_column(title, justify="right", no_wrap=True)
    for entry in board.entries:
        scores = [_scored(entry, key) for key in (*SPLITS, *tasks)]
        table.add_row(name_cell(entry), recipe_text(entry), short_id(entry.id), documents(entry, board.tasks),
                      *scores, style="italic" if entry.is_baseline else "")
    return table


def _scored(entry: Entry, key: str) -> Text:
    text = Text(score_text(entry, key), no_wrap=True)
    change = entry.delta(key)
    if change is not None:
        rounded = round(100 * change, 1)
        text.append(f" ({signed(change)})", style="green" if rounded > 0 else "red" if rounded < 0 else "dim")
    elif entry.differs(key):
        text.append(f" ({OTHER_DOCS})", style="dim")
    return text


def markdown(board: Leaderboard) -> str:
    """A Markdown table with the caption below it."""
    titles = header(board)
    lines = ["| " + " | ".join(titles) + " |",
             "|" + "|".join("---" if i < 6 else "---:" for i in range(len(titles))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(board, e)) + " |" for e in board.entries]
    return "\n".join(lines) + f"\n\n{caption(board)}\n"


def csv_text(board: Leaderboard) -> str:
    """Machine-readable: full ids, scores in percent, per task its change, documents and partial flag."""
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(["variant", "variant_id", "kind", "method", "lambda", "weights", "layers", "vlm", "baseline",
                     "pareto", "baseline_variant", "protocol", "n_min", "partial", "perception", "delta_perception",
                     "reasoning", "delta_reasoning",
                     *[c for t in board.tasks for c in (t, f"{t}_delta", f"{t}_n", f"{t}_n_total", f"{t}_partial")]])

    def number(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.4f}"

    def count(value: int | None) -> str:
        return "" if value is None else str(value)

    for e in board.entries:
        covered = [e.coverage[t] for t in board.tasks if t in e.coverage]
        n_min = min((c.n for c in covered if c.n is not None), default=None)
        per_task = []
        for t in board.tasks:
            c = e.coverage.get(t)
            per_task += [number(e.scores.get(t)), number(e.delta(t)), count(c and c.n), count(c and c.n_total),
                         "" if c is None else int(c.partial)]
        writer.writerow([e.name, e.id, e.kind, e.method or "", e.lambda_ or "", e.weights or "", e.layers or "",
                         e.vlm or "", int(e.is_baseline), int(e.pareto), e.baseline.id if e.baseline else "",
                         board.protocol, count(n_min), int(any(c.partial for c in covered)),
                         number(e.averages["perception"]), number(e.delta("perception")),
                         number(e.averages["reasoning"]), number(e.delta("reasoning")), *per_task])
    return sink.getvalue()
