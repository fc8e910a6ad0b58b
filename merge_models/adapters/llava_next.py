"""LLaVA-Next (Llama-3 or Mistral language models): LLaVA's layout plus `image_newline`."""

from dataclasses import replace

from merge_models.adapters.llava import ADAPTER as LLAVA

ADAPTER = replace(LLAVA, family="llava_next", model_types=("llava_next",))
