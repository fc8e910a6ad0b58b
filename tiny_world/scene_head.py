"""An auxiliary scene-classification loss for the VLM's vision tower, used only while training.

A vision tower trained from scratch through the language-model loss alone learns colour but not to
read: after 3000 steps the first released VLM read 0% of the probe's numbers. Real VLMs start from a tower
pretrained on images; the tiny world gets the same effect cheaply by adding a linear head on the
tower's merged output that classifies what is drawn (each character of up to two text marks, the
shape kind, its colour and the shape count). The head is discarded after training; the checkpoint
is a plain Qwen2-VL. Every label comes from the scene itself (perception only, no arithmetic).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
import transformers as T
from mvlm_tasks.probe import Item
from mvlm_tasks.probe.font import GLYPHS
from mvlm_tasks.probe.render import SHAPE_KINDS, ShapeMark, TextMark
from mvlm_tasks.probe.scenes import COUNT_RANGE, SHAPE_COLOURS, WORDS

CHARACTERS = "".join(GLYPHS)  # every character the probe's font can draw
TEXT_SLOTS = 2  # text marks per scene, left to right
CHARS_PER_SLOT = max(len(word) for word in WORDS)  # numbers are at most two digits
COLOURS = tuple(SHAPE_COLOURS)
# classes per label: for characters, kind and colour the last class means "none in this scene"; the count
# label is the number of shapes, 0 to COUNT_RANGE[1]
LABEL_SIZES = ([len(CHARACTERS) + 1] * (TEXT_SLOTS * CHARS_PER_SLOT)
               + [len(SHAPE_KINDS) + 1, len(COLOURS) + 1, COUNT_RANGE[1] + 1])


def _nearest_colour(rgb: tuple[int, int, int]) -> int:
    """Index of the named colour a jittered shape colour was drawn from."""
    return min(range(len(COLOURS)), key=lambda i: sum((a - b) ** 2 for a, b in zip(rgb, SHAPE_COLOURS[COLOURS[i]])))


def scene_labels(item: Item) -> list[int]:
    """One class index per label of LABEL_SIZES, read off the item's scene."""
    n_chars = TEXT_SLOTS * CHARS_PER_SLOT
    labels = [size - 1 for size in LABEL_SIZES]
    labels[-1] = 0  # no shapes
    texts = sorted((m for m in item.scene.marks if isinstance(m, TextMark)), key=lambda m: m.x)
    for slot, mark in enumerate(texts[:TEXT_SLOTS]):
        for position, char in enumerate(mark.text[:CHARS_PER_SLOT]):
            labels[slot * CHARS_PER_SLOT + position] = CHARACTERS.index(char)
    shapes = [m for m in item.scene.marks if isinstance(m, ShapeMark)]
    if shapes:
        labels[n_chars] = SHAPE_KINDS.index(shapes[0].kind)
        labels[n_chars + 1] = _nearest_colour(shapes[0].colour)
        labels[n_chars + 2] = len(shapes)
    return labels


class SceneSupervisedVLM(torch.nn.Module):
    """A Qwen2-VL plus a linear scene head on its merged image tokens.

    forward(scene_labels=..., **batch) returns the VLM's output with `loss` = language loss + `weight` x
    scene loss; with `vision_only`, only the tower runs and `loss` is the scene loss (tower pretraining).
    """

    def __init__(self, vlm: T.Qwen2VLForConditionalGeneration, image_tokens: int, weight: float) -> None:
        super().__init__()
        self.vlm = vlm
        self.weight = weight
        self.vision_only = False
        self.head = torch.nn.Linear(vlm.config.text_config.hidden_size * image_tokens, sum(LABEL_SIZES))
        self._merged: torch.Tensor | None = None
        self._hook = vlm.model.visual.register_forward_hook(self._keep_merged)

    def _keep_merged(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        self._merged = getattr(output, "pooler_output", output)

    def scene_loss(self, scene_labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labels of the last images the tower saw."""
        logits = self.head(self._merged.reshape(len(scene_labels), -1))
        losses, offset = [], 0
        for column, size in enumerate(LABEL_SIZES):
            losses.append(torch.nn.functional.cross_entropy(logits[:, offset:offset + size], scene_labels[:, column]))
            offset += size
        return torch.stack(losses).mean()

    def forward(self, scene_labels: torch.Tensor, **batch: torch.Tensor) -> Any:
        if self.vision_only:
            self.vlm.model.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
            return SimpleNamespace(loss=self.scene_loss(scene_labels))
        output = self.vlm(**batch)
        output.loss = output.loss + self.weight * self.scene_loss(scene_labels)
        return output

    def detach(self) -> T.Qwen2VLForConditionalGeneration:
        """The bare VLM, with the hook removed (the head is dropped)."""
        self._hook.remove()
        return self.vlm
