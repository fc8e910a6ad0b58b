"""`merged-vlm data prepare`: local copies of the real benchmarks' datasets, for offline runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness_ext.console import console

data_app = typer.Typer(help="Benchmark data: download the published datasets into the layout the tasks read.",
                       no_args_is_help=True)

OutOpt = typer.Option("--out", help="Folder for <source>/<split>.parquet files; set MERGED_VLM_DATA to it.")
TasksOpt = typer.Option("--tasks", metavar="NAMES", help="Tasks or groups, comma-separated or repeated (default: mvlm_all).")
ForceOpt = typer.Option("--force", help="Download again even where a file exists.")


def prepare(out: Annotated[Path, OutOpt], tasks: Annotated[list[str] | None, TasksOpt] = None,
            force: Annotated[bool, ForceOpt] = False) -> None:
    """Download the datasets of the given tasks with `datasets.load_dataset` and write them as parquet."""
    from mvlm_tasks.sources import DATA_ENV, sources_for
    from mvlm_tasks.sources import prepare as prepare_sources

    names = [name.strip() for item in tasks or ["mvlm_all"] for name in item.split(",") if name.strip()]
    sources = sources_for(names)
    if not sources:
        console.print(f"nothing to prepare: {', '.join(names)} read no downloadable dataset", soft_wrap=True)
        return

    def report(line: str) -> None:
        console.print(line, markup=False, soft_wrap=True)

    prepare_sources(out, sources, force=force, report=report)
    report(f"done: export {DATA_ENV}={out.resolve()}")


def register(app: typer.Typer) -> None:
    data_app.command(name="prepare")(prepare)
    app.add_typer(data_app, name="data")
