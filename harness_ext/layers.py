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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from harness_ext.remerge import InPlaceMerger
from merge_models.errors import RecipeError
from merge_models.recipe import Recipe, apply_overrides, parse_recipe
from merge_models.stats import MODULE_PATTERNS

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


def knockout_analysis(recipe: Recipe, evaluate_splits: Callable[[InPlaceMerger], dict[str, float]],
                      modules: list[str], mode: str, merger: InPlaceMerger | None = None,
                      log: Callable[[str], None] = print) -> KnockoutResult:
    """Knock out every (layer, module group) in the VLM and in the recipe's merge; measure the drops."""
    if mode not in MODES:
        raise RecipeError("--mode", f"unknown knockout mode {mode!r}", f"use {', '.join(MODES)}")
    unknown = [m for m in modules if m not in MODULE_PATTERNS]
    if unknown or not modules:  # checked before the first evaluation
        raise RecipeError("--module", f"unknown module group {(unknown or [''])[0]!r}",
                          f"use {', '.join(MODULE_PATTERNS)} (comma-separated)")
    if mode == "base" or mode == "zero-delta":
        if recipe.base is None:
            raise RecipeError("base", f"knockout mode {mode} needs the shared base LLM", "add `base:` or use constant")
    merger = merger or InPlaceMerger(recipe)
    base = merger.shared.open(recipe.base, "base", recipe.allow_pickle) if recipe.base else None
    result = KnockoutResult(modules)
    for label, variant in (("VLM", baseline_of(recipe)), ("merged", recipe)):
        record = merger.apply(variant)
        result.hashes[label] = record["recipe_hash"]
        result.reference[label] = evaluate_splits(merger)
        log(f"{label} intact: {_percent(result.reference[label])}")
        layers = merger.plan.num_layers
        drops = {split: np.zeros((layers, len(modules))) for split in result.reference[label]}
        for layer in range(layers):
            for column, module in enumerate(modules):
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
                for split, value in scores.items():
                    drops.setdefault(split, np.zeros((layers, len(modules))))[layer, column] = \
                        100 * (result.reference[label].get(split, 0.0) - value)
                log(f"{label} layer {layer} {module}: {_percent(scores)}")
        result.drops[label] = drops
    merger.restore_vlm()
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
