"""LLaVA-Next (Llama-3 or Mistral language models): LLaVA's layout plus `image_newline`."""

from merge_models.adapters.base import Adapter
from merge_models.adapters.llava import LLAVA_LANGUAGE, LLAVA_MEMORY, LLAVA_VISION

ADAPTER = Adapter(
    family="llava_next",
    model_types=("llava_next",),
    language_prefixes=LLAVA_LANGUAGE,
    vision_prefixes=LLAVA_VISION,
    memory_prefixes=LLAVA_MEMORY,
)
