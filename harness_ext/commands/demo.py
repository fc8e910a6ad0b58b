"""`merged-vlm demo`: the README's main job — merge, evaluate perception and reasoning, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harness_ext.console import QuietOpt, SetOpt, be_quiet, console, parse_assignments, print_table, say

BASELINE = {"modules": []}  # merges nothing: the VLM exactly as published


def demo(recipe: str = typer.Option("tiny-world", help="Recipe path or name in recipes/."),
         tasks: str = typer.Option("mvlm_probe_perception,mvlm_probe_reasoning", help="Comma-separated tasks."),
         limit: Optional[int] = typer.Option(None, help="Documents per task (all by default)."),
         out: Path = typer.Option(Path("out/demo"), "--out", help="lmms-eval output folder."),
         batch_size: int = typer.Option(8, help="Generation batch size."),
         set_: Optional[list[str]] = SetOpt, quiet: bool = QuietOpt) -> None:
    """Evaluate the VLM alone and the recipe's merge on the same tasks and print them side by side."""
    if quiet:
        be_quiet()
    from harness_ext.evaluate import evaluate, split_scores
    from harness_ext.lmms_model import MergedVLMChat

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    overrides = parse_assignments(set_, "--set")
    progress = say(quiet)
    rows = []
    for label, variant in (("VLM alone", {**overrides, **BASELINE}), ("merged", overrides)):
        progress(f"[bold]{label}[/]: loading and evaluating {', '.join(names)} ...")
        model = MergedVLMChat(recipe=recipe, batch_size=batch_size, quiet=quiet, **variant)
        evaluation = evaluate(model, names, out, limit)
        rows.append((label, model.loaded.record["recipe_hash"], split_scores(evaluation.results), evaluation.folder))
        del model
    _print_table(names, rows)


def _print_table(tasks: list[str], rows: list[tuple[str, str, dict[str, float], Path | None]]) -> None:
    table = Table(title="VLM vs merged (accuracy, %)")
    table.add_column("model")
    table.add_column("recipe hash")
    for task in tasks:
        table.add_column(task.removeprefix("mvlm_"), justify="right")
    baseline = rows[0][2]
    for label, recipe_hash, scores, _ in rows:
        cells = []
        for task in tasks:
            value = scores.get(task)
            text = "-" if value is None else f"{100 * value:.1f}"
            if value is not None and label != rows[0][0] and task in baseline:
                text += f" ({100 * (value - baseline[task]):+.1f})"
            cells.append(text)
        table.add_row(label, recipe_hash, *cells)
    print_table(table)
    for label, _, _, folder in rows:
        if folder:
            console.print(f"{label}: results and per-sample logs in {folder}")


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)
