"""Idefics2 (Mistral language model): `model.text_model.*` on disk and in memory."""

from merge_models.adapters.base import Adapter

LANGUAGE = (("model.text_model.", "model."), ("lm_head.", "lm_head."))
VISION = ("model.vision_model.", "model.connector.")
MEMORY = (("model.", "model.text_model."), ("lm_head.", "lm_head."))

ADAPTER = Adapter(
    family="idefics2",
    model_types=("idefics2",),
    language_prefixes=LANGUAGE,
    vision_prefixes=VISION,
    memory_prefixes=MEMORY,
)
