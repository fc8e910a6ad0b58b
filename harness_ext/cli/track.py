"""`merged-vlm track ingest | list | query`: record evaluation runs (in the local store, or the committed one
with --commit; see harness_ext.results.store) and look them up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness_ext.cli.console import console, print_table

track_app = typer.Typer(help="The results store: record lmms-eval / lm-eval runs, list, query.",
                        no_args_is_help=True)

StoreOpt = typer.Option("--store", help="One results store folder to read and write (default: the local store "
                                        "results/local/ for writing; it and the committed results/ for reading).")
CommitOpt = typer.Option("--commit", help="Record in the committed store (results/, $MERGED_VLM_RESULTS) instead "
                                          "of the local one.")


def open_store(path: Path | None, write: bool = False, commit: bool = False):
    """The store at --store, else the default ones (see harness_ext.results.store)."""
    from harness_ext.results.store import open_store as open_default

    return open_default(path, write, commit)


def record_runs(records, store: Path | None = None, commit: bool = False) -> None:
    """Add runs to a store and say where each went, with what it rests on (tasks, documents)."""
    from harness_ext.results.record import count_span

    results = open_store(store, write=True, commit=commit)
    for added in results.add(records):
        r = added.record
        what = "recorded" if added.new else "already recorded"
        tasks = f"{len(r.tasks)} task{'s' if len(r.tasks) != 1 else ''}"
        partial = [t for t, result in r.tasks.items() if result.partial]
        counts = sorted({result.n for result in r.tasks.values() if result.n is not None})
        documents = "" if not counts else f", n {count_span(counts)}"
        console.print(f"{what}: {added.path} (run {r.run_id}, variant {r.variant.name} {r.variant.id}, {tasks}"
                      f"{documents}{', part of the documents (--limit)' if partial else ''}"
                      f"{', baseline' if r.variant.baseline else ''})", markup=False, highlight=False, soft_wrap=True)
    if store is None and not commit and records:
        console.print(f"(in the local store {results.root}; pass --commit to record in the committed store)",
                      markup=False, highlight=False, soft_wrap=True)


def ingest(output_path: Annotated[Path, typer.Argument(metavar="OUTPUT_PATH", help="lmms-eval / lm-eval --output_path folder, or one "
                                                                 "results JSON file.")],
           baseline: Annotated[bool, typer.Option("--baseline", help="Mark these runs as the unmerged VLM "
                                                                      "baseline.")] = False,
           commit: Annotated[bool, CommitOpt] = False,
           store: Annotated[Path | None, StoreOpt] = None) -> None:
    """Record every run under OUTPUT_PATH (results, per-sample verdicts, recipe, versions, hardware)."""
    from harness_ext.results.ingest import read_output

    open_store(store, write=True, commit=commit)  # refuses --store with --commit before reading anything
    record_runs(read_output(output_path, baseline=baseline), store, commit)


def list_runs(store: Annotated[Path | None, StoreOpt] = None) -> None:
    """List recorded runs, newest first, with the documents each task rests on."""
    results = open_store(store)
    connection = results.index()
    rows = connection.execute(
        "SELECT r.*, v.display, GROUP_CONCAT(t.task || ' ' || COALESCE(t.n, '?') || CASE WHEN t.limited THEN '/' || "
        "COALESCE(t.n_total, '?') ELSE '' END, ', ') AS task_list FROM runs r JOIN variants v USING (variant_id) "
        "LEFT JOIN tasks t USING (run_id) GROUP BY r.run_id ORDER BY r.date DESC, r.run_id").fetchall()
    table = Table(title=f"runs in {', '.join(str(p) for p in [results.root, *results.also_read])}",
                  caption="tasks: name and documents (n, or n/total when part of the task's documents)",
                  title_justify="left", caption_justify="left")
    for column in ("run", "date (UTC)", "variant", "variant id", "harness / model", "tasks (n)", "baseline", "store"):
        table.add_column(column, overflow="fold", no_wrap=column in ("run", "date (UTC)", "variant id"))
    for row in rows:
        tasks = ", ".join(t.removeprefix("mvlm_") for t in (row["task_list"] or "").split(", ") if t)
        table.add_row(row["run_id"], row["date"][:16].replace("T", " "), row["display"], row["variant_id"][:16],
                      f"{row['harness']} / {row['model']}", tasks, "yes" if row["baseline"] else "", row["store"])
    print_table(table)


def query(sql: Annotated[str, typer.Argument(metavar="SQL", help="A read-only SQL query over the index tables runs, "
                                                  "tasks, split_scores, samples, verdicts, protocol_scores, variants "
                                                  "and the views latest and most_complete.")],
          store: Annotated[Path | None, StoreOpt] = None,
          timeout: Annotated[float, typer.Option("--timeout", help="Stop the query after this many "
                                                                   "seconds.")] = 5.0) -> None:
    """Run a read-only SQL query over the index built from the record files (tables runs, tasks, split_scores,
    samples, verdicts, protocol_scores, variants; views latest and most_complete)."""
    from harness_ext.results.query import run_query

    results = open_store(store)
    results.index().close()  # brought up to date first; the query itself can only read
    columns, rows = run_query(results.root / ".index.sqlite", sql, timeout)
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    print_table(table)


def register(app: typer.Typer) -> None:
    track_app.command(name="ingest")(ingest)
    track_app.command(name="list")(list_runs)
    track_app.command(name="query")(query)
    app.add_typer(track_app, name="track")
