"""The merge methods implemented here: float32 torch operations on aligned chunks of the inputs.

Inputs are ordered: index 0 is the VLM's language tensor, then the reasoning sources.
Task vectors are tau_i = theta_i - theta_base. A method first `prepare`s whatever needs the whole
tensor (magnitude thresholds, norms), then `combine`s chunk by chunk; chunks of one tensor are
combined in order with a fresh state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol

import torch

from merge_models.methods.sparsify import RankCut, band_ranks, chunk_seed, dare_keep, rank_cut, topk_start

Chunks = Iterator[tuple[int, int, list[torch.Tensor], "torch.Tensor | None"]]


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


class ChunkSource(Protocol):
    """Float32 chunks of a tensor's inputs: (chunk index, start element, inputs, base)."""

    numel: int

    def chunks(self) -> Chunks: ...


class Method(Protocol):
    """How a merge method runs: whole-tensor preparation, then chunk-wise combination."""

    chunked: bool

    def prepare(self, source: ChunkSource, p: TensorParams) -> Any: ...

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: Any,
                chunk: int) -> torch.Tensor: ...


class Linear:
    """theta = vlm + lambda * (mix - vlm), mix = sum_i w_i theta_i (/ sum_i w_i when normalize).

    With lambda = 1 (the default) this is the paper's a*theta_vlm + (1-a)*theta_llm.
    """

    chunked = True

    def prepare(self, source: ChunkSource, p: TensorParams) -> None:
        return None

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: None,
                chunk: int) -> torch.Tensor:
        mixed = inputs[0] * p.weights[0]
        for tensor, weight in zip(inputs[1:], p.weights[1:]):
            mixed.add_(tensor, alpha=weight)
        if p.normalize:
            total = sum(p.weights)
            mixed.div_(total if abs(total) > 1e-8 else 1.0)
        if p.lam == 1.0:
            return mixed
        return mixed.sub_(inputs[0]).mul_(p.lam).add_(inputs[0])


@dataclass(frozen=True)
class TaskVectorMethod:
    """The generalised task-arithmetic family: sparsify, weight, optionally elect signs, sum, scale.

    theta = base + lambda * combine(w_i * sparsify(tau_i)); with sign election an entry of
    tau_i counts only where its sign agrees with the sign of the weighted sum, and normalise
    divides by the sum of the weights that took part (entry by entry under election).
    sparsify: None, "magnitude" (TIES top-k), "band" (Breadcrumbs) or "dare".
    """

    sparsify: str | None
    elect_signs: bool
    chunked: bool = True

    def prepare(self, source: ChunkSource, p: TensorParams) -> Any:
        if self.sparsify in ("magnitude", "band"):
            return self._magnitude_cuts(source, p)
        if self.sparsify == "dare" and p.rescale == "l1":
            return self._l1_scales(source, p)
        return None

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: Any,
                chunk: int) -> torch.Tensor:
        """Merge one chunk; the input chunks are used as scratch space and overwritten."""
        assert base is not None, "task-vector methods need a base tensor"
        deltas = inputs
        for i, (delta, weight) in enumerate(zip(deltas, p.weights)):
            delta.sub_(base)
            self._sparsify_row(delta, i, p, state, chunk)
            delta.mul_(weight)
        mixed = deltas[0].clone()
        for delta in deltas[1:]:
            mixed.add_(delta)
        if self.elect_signs:
            positive = mixed >= 0
            mixed.zero_()
            divisor = torch.zeros_like(mixed) if p.normalize else None
            for delta, weight in zip(deltas, p.weights):
                agree = torch.where(positive, delta > 0, delta < 0)
                mixed.add_(delta.mul_(agree))
                if divisor is not None:
                    divisor.add_(agree, alpha=weight)
            if divisor is not None:
                mixed.div_(divisor.masked_fill_(divisor == 0, 1.0))
        elif p.normalize:
            total = float(sum(p.weights))
            mixed.div_(total if abs(total) >= 1e-8 else 1.0)
        if p.lam != 1.0:
            mixed.mul_(p.lam)
        return mixed.add_(base)

    def _sparsify_row(self, delta: torch.Tensor, i: int, p: TensorParams, state: Any, chunk: int) -> None:
        if self.sparsify in ("magnitude", "band"):
            lower, upper = state[i]
            magnitude = delta.abs()
            keep = lower.mask(magnitude)
            if upper is not None:
                keep &= ~upper.mask(magnitude)
            delta.mul_(keep)
        elif self.sparsify == "dare" and p.densities[i] < 1:
            delta.mul_(dare_keep(delta.shape, p.densities[i], chunk_seed(p.seed, p.name, i, chunk)))
            if p.rescale == "inverse_density":
                delta.div_(p.densities[i])
            elif p.rescale == "l1":
                delta.mul_(state[i])

    def _magnitude_cuts(self, source: ChunkSource, p: TensorParams) -> list[tuple[RankCut, RankCut | None]]:
        n = source.numel
        magnitudes = [torch.empty(n) for _ in p.weights]
        for _, start, inputs, base in source.chunks():
            for buffer, tensor in zip(magnitudes, inputs):
                torch.sub(tensor, base, out=buffer[start:start + tensor.numel()]).abs_()
        cuts = []
        for buffer, density in zip(magnitudes, p.densities):
            if density >= 1:
                cuts.append((rank_cut(buffer, 0), None))
            elif self.sparsify == "magnitude":
                cuts.append((rank_cut(buffer, topk_start(n, density)), None))
            else:
                bottom, top = band_ranks(n, density, p.gamma)
                cuts.append((rank_cut(buffer, bottom), rank_cut(buffer, top) if top < n else None))
        return cuts

    def _l1_scales(self, source: ChunkSource, p: TensorParams) -> list[float]:
        before = [0.0] * len(p.weights)
        after = [0.0] * len(p.weights)
        for chunk, _, inputs, base in source.chunks():
            for i, tensor in enumerate(inputs):
                magnitude = (tensor - base).abs_()
                before[i] += float(magnitude.sum())
                if p.densities[i] < 1:
                    magnitude.mul_(dare_keep(magnitude.shape, p.densities[i], chunk_seed(p.seed, p.name, i, chunk)))
                after[i] += float(magnitude.sum())
        return [b / a if b >= 1e-7 and a >= 1e-7 else 1.0 for b, a in zip(before, after)]
