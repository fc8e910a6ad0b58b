"""Layer knockouts: where perception and reasoning live, in the VLM and in its merge.

For each decoder layer and module group the group's weights are replaced in place, the tasks are
evaluated, and the weights are copied back (bit for bit) — never reloaded. The drop against the
intact model, per split (perception / reasoning, from each sample's record), maps where each
ability lives, before and after merging.

Modes: `base` puts the base LLM's weights in; `zero-delta` removes the model's own change for that
layer (the VLM falls back to the base LLM, the merge falls back to the VLM: undoing the merge there);
`constant` fills each tensor with its mean, as the paper's knockout did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from harness_ext.remerge import InPlaceMerger
from merge_models.errors import RecipeError
from merge_models.recipe import Recipe, apply_overrides, parse_recipe
from merge_models.stats import MODULE_PATTERNS

if TYPE_CHECKING:
    from harness_ext.scaleout import ScaleOut

MODES = ("base", "zero-delta", "constant")


@dataclass
class KnockoutResult:
    """Accuracy per split of each model intact, and the drop (points) per layer x module group."""

    modules: list[str]
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    drops: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"modules": self.modules, "reference": self.reference, "recipe_hashes": self.hashes,
                "drops": {m: {s: d.tolist() for s, d in splits.items()} for m, splits in self.drops.items()}}


def split_accuracy(samples: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Accuracy per split over all samples of all tasks, from their records' `split` and `correct`."""
    totals: dict[str, list[int]] = {}
    for task_samples in samples.values():
        for sample in task_samples:
            record = sample.get("mvlm_acc")
            if isinstance(record, dict) and "split" in record:
                counts = totals.setdefault(record["split"], [0, 0])
                counts[0] += int(bool(record["correct"]))
                counts[1] += 1
    return {split: correct / count for split, (correct, count) in sorted(totals.items()) if count}


def baseline_of(recipe: Recipe) -> Recipe:
    """The same recipe merging nothing: the VLM as published."""
    return parse_recipe(apply_overrides(recipe.model_dump(mode="json", by_alias=True), {"modules": []}))


@dataclass(frozen=True)
class SplitEvaluator:
    """Accuracy per split of the tasks on a merger's current model (picklable, so Ray workers can run it)."""

    tasks: list[str]
    limit: int | None = None
    batch_size: int = 8

    def __call__(self, merger: InPlaceMerger) -> dict[str, float]:
        from harness_ext.evaluate import evaluate
        from harness_ext.lmms_model import MergedVLMChat

        model = MergedVLMChat(loaded=merger.loaded, batch_size=self.batch_size, quiet=True)
        return split_accuracy(evaluate(model, self.tasks, None, self.limit).samples)


def _check(recipe: Recipe, mode: str, modules: list[str]) -> None:
    """Refuse an unknown mode or module group, before the first evaluation."""
    if mode not in MODES:
        raise RecipeError("--mode", f"unknown knockout mode {mode!r}", f"use {', '.join(MODES)}")
    unknown = [m for m in modules if m not in MODULE_PATTERNS]
    if unknown or not modules:
        raise RecipeError("--module", f"unknown module group {(unknown or [''])[0]!r}",
                          f"use {', '.join(MODULE_PATTERNS)} (comma-separated)")
    if mode in ("base", "zero-delta") and recipe.base is None:
        raise RecipeError("base", f"knockout mode {mode} needs the shared base LLM", "add `base:` or use constant")


def knockout_analysis(recipe: Recipe, evaluate_splits: Callable[[InPlaceMerger], dict[str, float]],
                      modules: list[str], mode: str, merger: InPlaceMerger | None = None,
                      log: Callable[[str], None] = print) -> KnockoutResult:
    """Knock out every (layer, module group) in the VLM and in the recipe's merge; measure the drops."""
    _check(recipe, mode, modules)
    merger = merger or InPlaceMerger(recipe)
    result = KnockoutResult(modules)
    for label, variant in (("VLM", baseline_of(recipe)), ("merged", recipe)):
        record = merger.apply(variant)
        result.hashes[label] = record["recipe_hash"]
        result.reference[label] = evaluate_splits(merger)
        log(f"{label} intact: {_percent(result.reference[label])}")
        scores = {}
        for layer in range(merger.plan.num_layers):
            for module in modules:
                scores[layer, module] = knock_out(merger, recipe, label, layer, module, mode, evaluate_splits)
                log(f"{label} layer {layer} {module}: {_percent(scores[layer, module])}")
        result.drops[label] = _drops(result.reference[label], scores, merger.plan.num_layers, modules)
    merger.restore_vlm()
    return result


def knock_out(merger: InPlaceMerger, recipe: Recipe, label: str, layer: int, module: str, mode: str,
              evaluate_splits: Callable[[InPlaceMerger], dict[str, float]]) -> dict[str, float]:
    """Scores with one layer's module group knocked out of the current model, whose weights are put back after."""
    base = merger.shared.open(recipe.base, "base", recipe.allow_pickle) if recipe.base else None
    names = [c for c in merger.vlm.canonical_map
             if c.startswith(f"model.layers.{layer}.") and MODULE_PATTERNS[module] in c]
    saved = {c: merger.parameter(c).clone() for c in names}
    with torch.no_grad():
        for canonical in names:
            merger.parameter(canonical).copy_(_replacement(merger, base, canonical, mode, label))
    scores = evaluate_splits(merger)
    with torch.no_grad():
        for canonical, value in saved.items():
            merger.parameter(canonical).copy_(value)
    return scores


def _drops(reference: dict[str, float], scores: dict[tuple[int, str], dict[str, float]], layers: int,
           modules: list[str]) -> dict[str, np.ndarray]:
    """Drop in points per split, layer and module group, against the intact model."""
    drops = {split: np.zeros((layers, len(modules))) for split in reference}
    for (layer, module), values in scores.items():
        for split, value in values.items():
            drops.setdefault(split, np.zeros((layers, len(modules))))[layer, modules.index(module)] = \
                100 * (reference.get(split, 0.0) - value)
    return drops


@dataclass(frozen=True)
class KnockoutJob:
    """On a Ray worker: make the model the intact `label` model (unless it is already), then score it as it is
    (layer None) or with one layer's module group knocked out."""

    recipe: Recipe
    label: str
    recipe_hash: str
    layer: int | None
    module: str | None
    mode: str
    evaluate_splits: Callable[[InPlaceMerger], dict[str, float]]

    def __call__(self, merger: InPlaceMerger) -> dict[str, float]:
        if merger.loaded.record.get("recipe_hash") != self.recipe_hash:
            merger.apply(baseline_of(self.recipe) if self.label == "VLM" else self.recipe)
        if self.layer is None or self.module is None:
            return self.evaluate_splits(merger)
        return knock_out(merger, self.recipe, self.label, self.layer, self.module, self.mode, self.evaluate_splits)


def knockout_analysis_scaled(recipe: Recipe, evaluate_splits: Callable[[InPlaceMerger], dict[str, float]],
                             modules: list[str], mode: str, scale: ScaleOut, log: Callable[[str], None] = print,
                             quiet: bool = False) -> KnockoutResult:
    """`knockout_analysis` with every evaluation (intact models and knockouts) handed to Ray workers."""
    from harness_ext.scaleout import Job, ScaleOutError, pool, required_paths, run_jobs
    from merge_models.plan import build_plan

    _check(recipe, mode, modules)
    result = KnockoutResult(modules)
    jobs, layers = [], 0
    for label, variant in (("VLM", baseline_of(recipe)), ("merged", recipe)):
        plan = build_plan(variant)
        plan.close()
        result.hashes[label], layers = plan.recipe_hash, plan.num_layers
        units = [(None, None), *[(layer, module) for layer in range(layers) for module in modules]]
        for layer, module in units:
            name = f"{label} intact" if layer is None else f"{label} layer {layer} {module}"
            jobs.append(Job(name, name, KnockoutJob(recipe, label, plan.recipe_hash, layer, module, mode,
                                                    evaluate_splits)))
    scores: dict[str, dict[str, float]] = {}

    def arrived(job: Job, value: dict[str, float]) -> None:
        scores[job.key] = value
        log(f"{job.label}: {_percent(value)}")

    log(f"{len(jobs)} evaluations to run on Ray workers")
    with pool(scale, recipe, required_paths(recipe), log) as workers:
        failed = run_jobs(jobs, workers, arrived, log, quiet)
    if failed:
        raise ScaleOutError("layers: evaluations failed: " + "; ".join(f"{k} ({v})" for k, v in failed.items()))
    for label in result.hashes:
        result.reference[label] = scores[f"{label} intact"]
        knocked = {(layer, module): scores[f"{label} layer {layer} {module}"]
                   for layer in range(layers) for module in modules}
        result.drops[label] = _drops(result.reference[label], knocked, layers, modules)
    return result


def _replacement(merger: InPlaceMerger, base, canonical: str, mode: str, label: str) -> torch.Tensor:
    current = merger.parameter(canonical)
    if mode == "constant":
        return torch.full_like(current, float(current.float().mean()))
    if mode == "zero-delta" and label == "merged":
        return merger.vlm._memory[merger.vlm.canonical_map[canonical]]
    return base._memory[base.canonical_map[canonical]]


def _percent(scores: dict[str, float]) -> str:
    return ", ".join(f"{split} {100 * value:.1f}%" for split, value in scores.items())


def write_outputs(result: KnockoutResult, out: Path, title: str) -> dict[str, Path]:
    """Heatmap PNG, CSV table and raw JSON of a knockout analysis."""
    import json

    from harness_ext.plots import plot_knockouts

    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": plot_knockouts(result.drops, result.modules, out / "knockouts.png", title),
             "json": out / "knockouts.json", "csv": out / "knockouts.csv"}
    paths["json"].write_text(json.dumps(result.as_dict(), indent=2))
    lines = ["model,split,layer,module,drop_points"]
    for model, splits in result.drops.items():
        for split, data in splits.items():
            for (layer, column), value in np.ndenumerate(data):
                lines.append(f"{model},{split},{layer},{result.modules[column]},{value:.4f}")
    paths["csv"].write_text("\n".join(lines) + "\n")
    return paths
