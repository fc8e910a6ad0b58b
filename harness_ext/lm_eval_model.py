"""The lm-eval model `merged_lm`: the merged language backbone as a text-only causal LM.

    lm_eval --model merged_lm --model_args recipe=tiny-world --tasks gsm8k

Answers whether merging keeps pure text reasoning. device, device_map and max_memory place the
model as transformers does (device_map=auto spreads a large one over GPUs); the other --model_args
(batch_size, max_length, ...) go to lm-eval's HFLM, which evaluates the in-memory model. Results land
in `<output_path>/<recipe name>-<recipe hash>/`, as merged_vlm's do under lmms-eval (lm-eval would
name the folder after a `pretrained=` argument, which a recipe does not have, else at random).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import transformers as T
from lm_eval.models.huggingface import HFLM

from harness_ext.compat.lm_eval import name_output_folder
from harness_ext.loading import Placement, build_merged_causal_lm, loading_bar, merge_record
from harness_ext.model_options import split_model_args
from merge_models.plan import build_plan

# HFLM arguments that make sense for an in-memory model.
HFLM_OPTIONS = {"recipe": None, "batch_size": 1, "max_batch_size": 64, "max_length": None, "device": None,
                "add_bos_token": None, "truncation": False, "quiet": True, "cache": True, "device_map": None,
                "max_memory": None, "offload_folder": None}
# HFLM warns about any model given in memory, which is how merged_lm works; not a problem for users to see.
IN_MEMORY_WARNING = "`pretrained` model kwarg is not of type `str`"
PLACEMENT = ("recipe", "quiet", "cache", "device", "device_map", "max_memory", "offload_folder")


class MergedLM(HFLM):
    """lm-eval's HFLM around the causal LM built from a recipe's merged language tensors."""

    def __init__(self, **kwargs: Any) -> None:
        args = split_model_args(kwargs, HFLM_OPTIONS, "merged_lm")
        plan = build_plan(args.recipe)
        options = dict(args.options)
        if str(options.get("device") or "").startswith("cuda") and not torch.cuda.is_available():
            options["device"] = None  # as HFLM does: lm_eval passes cuda:0 by default, CPU machines use the CPU
        placement = Placement.from_options(args.recipe.merge_device, options, None)
        with loading_bar(not options.get("quiet")):
            model = build_merged_causal_lm(plan, placement)
        tokenizer = T.AutoTokenizer.from_pretrained(plan.vlm.path, trust_remote_code=args.recipe.trust_remote_code)
        self.merge_record = merge_record(plan, args.recipe_path, args.overrides)
        plan.close()
        name_output_folder(f"{args.recipe.name or 'merged_lm'}-{plan.recipe_hash}")
        hf_options = {k: v for k, v in args.options.items() if k not in PLACEMENT and v is not None}
        with _without(IN_MEMORY_WARNING):
            super().__init__(pretrained=model, tokenizer=tokenizer, **hf_options)

    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval records under `config` in its results: HFLM's info plus the merge record."""
        return {**super().get_model_info(), "merged_vlm": self.merge_record}


@contextmanager
def _without(message: str) -> Iterator[None]:
    """Drop HFLM's log records that start with `message` while the block runs."""
    hflm_logger = logging.getLogger(HFLM.__module__)

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(message)

    hflm_logger.addFilter(keep)
    try:
        yield
    finally:
        hflm_logger.removeFilter(keep)


__all__ = ["MergedLM"]
