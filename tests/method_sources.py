"""In-memory stand-ins for TensorStream, so tests can drive a merge method on tensors directly."""

from __future__ import annotations

import torch

from merge_models.streaming import sample_starts


class InMemorySource:
    """Tiles of in-memory tensors, as TensorStream yields them from checkpoints (fresh copies each pass)."""

    device = torch.device("cpu")

    def __init__(self, inputs: list[torch.Tensor], base: torch.Tensor, chunk: int | None = None) -> None:
        self.inputs, self.base, self.numel = inputs, base, base.numel()
        self.chunk = chunk or max(self.numel, 1)

    def chunks(self, hold: bool = False):
        for index, start in enumerate(range(0, self.numel, self.chunk)):
            stop = start + self.chunk
            yield index, start, [x[start:stop].clone() for x in self.inputs], self.base[start:stop].clone()

    def sample(self, blocks: int, length: int):
        length, starts = sample_starts(self.numel, blocks, length)
        take = torch.cat([torch.arange(s, s + length) for s in starts])
        return [x[take].clone() for x in self.inputs], self.base[take].clone()
