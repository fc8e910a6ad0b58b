"""`merged-vlm demo`: the README's main job — merge, evaluate perception and reasoning, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from harness_ext.cli.console import QuietOpt, SetOpt, be_quiet, console, parse_assignments, print_table, say

VLM_ALONE = {"modules": []}  # merges nothing: the VLM exactly as published
VLM_ALONE_SUFFIX = "-vlm-alone"  # the VLM-alone run's name: `<recipe name>-vlm-alone`, apart from the merge's


def demo(recipe: str = typer.Option("tiny-world", help="Recipe path or name in recipes/."),
         tasks: str = typer.Option("mvlm_probe_perception,mvlm_probe_reasoning", help="Comma-separated tasks."),
         limit: int | None = typer.Option(None, help="Documents per task (all by default)."),
         out: Path | None = typer.Option(None, "--out", help="lmms-eval output folder (default out/demo, in the "
                                                             "user data folder when installed without a checkout)."),
         batch_size: int = typer.Option(8, help="Generation batch size."),
         ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Record both runs (in the local store, "
                                                                        "results/local/)."),
         commit: bool = typer.Option(False, "--commit", help="Record them in the committed store (results/) "
                                                             "instead."),
         set_: list[str] | None = SetOpt, quiet: bool = QuietOpt) -> None:
    """Evaluate the VLM alone and the recipe's merge on the same tasks and print them side by side."""
    from harness_ext.results.store import data_home, recording_note

    note = recording_note(commit) if ingest else None
    if note:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    if quiet:
        be_quiet()
    out = out or data_home() / "out" / "demo"
    from harness_ext.cli.track import record_runs
    from harness_ext.evaluate import evaluate, split_scores
    from harness_ext.lmms_model import MergedVLMChat
    from harness_ext.results.ingest import read_output
    from merge_models.recipe import read_recipe_document

    from harness_ext.task_names import check_tasks

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    check_tasks(names)  # before anything is merged
    overrides = parse_assignments(set_, "--set")
    progress = say(quiet)
    name = read_recipe_document(recipe).get("name") or Path(recipe).stem
    rows, written, verdicts = [], [], []
    for label, variant in (("VLM alone", {**overrides, **vlm_alone(name)}), ("merged", overrides)):
        progress(f"[bold]{label}[/]: loading and evaluating {', '.join(names)} ...")
        model = MergedVLMChat(recipe=recipe, batch_size=batch_size, quiet=quiet, **variant)
        evaluation = evaluate(model, names, out, limit)
        rows.append((label, model.loaded.record["recipe_hash"], split_scores(evaluation.results), evaluation.folder))
        verdicts.append(_verdicts(evaluation.samples))
        counts = {(v.get("effective"), v.get("original")) for v in evaluation.results.get("n-samples", {}).values()}
        written.append(evaluation.results_file)
        del model
    _print_table(names, rows, documents(counts))
    console.print(reading(names, *verdicts), markup=False, highlight=False, soft_wrap=True)
    if ingest:  # the two runs just made, not earlier ones in the same folders
        record_runs([record for path in written for record in read_output(path)], commit=commit)


def documents(counts: set[tuple[int | None, int | None]]) -> str:
    """The table's n from each task's (effective, original) document counts: "200", or "10 of 200" when
    --limit left documents out."""
    parts = [f"{n} of {total}" if total and total != n else str(n) for n, total in sorted(
        (n, total) for n, total in counts if n is not None)]
    return ", ".join(dict.fromkeys(parts))


def _verdicts(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[int, bool]]:
    """Per task, each document's verdict (doc_id -> correct) under the primary metric."""
    return {task: {s["doc_id"]: bool(s["mvlm_acc"]["correct"])
                   for s in rows if isinstance(s.get("mvlm_acc"), dict)}
            for task, rows in samples.items()}


def reading(tasks: list[str], alone: dict[str, dict[int, bool]], merged: dict[str, dict[int, bool]],
            alpha: float = 0.05, seed: int = 0) -> str:
    """One line saying what the table shows: per task, the merge's change in points on the documents both runs
    answered, its paired-bootstrap interval, n, and whether the change is more than sampling noise."""
    import numpy as np

    from harness_ext.results.stats import Design, bootstrap_deltas, interval

    parts, significant = [], []
    for task in tasks:
        shared = sorted(set(alone.get(task, {})) & set(merged.get(task, {})))
        if not shared:
            continue
        a = [float(alone[task][d]) for d in shared]
        b = [float(merged[task][d]) for d in shared]
        design = Design.of("micro", [None] * len(shared), [None] * len(shared))
        low, high = interval(bootstrap_deltas(a, b, design, 2000, np.random.default_rng(seed)), alpha)
        change = 100 * (sum(b) - sum(a)) / len(shared)
        parts.append(f"{task.removeprefix('mvlm_')} {change:+.1f} points ({100 * (1 - alpha):.0f}% interval "
                     f"{100 * low:+.1f} to {100 * high:+.1f}, n={len(shared)})")
        if low > 0 or high < 0:
            significant.append(task.removeprefix("mvlm_"))
    verdict = (f"beyond sampling noise: {', '.join(significant)}" if significant
               else "no change is beyond sampling noise at this n")
    return f"What the merge changed, on the same documents: {'; '.join(parts)}; {verdict}."


def vlm_alone(name: str) -> dict[str, Any]:
    """The overrides of the demo's VLM-alone run: nothing merged, and its own name."""
    return {**VLM_ALONE, "name": f"{name}{VLM_ALONE_SUFFIX}"}


def _print_table(tasks: list[str], rows: list[tuple[str, str, dict[str, float], Path | None]], n: str) -> None:
    table = Table(title=f"VLM vs merged (accuracy, %; n = {n or '?'} documents per task)")
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
