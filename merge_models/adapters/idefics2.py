"""Idefics2 (Mistral language model): `model.text_model.*` on disk and in memory."""

from merge_models.adapters.base import Adapter

IDEFICS_LANGUAGE = (("model.text_model.", "model."), ("lm_head.", "lm_head."))
IDEFICS_VISION = ("model.vision_model.", "model.connector.")
IDEFICS_MEMORY = (("model.", "model.text_model."), ("lm_head.", "lm_head."))

ADAPTER = Adapter(
    family="idefics2",
    model_types=("idefics2",),
    language_prefixes=IDEFICS_LANGUAGE,
    vision_prefixes=IDEFICS_VISION,
    memory_prefixes=IDEFICS_MEMORY,
)
