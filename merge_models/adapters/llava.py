"""LLaVA 1.5: hub files use `language_model.model.*` and `language_model.lm_head`;
transformers 5 loads `model.language_model.*` and a top-level `lm_head`."""

from merge_models.adapters.base import Adapter

LANGUAGE = (
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
    ("model.language_model.", "model."),
    ("lm_head.", "lm_head."),
)
VISION = (
    "vision_tower.", "multi_modal_projector.", "image_newline",
    "model.vision_tower.", "model.multi_modal_projector.", "model.image_newline",
)
MEMORY = (("model.", "model.language_model."), ("lm_head.", "lm_head."))

ADAPTER = Adapter(
    family="llava",
    model_types=("llava",),
    language_prefixes=LANGUAGE,
    vision_prefixes=VISION,
    memory_prefixes=MEMORY,
)
