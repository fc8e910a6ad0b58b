"""`merged-vlm track ingest | list | query`: record evaluation runs under results/ and look them up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness_ext.console import console, print_table

track_app = typer.Typer(help="The results store: record lmms-eval / lm-eval runs under results/, list, query.",
                        no_args_is_help=True)

StoreOpt = typer.Option("--store", help="Results store folder (default: $MERGED_VLM_RESULTS, else ./results).")


def open_store(path: Path | None):
    """The store at --store, else the default one."""
    from harness_ext.results.store import Store, default_root

    return Store(path or default_root())


def ingest(output_path: Annotated[Path, typer.Argument(metavar="OUTPUT_PATH", help="lmms-eval / lm-eval --output_path folder, or one "
                                                                 "results JSON file.")],
           baseline: Annotated[bool, typer.Option("--baseline", help="Mark these runs as the unmerged VLM "
                                                                      "baseline.")] = False,
           store: Annotated[Path | None, StoreOpt] = None) -> None:
    """Record every run under OUTPUT_PATH (results, per-sample verdicts, recipe, versions, hardware)."""
    from harness_ext.results.ingest import read_output

    records = read_output(output_path, baseline=baseline)
    for added in open_store(store).add(records):
        r = added.record
        what = "recorded" if added.new else "already recorded"
        console.print(f"{what}: {added.path} (run {r.run_id}, variant {r.variant.name} {r.variant.id}, "
                      f"{len(r.tasks)} task{'s' if len(r.tasks) != 1 else ''}"
                      f"{', baseline' if r.variant.baseline else ''})", markup=False, highlight=False, soft_wrap=True)


def list_runs(store: Annotated[Path | None, StoreOpt] = None) -> None:
    """List recorded runs, newest first."""
    results = open_store(store)
    connection = results.index()
    rows = connection.execute(
        "SELECT r.*, GROUP_CONCAT(t.task, ', ') AS task_list FROM runs r LEFT JOIN tasks t USING (run_id) "
        "GROUP BY r.run_id ORDER BY r.date DESC, r.run_id").fetchall()
    table = Table(title=f"runs in {results.root}", title_justify="left")
    for column in ("run", "date (UTC)", "variant", "variant id", "harness / model", "tasks", "baseline"):
        table.add_column(column, overflow="fold", no_wrap=column in ("run", "date (UTC)", "variant id"))
    for row in rows:
        tasks = ", ".join(t.removeprefix("mvlm_") for t in (row["task_list"] or "").split(", ") if t)
        table.add_row(row["run_id"], row["date"][:16].replace("T", " "), row["name"], row["variant_id"][:16],
                      f"{row['harness']} / {row['model']}", tasks, "yes" if row["baseline"] else "")
    print_table(table)


def query(sql: Annotated[str, typer.Argument(metavar="SQL", help="A read-only SQL query over the index tables runs, tasks, "
                                                  "split_scores, samples and the view latest.")],
          store: Annotated[Path | None, StoreOpt] = None) -> None:
    """Run a read-only SQL query over the index built from the record files."""
    import sqlite3

    from harness_ext.results.errors import ResultsError

    connection = open_store(store).index()
    connection.execute("PRAGMA query_only = ON")
    try:
        cursor = connection.execute(sql)
    except sqlite3.Error as exc:
        raise ResultsError(f"query: {exc}") from None
    table = Table()
    for column in cursor.description or []:
        table.add_column(column[0], overflow="fold")
    for row in cursor.fetchall():
        table.add_row(*("" if value is None else str(value) for value in row))
    print_table(table)


def register(app: typer.Typer) -> None:
    track_app.command(name="ingest")(ingest)
    track_app.command(name="list")(list_runs)
    track_app.command(name="query")(query)
    app.add_typer(track_app, name="track")
