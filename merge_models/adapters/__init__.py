"""Architecture adapters, one module per family; detected from config.json's `model_type`.

Adding a family: drop a module here that defines ``ADAPTER = Adapter(...)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from merge_models.adapters.base import Adapter, layer_index
from merge_models.adapters.causal_lm import ADAPTER as CAUSAL_LM


def _discover() -> dict[str, Adapter]:
    found: dict[str, Adapter] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name == "base":
            continue
        adapter = getattr(importlib.import_module(f"{__name__}.{module.name}"), "ADAPTER", None)
        if isinstance(adapter, Adapter) and adapter.is_vlm:
            for model_type in adapter.model_types:
                found[model_type] = adapter
    return found


VLM_ADAPTERS: dict[str, Adapter] = _discover()


def supported_vlm_types() -> list[str]:
    """config.json model_type values of the supported VLM families."""
    return sorted(VLM_ADAPTERS)


def detect(config: dict[str, Any]) -> Adapter | None:
    """The adapter for a checkpoint's config.json: a VLM family, a causal LM, or None."""
    model_type = config.get("model_type")
    if model_type in VLM_ADAPTERS:
        return VLM_ADAPTERS[model_type]
    architectures = config.get("architectures") or []
    looks_multimodal = "vision_config" in config or any("ConditionalGeneration" in a for a in architectures)
    if not looks_multimodal and (any(a.endswith("ForCausalLM") for a in architectures) or model_type):
        return CAUSAL_LM
    return None


__all__ = ["Adapter", "CAUSAL_LM", "VLM_ADAPTERS", "detect", "layer_index", "supported_vlm_types"]
