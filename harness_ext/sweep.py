"""Sweeps: a grid of recipe variants, each merged in place and evaluated in one process, resumable.

A variant is finished once its lmms-eval output folder `<recipe name>-<hash>` exists under the
sweep folder; outputs are written to a temporary folder and renamed into place, so a killed
sweep leaves no half-finished variant and the next run picks up where it stopped.
"""

from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from merge_models.errors import MergeError, RecipeError
from merge_models.recipe import Recipe, apply_overrides, parse_recipe, read_recipe_document, resolve_recipe_path

if TYPE_CHECKING:
    from harness_ext.results.record import RunRecord
    from harness_ext.results.summary import Score

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
            [yaml.safe_load(v) for v in values.split(",")]
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
              overrides: dict[str, Any] | None = None) -> list[SweepResult]:
    """Evaluate every variant not finished yet (the recipe with `overrides`, then the grid's values), hand
    every finished one to `on_done` (which must be idempotent), and return all variants' results in grid
    order."""
    from harness_ext.evaluate import evaluate
    from harness_ext.lmms_model import MergedVLMChat
    from harness_ext.lmms_results import output_folder_name
    from harness_ext.remerge import InPlaceMerger

    variants = expand(recipe_file, grid, overrides)
    out.mkdir(parents=True, exist_ok=True)
    _write_state(out, recipe_file, grid, tasks, limit, overrides or {})
    merger: InPlaceMerger | None = None
    results = []
    for index, variant in enumerate(variants, 1):
        existing = out / output_folder_name(_record(variant.recipe))
        if not existing.is_dir():
            merger = merger or InPlaceMerger(variant.recipe)
            record = merger.apply(variant.recipe, resolve_recipe_path(recipe_file),
                                  {**variant.overrides, "name": variant.recipe.name})
            log(f"[{index}/{len(variants)}] {variant.label}: hash {record['recipe_hash']}, evaluating {tasks}")
            partial = out / f".partial-{record['recipe_hash']}"
            shutil.rmtree(partial, ignore_errors=True)
            model = MergedVLMChat(loaded=merger.loaded, batch_size=batch_size, quiet=True)
            evaluation = evaluate(model, tasks, partial, limit)
            evaluation.folder.rename(existing)
            shutil.rmtree(partial, ignore_errors=True)
        else:
            log(f"[{index}/{len(variants)}] {variant.label}: already done ({existing.name})")
        results.append(_result(variant, existing, on_done))
    return results


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
                 limit: int | None, overrides: dict[str, Any]) -> None:
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
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(state, indent=2))
    temp.rename(path)
