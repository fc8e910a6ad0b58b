"""Layer knockouts: where perception and reasoning live, in the VLM and in its merge.

For each decoder layer and module group the group's weights are replaced in place, the tasks are
evaluated, and the weights are copied back (bit for bit) — never reloaded. The drop against the
intact model, per split (perception / reasoning, from each sample's record), maps where each
ability lives, before and after merging. Every drop is taken on the same documents as the intact score,
with its n and a paired bootstrap interval (harness_ext.results.stats), so a large drop on a few
documents reads as what it is.

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


ALPHA, ITERATIONS = 0.05, 2000  # the drops' paired bootstrap intervals: 95%, replicates
Verdicts = dict[str, dict[str, bool]]  # split -> document key -> correct


@dataclass
class KnockoutResult:
    """Accuracy per split of each model intact, and per layer x module group the drop (points) on the same
    documents with its paired bootstrap interval; `n`: documents per split."""

    modules: list[str]
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    drops: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    lows: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    highs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    n: dict[str, dict[str, int]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        def plain(arrays: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
            return {m: {s: d.tolist() for s, d in splits.items()} for m, splits in arrays.items()}

        return {"modules": self.modules, "reference": self.reference, "n": self.n, "recipe_hashes": self.hashes,
                "interval": f"{100 * (1 - ALPHA):g}% paired bootstrap, {ITERATIONS} replicates",
                "drops": plain(self.drops), "lows": plain(self.lows), "highs": plain(self.highs)}


def split_verdicts(samples: dict[str, list[dict[str, Any]]]) -> Verdicts:
    """Per split, each document's verdict (keyed by task and doc_id), from the samples' `split` and `correct`."""
    out: Verdicts = {}
    for task, task_samples in samples.items():
        for sample in task_samples:
            record = sample.get("mvlm_acc")
            if isinstance(record, dict) and "split" in record:
                out.setdefault(record["split"], {})[f"{task}/{sample.get('doc_id')}"] = bool(record["correct"])
    return dict(sorted(out.items()))


def accuracy(verdicts: Verdicts) -> dict[str, float]:
    """Accuracy per split."""
    return {split: sum(v.values()) / len(v) for split, v in verdicts.items() if v}


def paired_drop(intact: dict[str, bool], knocked: dict[str, bool], rng: np.random.Generator
                ) -> tuple[float, float, float]:
    """The drop in points from `intact` to `knocked` on the documents both have, and its paired bootstrap
    interval (low, high)."""
    from harness_ext.results.stats import Design, bootstrap_deltas, interval

    shared = sorted(set(intact) & set(knocked))
    if not shared:
        return float("nan"), float("nan"), float("nan")
    a = [float(intact[d]) for d in shared]
    b = [float(knocked[d]) for d in shared]
    design = Design.of("micro", [None] * len(shared), [None] * len(shared))
    low, high = interval(bootstrap_deltas(b, a, design, ITERATIONS, rng), ALPHA)  # replicates of intact - knocked
    return 100 * (sum(a) - sum(b)) / len(shared), 100 * low, 100 * high


def baseline_of(recipe: Recipe) -> Recipe:
    """The same recipe merging nothing: the VLM as published."""
    return parse_recipe(apply_overrides(recipe.model_dump(mode="json", by_alias=True), {"modules": []}))


@dataclass(frozen=True)
class SplitEvaluator:
    """Each document's verdict per split of the tasks on a merger's current model (picklable, so Ray workers
    can run it)."""

    tasks: list[str]
    limit: int | None = None
    batch_size: int = 8

    def __call__(self, merger: InPlaceMerger) -> Verdicts:
        from harness_ext.evaluate import evaluate
        from harness_ext.lmms_model import MergedVLMChat

        model = MergedVLMChat(loaded=merger.loaded, batch_size=self.batch_size, quiet=True)
        return split_verdicts(evaluate(model, self.tasks, None, self.limit).samples)


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


def knockout_analysis(recipe: Recipe, evaluate_splits: Callable[[InPlaceMerger], Verdicts],
                      modules: list[str], mode: str, merger: InPlaceMerger | None = None,
                      log: Callable[[str], None] = print, seed: int = 0) -> KnockoutResult:
    """Knock out every (layer, module group) in the VLM and in the recipe's merge; measure the drops.
    `evaluate_splits` gives each document's verdict per split (split_verdicts)."""
    _check(recipe, mode, modules)
    merger = merger or InPlaceMerger(recipe)
    result = KnockoutResult(modules)
    rng = np.random.default_rng(seed)
    for label, variant in (("VLM", baseline_of(recipe)), ("merged", recipe)):
        record = merger.apply(variant)
        result.hashes[label] = record["recipe_hash"]
        intact = evaluate_splits(merger)
        log(f"{label} intact: {_percent(accuracy(intact))}")
        knocked = {}
        for layer in range(merger.plan.num_layers):
            for module in modules:
                knocked[layer, module] = knock_out(merger, recipe, label, layer, module, mode, evaluate_splits)
                log(f"{label} layer {layer} {module}: {_percent(accuracy(knocked[layer, module]))}")
        _fill(result, label, intact, knocked, merger.plan.num_layers, rng)
    merger.restore_vlm()
    return result


def knock_out(merger: InPlaceMerger, recipe: Recipe, label: str, layer: int, module: str, mode: str,
              evaluate_splits: Callable[[InPlaceMerger], Verdicts]) -> Verdicts:
    """Verdicts with one layer's module group knocked out of the current model, whose weights are put back
    after."""
    base = merger.shared.open(recipe.base, "base", recipe.allow_pickle) if recipe.base else None
    names = [c for c in merger.vlm.canonical_map
             if c.startswith(f"model.layers.{layer}.") and MODULE_PATTERNS[module] in c]
    saved = {c: merger.parameter(c).clone() for c in names}
    with torch.no_grad():
        for canonical in names:
            merger.parameter(canonical).copy_(_replacement(merger, base, canonical, mode, label))
    verdicts = evaluate_splits(merger)
    with torch.no_grad():
        for canonical, value in saved.items():
            merger.parameter(canonical).copy_(value)
    return verdicts


def _fill(result: KnockoutResult, label: str, intact: Verdicts, knocked: dict[tuple[int, str], Verdicts],
          layers: int, rng: np.random.Generator) -> None:
    """The intact accuracy, n, and each knockout's paired drop with its interval, in (layer, module) order so
    the bootstrap draws are the same however the evaluations were run."""
    modules = result.modules
    result.reference[label] = accuracy(intact)
    result.n[label] = {split: len(verdicts) for split, verdicts in intact.items()}
    drops, lows, highs = ({split: np.full((layers, len(modules)), np.nan) for split in intact} for _ in range(3))
    for layer in range(layers):
        for column, module in enumerate(modules):
            for split in intact:
                drop = paired_drop(intact[split], knocked[layer, module].get(split, {}), rng)
                drops[split][layer, column], lows[split][layer, column], highs[split][layer, column] = drop
    result.drops[label], result.lows[label], result.highs[label] = drops, lows, highs


@dataclass(frozen=True)
class KnockoutJob:
    """On a Ray worker: make the model the intact `label` model (unless it is already), then take its verdicts
    as it is (layer None) or with one layer's module group knocked out."""

    recipe: Recipe
    label: str
    recipe_hash: str
    layer: int | None
    module: str | None
    mode: str
    evaluate_splits: Callable[[InPlaceMerger], Verdicts]

    def __call__(self, merger: InPlaceMerger) -> Verdicts:
        if merger.loaded.record.get("recipe_hash") != self.recipe_hash:
            merger.apply(baseline_of(self.recipe) if self.label == "VLM" else self.recipe)
        if self.layer is None or self.module is None:
            return self.evaluate_splits(merger)
        return knock_out(merger, self.recipe, self.label, self.layer, self.module, self.mode, self.evaluate_splits)


def knockout_analysis_scaled(recipe: Recipe, evaluate_splits: Callable[[InPlaceMerger], Verdicts],
                             modules: list[str], mode: str, scale: ScaleOut, log: Callable[[str], None] = print,
                             quiet: bool = False, seed: int = 0) -> KnockoutResult:
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
    verdicts: dict[str, Verdicts] = {}

    def arrived(job: Job, value: Verdicts) -> None:
        verdicts[job.key] = value
        log(f"{job.label}: {_percent(accuracy(value))}")

    log(f"{len(jobs)} evaluations to run on Ray workers")
    with pool(scale, recipe, required_paths(recipe), log) as workers:
        failed = run_jobs(jobs, workers, arrived, log, quiet)
    if failed:
        raise ScaleOutError("layers: evaluations failed: " + "; ".join(f"{k} ({v})" for k, v in failed.items()))
    rng = np.random.default_rng(seed)
    for label in result.hashes:
        knocked = {(layer, module): verdicts[f"{label} layer {layer} {module}"]
                   for layer in range(layers) for module in modules}
        _fill(result, label, verdicts[f"{label} intact"], knocked, layers, rng)
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
    """Heatmap PNG, CSV table and raw JSON of a knockout analysis (drops with intervals and n)."""
    import json

    from harness_ext.plots import plot_knockouts

    out.mkdir(parents=True, exist_ok=True)
    paths = {"png": plot_knockouts(result, out / "knockouts.png", title),
             "json": out / "knockouts.json", "csv": out / "knockouts.csv"}
    paths["json"].write_text(json.dumps(result.as_dict(), indent=2))
    lines = ["model,split,layer,module,drop_points,low_points,high_points,n"]
    for model, splits in result.drops.items():
        for split, data in splits.items():
            low, high = result.lows[model][split], result.highs[model][split]
            for (layer, column), value in np.ndenumerate(data):
                lines.append(f"{model},{split},{layer},{result.modules[column]},{value:.4f},{low[layer, column]:.4f},"
                             f"{high[layer, column]:.4f},{result.n[model][split]}")
    paths["csv"].write_text("\n".join(lines) + "\n")
    return paths
