"""Qwen2-VL: hub files keep `model.layers.N` beside `visual.*`; transformers 5 loads
the language model as `model.language_model`."""

from merge_models.adapters.base import Adapter

LANGUAGE = (
    ("model.language_model.", "model."),
    ("model.layers.", "model.layers."),
    ("model.embed_tokens.", "model.embed_tokens."),
    ("model.norm.", "model.norm."),
    ("lm_head.", "lm_head."),
)
VISION = ("visual.", "model.visual.")
MEMORY = (("model.", "model.language_model."), ("lm_head.", "lm_head."))

ADAPTER = Adapter(
    family="qwen2_vl",
    model_types=("qwen2_vl",),
    language_prefixes=LANGUAGE,
    vision_prefixes=VISION,
    memory_prefixes=MEMORY,
)
