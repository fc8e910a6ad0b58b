"""Idefics3 (Llama-3 language model): Idefics2's name layout."""

from dataclasses import replace

from merge_models.adapters.idefics2 import ADAPTER as IDEFICS2

ADAPTER = replace(IDEFICS2, family="idefics3", model_types=("idefics3",))
