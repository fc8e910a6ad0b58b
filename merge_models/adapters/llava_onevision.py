"""LLaVA-OneVision (Qwen2 language model, SigLIP vision): LLaVA-Next's layout."""

from dataclasses import replace

from merge_models.adapters.llava import ADAPTER as LLAVA

ADAPTER = replace(LLAVA, family="llava_onevision", model_types=("llava_onevision",))
