"""One loaded VLM, re-merged in place for each variant of a recipe (sweeps, layer analysis).

Checkpoints are opened once and their language tensors held in memory, so switching variants
costs arithmetic, not disk reads: restore the VLM's language weights, then stream the new merge
into the same parameters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import transformers as T

from harness_ext.loading import LoadedVLM, default_device, load_processor, merge_record
from merge_models.checkpoint import Checkpoint, open_checkpoint
from merge_models.errors import RecipeError
from merge_models.executor import merge_into, resolve_merge_device
from merge_models.plan import MergePlan, build_plan
from merge_models.recipe import ModelRef, Recipe


class SharedCheckpoints:
    """Checkpoints opened once per process, language tensors preloaded, shared by every plan."""

    def __init__(self) -> None:
        self._opened: dict[tuple[str, str | None, bool], Checkpoint] = {}

    def open(self, ref: ModelRef, field: str, allow_pickle: bool, require_vlm: bool = False) -> Checkpoint:
        key = (ref.model, ref.revision, allow_pickle)
        if key not in self._opened:
            checkpoint = open_checkpoint(ref, field, allow_pickle, require_vlm)
            checkpoint.preload_language()
            self._opened[key] = checkpoint
        return self._opened[key].relabel(field)


class InPlaceMerger:
    """A VLM loaded once; `apply(recipe)` turns its language model into that recipe's merge."""

    def __init__(self, recipe: Recipe, options: dict[str, Any] | None = None, device: str | None = None) -> None:
        self.options = {"quiet": True, **(options or {})}
        self.shared = SharedCheckpoints()
        plan = build_plan(recipe, opener=self.shared.open)
        self.vlm = plan.vlm
        model = T.AutoModelForImageTextToText.from_pretrained(plan.vlm.path, dtype=plan.out_dtype,
                                                              trust_remote_code=recipe.trust_remote_code)
        model.to(device or self.options.get("device") or default_device()).eval()
        self.parameters = dict(model.named_parameters())
        self.loaded = LoadedVLM(model, load_processor(plan, self.options), plan.vlm.adapter.family, {}, {})
        self.plan: MergePlan | None = None

    def parameter(self, canonical: str) -> torch.Tensor:
        """The loaded model's parameter that holds a canonical language tensor."""
        return self.parameters[self.vlm.adapter.memory_name(canonical)].data

    def restore_vlm(self) -> None:
        """Put the VLM's own language weights back (bit for bit)."""
        with torch.no_grad():
            for canonical, name in self.vlm.canonical_map.items():
                self.parameter(canonical).copy_(self.vlm._memory[name])

    def apply(self, recipe: Recipe, recipe_file: Path | None = None,
              overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make the loaded model `recipe`'s merge (`recipe_file` with `overrides`, when it was read from one);
        returns its merge record (hash, recipe, inputs)."""
        start = time.perf_counter()
        plan = build_plan(recipe, opener=self.shared.open)
        if plan.vlm.path != self.vlm.path:
            raise RecipeError("vlm.model", f"a variant changes the VLM to {recipe.vlm.model}",
                              "sweep over merge settings of one VLM")
        self.restore_vlm()
        device = resolve_merge_device(plan.recipe.merge_device, self.loaded.model.device)
        merged = merge_into(plan, lambda entry: self.parameter(entry.canonical), quiet=self.options["quiet"],
                            device=device)
        self.plan = plan
        stats = {"how": "merged in place", "merged_tensors": merged,
                 "kept_tensors": len(plan.tensors) - merged, "seconds": round(time.perf_counter() - start, 3)}
        record = merge_record(plan, recipe_file, overrides, load=stats)
        self.loaded.record, self.loaded.stats = record, stats
        return record
