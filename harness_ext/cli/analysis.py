"""`merged-vlm sweep` and `merged-vlm layers`: merge variants and layer-wise interpretability."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from harness_ext.cli.console import QuietOpt, SetOpt, be_quiet, console, parse_assignments, print_table, say
from harness_ext.results.names import checked_name
from harness_ext.task_names import check_tasks
from merge_models.recipe import load_recipe

if TYPE_CHECKING:
    from harness_ext.results.record import RunRecord

DEFAULT_TASKS = "mvlm_probe_perception,mvlm_probe_reasoning"


# Scale-out (harness_ext/scaleout.py): without these, everything runs in this process as before.
WorkersOpt = typer.Option(None, "--workers", min=1, help="Run the variants on N local Ray workers, one "
                                                         "resident model each.")
RayOpt = typer.Option(None, "--ray", metavar="ADDRESS", help="Join a Ray cluster instead: auto, or "
                                                             "ray://host:port (folders must be shared).")
GpusOpt = typer.Option(None, "--gpus-per-worker", help="GPUs each worker asks Ray for (default 1 where the "
                                                        "runtime has GPUs, else 0).")
CpusOpt = typer.Option(None, "--cpus-per-worker", help="CPUs each worker asks Ray for (default 1).")


def _tasks(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def sweep(recipe: str = typer.Argument(..., metavar="RECIPE", help="Recipe YAML path or name in recipes/."),
          grid: list[str] = typer.Option(..., "--grid", metavar="KEY=VALUES",
                                         help="key=start:stop:step or key=a,b,c; repeatable."),
          tasks: str = typer.Option(DEFAULT_TASKS, help="Comma-separated lmms-eval tasks or groups."),
          limit: int | None = typer.Option(None, help="Documents per task (all by default)."),
          out: Path | None = typer.Option(None, help="Sweep folder (default out/sweeps/<recipe>)."),
          batch_size: int = typer.Option(8, help="Generation batch size."),
          ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Record every finished variant (in the "
                                                                         "local store, results/local/)."),
          commit: bool = typer.Option(False, "--commit", help="Record in the committed store (results/) "
                                                              "instead."),
          workers: int | None = WorkersOpt, ray: str | None = RayOpt, gpus_per_worker: float | None = GpusOpt,
          cpus_per_worker: float | None = CpusOpt,
          set_: list[str] | None = SetOpt, quiet: bool = QuietOpt) -> None:
    """Evaluate a grid of recipe variants in one process (re-merged in place), or on Ray workers (--workers,
    --ray), resumably; table and figure per task and per split, with documents (n) and 95% intervals."""
    if quiet:
        be_quiet()
    from harness_ext.scaleout import scale_out
    from harness_ext.sweep import SweepFailed, parse_grid, run_sweep

    names = _tasks(tasks)
    check_tasks(names)  # before anything is merged or written
    folder = out or Path("out/sweeps") / Path(recipe).stem
    on_done = _ingester(commit) if ingest else None
    scale = scale_out(workers, ray, gpus_per_worker, cpus_per_worker)
    try:
        results = run_sweep(recipe, parse_grid(grid), names, folder, limit, batch_size, on_done, log=say(quiet),
                            overrides=parse_assignments(set_, "--set"), scale=scale, quiet=quiet)
    except SweepFailed as exc:
        if exc.results:
            _sweep_table(recipe, exc.results, folder)
        raise
    _sweep_table(recipe, results, folder)


def _sweep_table(recipe: str, results, folder: Path) -> None:
    """The sweep's table (per task and split, with n and intervals) and its figure."""
    from harness_ext.plots import plot_sweep
    from harness_ext.results.record import count_span

    keys = list(results[0].overrides)
    columns = list(dict.fromkeys((s.kind, s.name) for r in results for s in r.scores))
    table = Table(title=f"sweep of {recipe}: accuracy (%) [95% bootstrap interval], per task and per split",
                  caption="n: documents each score rests on", caption_justify="left")
    table.add_column("variant")
    table.add_column("hash")
    for kind, name in columns:
        counts = sorted({s.n for r in results for s in r.scores if (s.kind, s.name) == (kind, name) and s.n})
        n = "?" if not counts else count_span(counts)
        table.add_column(f"{name.removeprefix('mvlm_')}{' (split)' if kind == 'split' else ''}\nn={n}",
                         justify="right")
    for r in results:
        by_column = {(s.kind, s.name): s for s in r.scores}
        table.add_row(variant_label(r.overrides, keys), r.recipe_hash,
                      *[_with_interval(by_column.get(column)) for column in columns])
    print_table(table)
    figure = plot_sweep([(r.overrides, r.scores) for r in results], folder / "sweep.png", f"sweep of {recipe}")
    console.print(f"figure: {figure}")


def variant_label(overrides: dict, keys: list[str]) -> str:
    """A sweep variant as the grid names it: `lambda=0`, `lambda=0.5, method=ties`."""
    return ", ".join(f"{k}={overrides[k]}" for k in keys) or "recipe as written"


def _with_interval(score) -> str:
    if score is None or score.score is None:
        return "-"
    interval = "" if score.low is None else f" [{100 * score.low:.1f}, {100 * score.high:.1f}]"
    return f"{100 * score.score:.1f}{interval}"


def layers(recipe: str = typer.Argument(..., metavar="RECIPE", help="Recipe YAML path or name in recipes/."),
           stats: bool = typer.Option(False, "--stats", help="Task-vector statistics only (no evaluation)."),
           tasks: str = typer.Option(DEFAULT_TASKS, help="Comma-separated lmms-eval tasks or groups."),
           module: str = typer.Option("attn,mlp", help="Module groups: attn, mlp."),
           mode: str = typer.Option("zero-delta", help="Knockout: base, zero-delta or constant."),
           limit: int | None = typer.Option(None, help="Documents per task (all by default)."),
           out: Path | None = typer.Option(None, help="Output folder (default out/layers/<recipe>)."),
           batch_size: int = typer.Option(8, help="Generation batch size."),
           ingest: bool = typer.Option(True, "--ingest/--no-ingest", help="Record the numbers in the local "
                                                                          "store (results/local/layers/)."),
           commit: bool = typer.Option(False, "--commit", help="Record them in the committed store (results/) "
                                                               "instead."),
           workers: int | None = WorkersOpt, ray: str | None = RayOpt, gpus_per_worker: float | None = GpusOpt,
           cpus_per_worker: float | None = CpusOpt,
           set_: list[str] | None = SetOpt, quiet: bool = QuietOpt) -> None:
    """Per-layer task-vector statistics (--stats), or knockouts in the VLM and the merge with heatmaps (in one
    process, or spread over Ray workers with --workers or --ray)."""
    if quiet:
        be_quiet()
    modules = _tasks(module)
    folder = out or Path("out/layers") / Path(recipe).stem
    parsed = load_recipe(recipe, parse_assignments(set_, "--set"))
    if stats:
        _stats(parsed, modules, folder)
        return
    from harness_ext.layers import SplitEvaluator, knockout_analysis, knockout_analysis_scaled, write_outputs
    from harness_ext.scaleout import scale_out

    names = _tasks(tasks)
    check_tasks(names)  # before the first evaluation
    if ingest:
        checked_name(parsed.name or Path(recipe).stem, "recipe name")  # names the file the numbers go to
    evaluate_splits = SplitEvaluator(names, limit, batch_size)
    scale = scale_out(workers, ray, gpus_per_worker, cpus_per_worker)
    if scale is None:
        result = knockout_analysis(parsed, evaluate_splits, modules, mode, log=say(quiet))
    else:
        result = knockout_analysis_scaled(parsed, evaluate_splits, modules, mode, scale, log=say(quiet), quiet=quiet)
    paths = write_outputs(result, folder, f"knockout ({mode}) drops: {parsed.name or Path(recipe).stem}")
    _print_drops(result)
    if ingest:
        record = _record_layers(paths["json"], result.hashes.get("merged", "unknown"), parsed.name or Path(recipe).stem,
                                commit)
        console.print(f"recorded: {record}")
    console.print(f"heatmap: {paths['png']}; table: {paths['csv']}")


def _stats(recipe, modules: list[str], folder: Path) -> None:
    from merge_models.plan import build_plan
    from merge_models.stats import task_vector_stats

    plan = build_plan(recipe)
    rows = task_vector_stats(plan, modules)
    sources = len(plan.sources)
    table = Table(title=f"task vectors per layer (recipe hash {plan.recipe_hash})")
    headers = ["layer", "module", "|tau_vlm|", *[f"|tau_src{i}|" for i in range(sources)],
               *[f"cos(vlm,src{i})" for i in range(sources)], *[f"sign conflict src{i}" for i in range(sources)],
               "share of change"]
    for header in headers:
        table.add_column(header, justify="right")
    body = []
    for r in rows:
        cells = [r.layer, r.module, *[f"{n:.4f}" for n in r.tau_norms], *[f"{c:+.3f}" for c in r.cosine],
                 *[f"{c:.1%}" for c in r.sign_conflict], f"{r.change_share:.1%}"]
        table.add_row(*map(str, cells))
        body.append(cells)
    print_table(table)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "task_vector_stats.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([headers, *body])
    console.print(f"table: {folder / 'task_vector_stats.csv'}")


def _print_drops(result) -> None:
    for model, splits in result.drops.items():
        table = Table(title=f"{model}: accuracy drop when a layer's module is knocked out (points) [95% paired "
                            "bootstrap interval]; n: documents per split")
        table.add_column("layer", justify="right")
        columns = [(split, m) for split in splits for m in result.modules]
        for split, m in columns:
            table.add_column(f"{split} {m} n={result.n[model][split]}", justify="right")
        layers = next(iter(splits.values())).shape[0]
        for layer in range(layers):
            table.add_row(str(layer), *[_drop(result, model, split, layer, result.modules.index(m))
                                        for split, m in columns])
        print_table(table)


def _drop(result, model: str, split: str, layer: int, column: int) -> str:
    value = result.drops[model][split][layer, column]
    low, high = result.lows[model][split][layer, column], result.highs[model][split][layer, column]
    return f"{value:+.1f} [{low:+.1f}, {high:+.1f}]"


def _ingester(commit: bool):
    """A callback recording each finished variant's run record (local store, or committed with commit)."""
    def ingest(record: RunRecord) -> None:
        from harness_ext.cli.track import record_runs

        record_runs([record], commit=commit)

    return ingest


def _record_layers(source: Path, recipe_hash: str, name: str, commit: bool) -> Path:
    """Keep a knockout analysis's raw numbers under <store>/layers/ (one file per analysis, atomic)."""
    from datetime import datetime, timezone

    from harness_ext.results.files import write_atomic
    from harness_ext.results.store import open_store

    checked_name(name, "recipe name")
    checked_name(recipe_hash, "recipe hash")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = open_store(write=True, commit=commit).root / "layers" / f"{stamp}-{name}-{recipe_hash}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, source.read_text())
    return target


def register(app: typer.Typer) -> None:
    app.command(name="sweep")(sweep)
    app.command(name="layers")(layers)
