"""The merge methods implemented here, as vectorised float32 torch operations.

Inputs are ordered: index 0 is the VLM's language tensor, then the reasoning sources.
Task vectors are tau_i = theta_i - theta_base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from merge_models.methods.sparsify import dare_drop, magnitude_band, magnitude_topk, tensor_seed


@dataclass(frozen=True)
class TensorParams:
    """Parameters resolved for one tensor."""

    weights: tuple[float, ...]
    densities: tuple[float, ...]
    lam: float
    normalize: bool
    rescale: str
    gamma: float
    seed: int
    name: str
    extra: Mapping[str, Any] = field(default_factory=dict)


def linear(inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams) -> torch.Tensor:
    """theta = vlm + lambda * (mix - vlm), mix = sum_i w_i theta_i (/ sum_i w_i when normalize).

    With lambda = 1 (the default) this is the paper's a*theta_vlm + (1-a)*theta_llm.
    """
    mixed = torch.zeros_like(inputs[0])
    for tensor, weight in zip(inputs, p.weights):
        mixed.add_(tensor, alpha=weight)
    if p.normalize:
        total = sum(p.weights)
        mixed.div_(total if abs(total) > 1e-8 else 1.0)
    if p.lam == 1.0:
        return mixed
    return inputs[0] + (mixed - inputs[0]).mul_(p.lam)


@dataclass(frozen=True)
class TaskVectorMethod:
    """The generalised task-arithmetic family: sparsify, weight, optionally elect signs, sum, scale.

    theta = base + lambda * combine(w_i * sparsify(tau_i)); with sign election an entry of
    tau_i counts only where its sign agrees with the sign of the weighted sum, and normalise
    divides by the sum of the weights that took part (entry by entry under election).
    """

    sparsify: str | None  # None, "magnitude", "band" or "dare"
    elect_signs: bool

    def __call__(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams) -> torch.Tensor:
        assert base is not None, "task-vector methods need a base tensor"
        deltas = torch.stack([self._sparsified(x - base, i, p) for i, x in enumerate(inputs)])
        weights = torch.tensor(p.weights, dtype=deltas.dtype).reshape(-1, *([1] * base.dim()))
        deltas.mul_(weights)
        if self.elect_signs:
            majority = torch.where(deltas.sum(dim=0) >= 0, 1.0, -1.0)
            agree = deltas.sign() == majority
            mixed = (deltas * agree).sum(dim=0)
            divisor = (weights * agree).sum(dim=0)
            divisor[divisor == 0] = 1.0
        else:
            mixed = deltas.sum(dim=0)
            total = float(sum(p.weights))
            divisor = torch.tensor(total if abs(total) >= 1e-8 else 1.0)
        del deltas
        if p.normalize:
            mixed.div_(divisor)
        if p.lam != 1.0:
            mixed.mul_(p.lam)
        return mixed.add_(base)

    def _sparsified(self, delta: torch.Tensor, index: int, p: TensorParams) -> torch.Tensor:
        density = p.densities[index]
        if self.sparsify == "magnitude":
            return magnitude_topk(delta, density)
        if self.sparsify == "band":
            return magnitude_band(delta, density, p.gamma)
        if self.sparsify == "dare":
            return dare_drop(delta, density, tensor_seed(p.seed, p.name, index), p.rescale)
        return delta
