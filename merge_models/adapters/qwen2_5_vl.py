"""Qwen2.5-VL: the same name layout as Qwen2-VL."""

from merge_models.adapters.base import Adapter
from merge_models.adapters.qwen2_vl import QWEN_VL_LANGUAGE, QWEN_VL_MEMORY, QWEN_VL_VISION

ADAPTER = Adapter(
    family="qwen2_5_vl",
    model_types=("qwen2_5_vl",),
    language_prefixes=QWEN_VL_LANGUAGE,
    vision_prefixes=QWEN_VL_VISION,
    memory_prefixes=QWEN_VL_MEMORY,
)
