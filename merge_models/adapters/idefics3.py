"""Idefics3 (Llama-3 language model): Idefics2's name layout."""

from merge_models.adapters.base import Adapter
from merge_models.adapters.idefics2 import IDEFICS_LANGUAGE, IDEFICS_MEMORY, IDEFICS_VISION

ADAPTER = Adapter(
    family="idefics3",
    model_types=("idefics3",),
    language_prefixes=IDEFICS_LANGUAGE,
    vision_prefixes=IDEFICS_VISION,
    memory_prefixes=IDEFICS_MEMORY,
)
