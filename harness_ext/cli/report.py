"""`merged-vlm leaderboard | compare | regress | submit | reproduce`: views of the results store.

Runs are named by run id, variant id (recipe hash) or name (or a unique prefix of any), or a results
path (see harness_ext.results.selection). Every view says how many documents its scores rest on.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from harness_ext.cli.console import console, print_table
from harness_ext.cli.track import StoreOpt, open_store

FORMATS = ("table", "markdown", "csv", "html")
TasksOpt = typer.Option("--tasks", help="Tasks, comma-separated (default: all).")
AlphaOpt = typer.Option("--alpha", help="Significance level; intervals have level 1 - alpha.")
IterationsOpt = typer.Option("--iterations", help="Bootstrap replicates.")
SeedOpt = typer.Option("--seed", help="Bootstrap seed.")
ProtocolOpt = typer.Option("--protocol", help="Scoring protocol of the verdicts (official, strict, ...: those the "
                                              "tasks logged).")
IntersectionOpt = typer.Option("--intersection", help="Compare tasks evaluated on different documents on the "
                                                      "documents both sides answered (default: refuse).")


def _tasks(value: str | None) -> list[str] | None:
    return [t.strip() for t in value.split(",") if t.strip()] if value else None


def leaderboard(
        sort: Annotated[str, typer.Option("--sort", help="reasoning, perception, delta-reasoning, "
                                                         "delta-perception, name, date, or a task.")] = "reasoning",
        ascending: Annotated[bool, typer.Option("--ascending", help="Smallest first.")] = False,
        top: Annotated[int | None, typer.Option("--top", help="Show only the first N rows.")] = None,
        tasks: Annotated[str | None, TasksOpt] = None,
        baseline: Annotated[str | None, typer.Option("--baseline", help="The baseline run or variant (default: "
                                                                           "recorded baselines, by VLM).")] = None,
        output_format: Annotated[str, typer.Option("--format", help="table, markdown, csv or html.")] = "table",
        out: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
        plot: Annotated[Path | None, typer.Option("--plot", help="Also write the perception-vs-reasoning "
                                                                    "scatter PNG here.")] = None,
        protocol: Annotated[str, ProtocolOpt] = "official",
        store: Annotated[Path | None, StoreOpt] = None) -> None:
    """Variants as rows: documents (n), perception and reasoning averages, every task, change against the
    baseline on the same documents."""
    from harness_ext.results import leaderboard as board_module
    from harness_ext.results.errors import ResultsError
    from harness_ext.results.files import write_atomic
    from harness_ext.results.plot import scatter_png

    if output_format not in FORMATS:
        raise ResultsError(f"--format {output_format}: use one of {', '.join(FORMATS)}")
    board = board_module.build(open_store(store), _tasks(tasks), baseline, sort, ascending, protocol, top)
    has_points = any(None not in e.averages.values() for e in board.entries)
    png = scatter_png(board) if plot is not None or (output_format == "html" and has_points) else None
    if plot is not None:
        write_atomic(plot, png)
        console.print(f"plot: {plot}", markup=False, highlight=False)
    if output_format == "table" and out is None:
        print_table(board_module.rich_table(board))
        return
    if output_format == "html":
        from harness_ext.results.render_html import page

        text = page(board, png)
    elif output_format == "table":
        from rich.console import Console

        capture = Console(width=200, record=True, file=io.StringIO())
        capture.print(board_module.rich_table(board))
        text = capture.export_text()
    else:
        text = board_module.markdown(board) if output_format == "markdown" else board_module.csv_text(board)
    if out is None:
        print(text, end="")
    else:
        write_atomic(out, text)
        console.print(f"{output_format}: {out}", markup=False, highlight=False)


def compare(a: Annotated[str, typer.Argument(metavar="A", help="Reference side A (run, variant or results path).")],
            b: Annotated[str, typer.Argument(metavar="B", help="Side B, compared against A (differences are B - A).")],
            tasks: Annotated[str | None, TasksOpt] = None, alpha: Annotated[float, AlphaOpt] = 0.05,
            iterations: Annotated[int, IterationsOpt] = 10_000, seed: Annotated[int, SeedOpt] = 0,
            as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
            intersection: Annotated[bool, IntersectionOpt] = False,
            protocol: Annotated[str, ProtocolOpt] = "official",
            store: Annotated[Path | None, StoreOpt] = None) -> None:
    """Per task and split: B - A with a paired bootstrap interval and McNemar's p on the same documents."""
    comparison = _compare(a, b, tasks, alpha, iterations, seed, store, intersection, protocol)
    if as_json:
        payload = {"a": comparison.a.label, "b": comparison.b.label, "alpha": alpha, "iterations": iterations,
                   "seed": seed, "protocol": protocol, "intersection": comparison.narrowed,
                   "same_weights": same_weights(comparison) is not None,
                   "tasks": [asdict(r) for r in comparison.tasks],
                   "splits": [asdict(r) for r in comparison.splits],
                   "mismatches": [asdict(m) for m in comparison.mismatches],
                   "only_in_a": comparison.only_in_a, "only_in_b": comparison.only_in_b}
        print(json.dumps(payload, indent=2))
        return
    _print_comparison(comparison)


def regress(baseline: Annotated[str, typer.Option("--baseline", help="The reference run or variant (or a "
                                                                      "results path).")],
            candidate: Annotated[str, typer.Option("--candidate", help="The run or variant to check, or a fresh "
                                                                        "lmms-eval --output_path.")],
            max_drop: Annotated[float, typer.Option("--max-drop", help="Largest tolerated drop, in percentage "
                                                                       "points.")] = 1.0,
            tasks: Annotated[str | None, TasksOpt] = None, alpha: Annotated[float, AlphaOpt] = 0.05,
            iterations: Annotated[int, IterationsOpt] = 10_000, seed: Annotated[int, SeedOpt] = 0,
            intersection: Annotated[bool, IntersectionOpt] = False,
            protocol: Annotated[str, ProtocolOpt] = "official",
            store: Annotated[Path | None, StoreOpt] = None) -> None:
    """Exit 1 when a task or split average drops by more than --max-drop points AND significantly, or when the
    candidate covers fewer documents than the baseline; exit 2 when they rest on different documents."""
    from harness_ext.results.regress import check_comparable, coverage_failures, regressions

    comparison = _compare(baseline, candidate, tasks, alpha, iterations, seed, store, intersection, protocol,
                          ("the baseline", "the candidate"), strict=True)
    check_comparable(comparison)
    _print_comparison(comparison)
    uncovered = coverage_failures(comparison)
    failed = regressions(comparison, max_drop)
    for row in comparison.tasks + comparison.splits:
        if row not in failed and row.delta is not None and -100 * row.delta > max_drop:
            upper = "-" if row.high is None else f"{100 * row.high:+.1f}"
            console.print(f"not significant: {row.name} {100 * row.delta:+.1f} points (McNemar p = "
                          f"{_p(row.mcnemar.p) if row.mcnemar else '-'}, CI upper bound {upper})",
                          style="yellow", markup=False, highlight=False, soft_wrap=True)
    for line in uncovered:
        console.print(f"REGRESSION coverage: {line}", style="bold red", markup=False, highlight=False,
                      soft_wrap=True)
    if not failed and not uncovered:
        console.print(f"ok: no drop larger than {max_drop:g} points is significant at alpha {alpha:g}",
                      markup=False, highlight=False)
        return
    for row in failed:
        p = f", McNemar p = {_p(row.mcnemar.p)}" if row.mcnemar else ""
        console.print(f"REGRESSION {row.name}: {100 * row.delta:+.1f} points ({_percent(row.a)} -> "
                      f"{_percent(row.b)}, {100 * (1 - alpha):g}% CI [{100 * row.low:+.1f}, {100 * row.high:+.1f}]"
                      f"{p})", style="bold red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def submit(run: Annotated[str, typer.Argument(metavar="RUN", help="The run or variant to submit.")],
           out: Annotated[Path, typer.Option("--out", help="Folder for the bundle.")],
           force: Annotated[bool, typer.Option("--force", help="Replace --out if it is not empty.")] = False,
           protocol: Annotated[str, ProtocolOpt] = "official",
           store: Annotated[Path | None, StoreOpt] = None) -> None:
    """Write a leaderboard submission bundle: results JSON, per-sample predictions, model card, recipe."""
    from harness_ext.results.selection import resolve
    from harness_ext.results.submit import partial_tasks, write_bundle

    evaluation = resolve(run, open_store(store), protocol)
    written = write_bundle(evaluation, out, force)
    if partial_tasks(evaluation):
        console.print(f"warning: {', '.join(partial_tasks(evaluation))} evaluated on part of their documents "
                      "(--limit); leaderboards expect full runs", style="yellow", markup=False, highlight=False,
                      soft_wrap=True)
    documents = ", ".join(f"{task} n={r.n}" for task, r in evaluation.tasks.items())
    console.print(f"bundle: {out} ({', '.join(str(p) for p in written)}; {documents})", markup=False,
                  highlight=False, soft_wrap=True)
    console.print(f"reproduce it from the root of the checkout that holds its local checkpoints: merged-vlm "
                  f"reproduce {out} --out out", markup=False, highlight=False, soft_wrap=True)


def reproduce(bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="A folder `submit --out` wrote.")],
              out: Annotated[Path, typer.Option("--out", help="Output folder of the harness run.")] = Path("out")
              ) -> None:
    """Re-run a submission bundle's evaluation, from the checkout that holds its local checkpoints: checks
    each checkpoint's content digest first (one line and exit 2 on a mismatch)."""
    from harness_ext.results.reproduce import reproduce as run_reproduce

    raise typer.Exit(run_reproduce(bundle, out, Path.cwd()))


def _compare(a: str, b: str, tasks: str | None, alpha: float, iterations: int, seed: int, store: Path | None,
             intersection: bool, protocol: str, sides: tuple[str, str] = ("A", "B"), strict: bool = False):
    from harness_ext.results.compare import compare as run_compare
    from harness_ext.results.selection import resolve

    results = open_store(store)
    results.strict = strict  # regress gates CI: an unreadable record stops it (exit 2) instead of a warning
    return run_compare(resolve(a, results, protocol), resolve(b, results, protocol), alpha, iterations, seed,
                       _tasks(tasks), intersection, sides)


def _print_comparison(comparison) -> None:
    level = f"{100 * (1 - comparison.alpha):g}% CI"
    table = Table(title=f"B - A   A: {comparison.a.label}   B: {comparison.b.label}", title_justify="left",
                  caption=f"Scores in %, differences in points, protocol {comparison.a.protocol}. docs: documents "
                          f"compared (paired); A n / B n: documents each side has. {level}: paired bootstrap, "
                          f"{comparison.iterations} replicates, seed {comparison.seed}. McNemar on paired verdicts "
                          "(exact binomial below 25 discordant pairs); A only / B only: documents only that side "
                          "got right.",
                  caption_justify="left")
    for title in ("task / split", "docs", "A", "B", "B - A", level, "A only", "B only", "McNemar p", "test", "A n",
                  "B n", "note"):
        left = title in ("task / split", "test", "note")
        table.add_column(title, justify="left" if left else "right", overflow="fold", no_wrap=title != "note")
    for index, row in enumerate(comparison.tasks + comparison.splits):
        if index == len(comparison.tasks):
            table.add_section()
        delta = "-" if row.delta is None else f"{100 * row.delta:+.1f}"
        interval = "-" if row.low is None else f"[{100 * row.low:+.1f}, {100 * row.high:+.1f}]"
        significant = row.mcnemar is not None and row.mcnemar.p < comparison.alpha and row.low is not None and (
            row.low > 0 or row.high < 0)
        style = ("green" if row.delta > 0 else "red") if significant else ""
        test = row.mcnemar
        table.add_row(row.name, str(row.n), _percent(row.a), _percent(row.b), Text(delta, style=style), interval,
                      "-" if test is None else str(test.a_only), "-" if test is None else str(test.b_only),
                      "-" if test is None else _p(test.p), "-" if test is None else test.test,
                      _count(row.n_a), _count(row.n_b), row.note)
    print_table(table)
    same = same_weights(comparison)
    if same:
        console.print(same, style="yellow", markup=False, highlight=False, soft_wrap=True)
    if comparison.narrowed:
        console.print(f"compared on the intersection (--intersection): {', '.join(comparison.narrowed)} rest on "
                      "different documents in A and B; docs is the number both answered, A n / B n each side's",
                      style="yellow", markup=False, highlight=False, soft_wrap=True)
    for mismatch in comparison.mismatches:
        parts = [f"{len(keys)} {what}" for what, keys in (("only in A", mismatch.only_a), ("only in B", mismatch.only_b),
                                                          ("with different targets", mismatch.target_differs)) if keys]
        examples = ", ".join((mismatch.only_a + mismatch.only_b + mismatch.target_differs)[:3])
        console.print(f"documents not paired in {mismatch.task}: {'; '.join(parts)} (e.g. {examples}); compared on "
                      "the documents both answered", style="yellow", markup=False, highlight=False, soft_wrap=True)
    for side, tasks in (("A", comparison.only_in_a), ("B", comparison.only_in_b)):
        if tasks:
            console.print(f"only {side} has {', '.join(tasks)}: not compared", style="yellow", markup=False,
                          highlight=False, soft_wrap=True)


def same_weights(comparison) -> str | None:
    """A note when A and B are the same weights (one recipe hash), so differences are between runs only."""
    a, b = comparison.a.variant, comparison.b.variant
    if a.recipe_hash is None or a.recipe_hash != b.recipe_hash:
        return None
    return (f"A and B are the same weights (recipe hash {a.recipe_hash}): any difference is between runs "
            "(documents, settings, nondeterminism), not between merges")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _p(value: float) -> str:
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"


def register(app: typer.Typer) -> None:
    for command in (leaderboard, compare, regress, submit, reproduce):
        app.command(name=command.__name__)(command)
