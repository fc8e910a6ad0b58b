"""LLaVA-OneVision (Qwen2 language model, SigLIP vision): LLaVA-Next's layout."""

from merge_models.adapters.base import Adapter
from merge_models.adapters.llava import LLAVA_LANGUAGE, LLAVA_MEMORY, LLAVA_VISION

ADAPTER = Adapter(
    family="llava_onevision",
    model_types=("llava_onevision",),
    language_prefixes=LLAVA_LANGUAGE,
    vision_prefixes=LLAVA_VISION,
    memory_prefixes=LLAVA_MEMORY,
)
