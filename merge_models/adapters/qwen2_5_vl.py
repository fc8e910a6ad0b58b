"""Qwen2.5-VL: the same name layout as Qwen2-VL."""

from dataclasses import replace

from merge_models.adapters.qwen2_vl import ADAPTER as QWEN2_VL

ADAPTER = replace(QWEN2_VL, family="qwen2_5_vl", model_types=("qwen2_5_vl",))
