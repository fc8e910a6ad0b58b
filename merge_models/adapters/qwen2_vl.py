"""Qwen2-VL: hub files keep `model.layers.N` beside `visual.*`; transformers 5 loads
the language model as `model.language_model`."""

from merge_models.adapters.base import Adapter

QWEN_VL_LANGUAGE = (
    ("model.language_model.", "model."),
    ("model.layers.", "model.layers."),
    ("model.embed_tokens.", "model.embed_tokens."),
    ("model.norm.", "model.norm."),
    ("lm_head.", "lm_head."),
)
QWEN_VL_VISION = ("visual.", "model.visual.")
QWEN_VL_MEMORY = (("model.", "model.language_model."), ("lm_head.", "lm_head."))

ADAPTER = Adapter(
    family="qwen2_vl",
    model_types=("qwen2_vl",),
    language_prefixes=QWEN_VL_LANGUAGE,
    vision_prefixes=QWEN_VL_VISION,
    memory_prefixes=QWEN_VL_MEMORY,
)
