"""The settings of a checkpoint's language model, with missing values taken from transformers' defaults.

Published configs often omit values their config class supplies: the text configs of
llava-hf/llama3-llava-next-8b-hf and HuggingFaceM4/idefics2-8b carry no hidden_size or
num_hidden_layers (LlamaConfig / MistralConfig default to 4096 and 32). Comparing raw JSON
would miss a mismatch; these settings are what transformers would build the model with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import transformers as T
from huggingface_hub.errors import StrictDataclassError

# Multimodal RoPE only splits positions among image axes; on text all axes share one position,
# which is plain RoPE, so these keys say nothing about how the language model encodes text.
MROPE_KEYS = ("mrope_section", "mrope_interleaved")


def without_mrope(rope: dict[str, Any]) -> dict[str, Any]:
    """RoPE settings as they apply to text: a copy without the multimodal keys and `type: mrope`."""
    out = {k: v for k, v in rope.items() if k not in MROPE_KEYS}
    if out.get("type") == "mrope":
        out.pop("type")
    return out


@dataclass(frozen=True)
class LanguageConfig:
    """What a merge and the text-only model built from it depend on (None: unknown)."""

    hidden_size: int | None
    num_hidden_layers: int | None
    vocab_size: int | None
    rope_theta: float | None
    rope_scaling: dict[str, Any] | None
    max_position_embeddings: int | None

    def rope(self) -> dict[str, Any]:
        """The RoPE settings, by name."""
        return {"rope_theta": self.rope_theta, "rope_scaling": self.rope_scaling,
                "max_position_embeddings": self.max_position_embeddings}


def transformers_text_config(config: dict[str, Any]) -> T.PretrainedConfig | None:
    """The language model's config object transformers builds from a config.json, or None for unknown types."""
    model_type = config.get("model_type")
    if model_type not in T.CONFIG_MAPPING:
        return None
    verbosity = T.logging.get_verbosity()
    T.logging.set_verbosity_error()  # token ids outside a tiny vocabulary etc. are not our concern here
    try:
        built = T.CONFIG_MAPPING[model_type].from_dict(dict(config))
    except (TypeError, ValueError, KeyError, StrictDataclassError):
        return None  # a config transformers rejects (e.g. inconsistent sizes): compare its raw values
    finally:
        T.logging.set_verbosity(verbosity)
    return built.get_text_config()


def language_config(config: dict[str, Any], text: dict[str, Any]) -> LanguageConfig:
    """The language settings of a config.json (`text`: its language part, used when transformers lacks the type)."""
    built = transformers_text_config(config)
    values = built.to_dict() if built is not None else dict(text)
    rope = without_mrope(values.get("rope_parameters") or values.get("rope_scaling") or {})
    theta = rope.pop("rope_theta", None) or values.get("rope_theta")
    if rope.get("rope_type", rope.get("type")) == "default":
        rope = {}
    return LanguageConfig(
        hidden_size=values.get("hidden_size"), num_hidden_layers=values.get("num_hidden_layers"),
        vocab_size=values.get("vocab_size"), rope_theta=float(theta) if theta is not None else None,
        rope_scaling=rope or None, max_position_embeddings=values.get("max_position_embeddings"))
