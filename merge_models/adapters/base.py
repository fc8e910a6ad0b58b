"""What an architecture adapter is: name rules from one family's tensors to the LLM's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LAYER_PATTERN = re.compile(r"^model\.layers\.(\d+)\.")


@dataclass(frozen=True)
class Adapter:
    """Maps a model family's language-backbone tensor names to canonical LLM names.

    Canonical names are those of a Hugging Face causal LM: ``model.layers.N.*``,
    ``model.embed_tokens.weight``, ``model.norm.weight`` and ``lm_head.weight``.

    language_prefixes: (prefix in this family's names, canonical prefix) pairs covering both
        the on-disk layout of published checkpoints and transformers 5's in-memory layout.
    vision_prefixes: tensors that belong to the vision tower or projector; never merged.
    memory_prefixes: (canonical prefix, prefix in transformers 5's loaded model) pairs.
    """

    family: str
    model_types: tuple[str, ...]
    language_prefixes: tuple[tuple[str, str], ...]
    vision_prefixes: tuple[str, ...] = ()
    memory_prefixes: tuple[tuple[str, str], ...] = (("model.", "model."), ("lm_head.", "lm_head."))
    is_vlm: bool = True

    def canonical(self, name: str) -> str | None:
        """The canonical LLM name of a language tensor, or None for any other tensor."""
        if self.is_vision(name):
            return None
        for prefix, target in sorted(self.language_prefixes, key=lambda p: -len(p[0])):
            if name.startswith(prefix):
                return target + name[len(prefix):]
        return None

    def is_vision(self, name: str) -> bool:
        """True for vision-tower and projector tensors."""
        return name.startswith(self.vision_prefixes) if self.vision_prefixes else False

    def memory_name(self, canonical: str) -> str:
        """The parameter name of a canonical tensor inside the model transformers 5 builds."""
        for prefix, target in sorted(self.memory_prefixes, key=lambda p: -len(p[0])):
            if canonical.startswith(prefix):
                return target + canonical[len(prefix):]
        raise KeyError(canonical)

    @staticmethod
    def text_config(config: dict[str, Any]) -> dict[str, Any]:
        """The language model's part of a config.json (its `text_config`, or the whole)."""
        for key in ("text_config", "llm_config"):
            if isinstance(config.get(key), dict):
                return config[key]
        return config


def layer_index(canonical: str) -> int | None:
    """The decoder layer a canonical tensor belongs to, or None."""
    match = LAYER_PATTERN.match(canonical)
    return int(match.group(1)) if match else None
