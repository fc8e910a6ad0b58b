"""Sweeps: a grid of recipe variants, each merged in place and evaluated in one process, resumable.

A variant is finished once its lmms-eval output folder `<recipe name>-<hash>` exists under the
sweep folder; outputs are written to a temporary folder and renamed into place, so a killed
sweep leaves no half-finished variant and the next run picks up where it stopped.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from merge_models.errors import MergeError, RecipeError
from merge_models.recipe import (Recipe, apply_overrides, parse_recipe, parse_value, read_recipe_document,
                                 resolve_recipe_path)

if TYPE_CHECKING:
    from harness_ext.remerge import InPlaceMerger
    from harness_ext.results.record import RunRecord
    from harness_ext.results.summary import Score
    from harness_ext.scaleout import ScaleOut

STATE = "sweep.json"


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its overrides and the validated recipe they give."""

    overrides: dict[str, Any]
    recipe: Recipe

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.overrides.items())


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """`key=start:stop:step` (inclusive, decimal-exact) or `key=a,b,c` into {key: values}."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise RecipeError("--grid", f"{spec!r} is not key=values", "write e.g. --grid lambda=0.1:1.0:0.1")
        grid[key.strip()] = _range(values, spec) if values.count(":") == 2 else \
            [parse_value(v, "--grid", spec) for v in values.split(",")]
    return grid


def _range(text: str, spec: str) -> list[float]:
    try:
        start, stop, step = (Decimal(part) for part in text.split(":"))
    except ArithmeticError:
        raise RecipeError("--grid", f"{spec!r}: start:stop:step must be numbers", "write e.g. 0.1:1.0:0.1") from None
    if step <= 0 or stop < start:
        raise RecipeError("--grid", f"{spec!r}: needs start <= stop and a positive step", "write e.g. 0.1:1.0:0.1")
    count = int((stop - start) / step) + 1
    return [float(start + i * step) for i in range(count)]


def expand(recipe_file: str | Path, grid: dict[str, list[Any]],
           overrides: dict[str, Any] | None = None) -> list[Variant]:
    """Every combination of the grid on the recipe with `overrides` applied, each validated as a recipe
    before anything runs.

    Each variant is named `<recipe name>@<key>=<value>,...` (names are cosmetic: not in the hash).
    """
    document = apply_overrides(read_recipe_document(recipe_file), overrides or {})
    stem = document.get("name") or Path(recipe_file).stem
    keys = list(grid)
    variants = []
    for values in itertools.product(*(grid[k] for k in keys)):
        overrides = dict(zip(keys, values))
        name = f"{stem}@" + ",".join(f"{k}={v}" for k, v in overrides.items())
        try:
            recipe = parse_recipe(apply_overrides(document, {**overrides, "name": name}))
        except RecipeError as exc:
            raise RecipeError(exc.field, f"{exc.problem} (in variant {overrides})", exc.fix) from None
        variants.append(Variant(overrides, recipe))
    return variants


@dataclass
class SweepResult:
    """A finished variant: its overrides, recipe hash, output folder and run record, and its scores per task and
    per split with documents and intervals."""

    overrides: dict[str, Any]
    recipe_hash: str
    folder: Path
    record: RunRecord
    scores: list[Score]


def run_sweep(recipe_file: str | Path, grid: dict[str, list[Any]], tasks: list[str], out: Path,
              limit: int | None = None, batch_size: int = 8,
              on_done: Callable[[RunRecord], None] | None = None, log: Callable[[str], None] = print,
              overrides: dict[str, Any] | None = None, scale: ScaleOut | None = None,
              quiet: bool = False) -> list[SweepResult]:
    """Evaluate every variant not finished yet (the recipe with `overrides`, then the grid's values), hand
    every finished one to `on_done` (which must be idempotent), and return all variants' results in grid
    order. With `scale`, the variants run on Ray workers and each is written as it comes back; variants that
    failed there raise `SweepFailed` after the rest are done."""
    variants = expand(recipe_file, grid, overrides)
    out.mkdir(parents=True, exist_ok=True)
    _write_state(out, recipe_file, grid, tasks, limit, overrides or {}, write=False)  # refuses another sweep
    if scale is not None:  # workers have passed their start checks in scale_out; the sweep starts here
        _write_state(out, recipe_file, grid, tasks, limit, overrides or {})
        return _run_scaled(variants, Path(recipe_file), tasks, out, limit, batch_size, on_done, log, scale, quiet)
    from harness_ext.lmms_results import output_folder_name
    from harness_ext.remerge import InPlaceMerger

    merger: InPlaceMerger | None = None
    results = []
    for index, variant in enumerate(variants, 1):
        record = _record(variant.recipe)
        existing = out / output_folder_name(record)
        if not existing.is_dir():
            merger = merger or InPlaceMerger(variant.recipe)
            partial = out / f".partial-{record['recipe_hash']}"
            shutil.rmtree(partial, ignore_errors=True)
            folder = _evaluate(merger, variant, recipe_file, tasks, limit, batch_size, partial,
                               lambda text, i=index: log(f"[{i}/{len(variants)}] {text}"))
            folder.rename(existing)
            shutil.rmtree(partial, ignore_errors=True)
        else:
            log(f"[{index}/{len(variants)}] {variant.label}: already done ({existing.name})")
        _write_state(out, recipe_file, grid, tasks, limit, overrides or {})  # once a variant is done: no
        results.append(_result(variant, existing, on_done))  # state is left by a start that fails
    return results


def _evaluate(merger: InPlaceMerger, variant: Variant, recipe_file: str | Path, tasks: list[str],
              limit: int | None, batch_size: int, output: Path, log: Callable[[str], None]) -> Path:
    """Make the resident model the variant's merge and evaluate it under `output`; returns lmms-eval's folder."""
    from harness_ext.evaluate import evaluate
    from harness_ext.lmms_model import MergedVLMChat

    record = merger.apply(variant.recipe, resolve_recipe_path(recipe_file),
                          {**variant.overrides, "name": variant.recipe.name})
    log(f"{variant.label}: hash {record['recipe_hash']}, evaluating {tasks}")
    model = MergedVLMChat(loaded=merger.loaded, batch_size=batch_size, quiet=True)
    return evaluate(model, tasks, output, limit).folder


@dataclass(frozen=True)
class VariantJob:
    """A variant evaluated on a Ray worker's resident model; returns lmms-eval's output files by relative path."""

    variant: Variant
    recipe_file: Path
    tasks: list[str]
    limit: int | None
    batch_size: int

    def __call__(self, merger: InPlaceMerger) -> dict[str, bytes]:
        with tempfile.TemporaryDirectory(prefix="mvlm-variant-") as temp:
            folder = _evaluate(merger, self.variant, self.recipe_file, self.tasks, self.limit, self.batch_size,
                               Path(temp), lambda _: None)
            return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class SweepFailed(MergeError):
    """Some variants failed on their workers; the others finished and are in `results`."""

    exit_code = 1

    def __init__(self, results: list[SweepResult], failed: dict[str, str]) -> None:
        self.results = results
        super().__init__("sweep: variants failed: " + "; ".join(f"{k} ({v})" for k, v in failed.items())
                         + "; run the sweep again to retry them (finished variants are kept)")


def _run_scaled(variants: list[Variant], recipe_file: Path, tasks: list[str], out: Path, limit: int | None,
                batch_size: int, on_done: Callable[[RunRecord], None] | None, log: Callable[[str], None],
                scale: ScaleOut, quiet: bool) -> list[SweepResult]:
    """The sweep on Ray workers: each finished variant is written (atomic rename) and recorded as it arrives."""
    from harness_ext.lmms_results import output_folder_name
    from harness_ext.results.files import publish_dir
    from harness_ext.scaleout import Job, pool, required_paths, run_jobs

    folders = {v.label: out / output_folder_name(_record(v.recipe)) for v in variants}
    results: dict[str, SweepResult] = {}
    recipe_path = resolve_recipe_path(recipe_file).resolve()  # workers need not share this process's folder
    jobs = []
    for variant in variants:
        if folders[variant.label].is_dir():
            log(f"{variant.label}: already done ({folders[variant.label].name})")
            results[variant.label] = _result(variant, folders[variant.label], on_done)
        else:
            jobs.append(Job(variant.label, variant.label,
                            VariantJob(variant, recipe_path, tasks, limit, batch_size)))
    by_label = {v.label: v for v in variants}

    def arrived(job: Job, files: dict[str, bytes]) -> None:
        def fill(folder: Path) -> None:
            for name, data in files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)

        publish_dir(folders[job.key], fill)
        results[job.key] = _result(by_label[job.key], folders[job.key], on_done)
        log(f"{job.label}: done ({folders[job.key].name})")

    failed: dict[str, str] = {}
    if jobs:
        log(f"{len(jobs)} variants to run on Ray workers")
        with pool(scale, variants[0].recipe, required_paths(variants[0].recipe, sweep_folder=out), log) as workers:
            failed = run_jobs(jobs, workers, arrived, log, quiet)
    ordered = [results[v.label] for v in variants if v.label in results]
    if failed:
        raise SweepFailed(ordered, failed)
    return ordered


def _record(recipe: Recipe) -> dict[str, Any]:
    """The merge record of a recipe (its hash identifies a variant's output folder)."""
    from merge_models.plan import build_plan

    plan = build_plan(recipe)
    plan.close()
    return plan.record()


def _result(variant: Variant, folder: Path, on_done: Callable[[RunRecord], None] | None) -> SweepResult:
    """A finished variant's result, its output read once and handed to `on_done` before it is summarized."""
    from harness_ext.results.ingest import read_output
    from harness_ext.results.summary import summarize

    record = read_output(sorted(folder.glob("*_results.json"))[-1])[0]
    if on_done:  # idempotent, so a variant finished just before a kill is recorded on resume
        on_done(record)
    return SweepResult(variant.overrides, record.variant.id, folder, record, summarize(record))


STATE_OPTIONS = {"recipe": "recipe", "grid": "--grid", "tasks": "--tasks", "limit": "--limit", "set": "--set"}


def state_differences(earlier: dict[str, Any], now: dict[str, Any]) -> str:
    """What differs between a sweep folder's state and this run's, e.g. "--limit 5 there, 10 here"."""
    def shown(value: Any) -> str:
        if isinstance(value, dict):
            return ",".join(f"{k}={shown(v)}" for k, v in value.items()) or "none"
        if isinstance(value, list):
            return ",".join(shown(v) for v in value) or "none"
        return "none" if value is None else str(value)

    return "; ".join(f"{STATE_OPTIONS.get(key, key)} {shown(earlier.get(key))} there, {shown(now.get(key))} here"
                     for key in dict.fromkeys([*earlier, *now]) if earlier.get(key) != now.get(key))


def _write_state(out: Path, recipe_file: str | Path, grid: dict[str, list[Any]], tasks: list[str],
                 limit: int | None, overrides: dict[str, Any], write: bool = True) -> None:
    """Record the sweep in `out` (unless `write` is false); a RecipeError when `out` holds another sweep."""
    state = {"recipe": str(resolve_recipe_path(recipe_file)), "grid": grid, "tasks": tasks, "limit": limit}
    if overrides:  # only then, so that folders of sweeps without --set stay resumable
        state["set"] = overrides
    path = out / STATE
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier != state:
            raise MergeError(f"--out: {out} holds a different sweep ({state_differences(earlier, state)}); use "
                             "another --out folder or delete that one")
        return
    if not write:
        return
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(state, indent=2))
    temp.rename(path)
