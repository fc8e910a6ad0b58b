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
    sign_election: str = "weighted_sum"
    disjoint_mean: str | None = None  # None: "weights" when normalize, else "none"
    min_kept: int = 1
    task_vector_dtype: torch.dtype | None = None


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

    theta = base + lambda * combine(w_i * sparsify(tau_i)). With sign election an entry of tau_i
    counts only where its sign agrees with the elected sign (>= 0 counts as +), elected per
    `p.sign_election` from the weighted sum (mergekit), the unweighted sum of the sparsified task
    vectors (the paper's code, PEFT's `ties`) or the count of signs; the sum of agreeing entries is
    divided per `p.disjoint_mean` by the weights that agree (mergekit's normalise), by the number
    of agreeing inputs, at least 1 (the paper's code), or not at all. Without election, normalise
    divides by the sum of the weights. `p.task_vector_dtype` rounds inputs and task vectors to that
    dtype first (the paper's code works on float16 copies). sparsify: None, "magnitude" (TIES
    top-k), "band" (Breadcrumbs) or "dare".
    """

    sparsify: str | None
    elect_signs: bool
    chunked: bool = True

    def prepare(self, source: ChunkSource, p: TensorParams) -> Any:
        if p.task_vector_dtype is not None:
            source = RoundedSource(source, p.task_vector_dtype)
        if self.sparsify in ("magnitude", "band"):
            return self._magnitude_cuts(source, p)
        if self.sparsify == "dare" and p.rescale == "l1":
            return self._l1_scales(source, p)
        return None

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: Any,
                chunk: int) -> torch.Tensor:
        """Merge one chunk; the input chunks are used as scratch space and overwritten."""
        assert base is not None, "task-vector methods need a base tensor"
        rounding = p.task_vector_dtype
        if rounding is not None:
            for tensor in (*inputs, base):
                tensor.copy_(tensor.to(rounding))
        # Magnitude cuts were ranked on the exact differences (rounding keeps their order), so those
        # methods round after trimming; DARE's masks do not depend on values, so it rounds before rescaling.
        round_after = self.sparsify in ("magnitude", "band")
        deltas = inputs
        for i, delta in enumerate(deltas):
            delta.sub_(base)
            if rounding is not None and not round_after:
                delta.copy_(delta.to(rounding))
            self._sparsify_row(delta, i, p, state, chunk)
            if rounding is not None and round_after:
                delta.copy_(delta.to(rounding))
        if self.elect_signs:
            mixed = _disjoint_merge(deltas, p)
        else:
            for delta, weight in zip(deltas, p.weights):
                delta.mul_(weight)
            mixed = deltas[0].clone()
            for delta in deltas[1:]:
                mixed.add_(delta)
            if p.normalize:
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
                cuts.append((rank_cut(buffer, topk_start(n, density, p.min_kept)), None))
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


def _disjoint_merge(deltas: list[torch.Tensor], p: TensorParams) -> torch.Tensor:
    """Sum of the weighted task-vector entries that agree with the elected sign, divided per p.disjoint_mean.

    Agreement is judged on the quantities the vote was taken on: the weighted entries for a weighted
    vote, the unweighted ones otherwise (so under the paper's convention an input of weight 0 still
    counts towards the number of agreeing inputs, as it does in its code).
    """
    weighted_vote = p.sign_election == "weighted_sum"
    if weighted_vote:
        for delta, weight in zip(deltas, p.weights):
            delta.mul_(weight)
    if p.sign_election == "count":
        vote = deltas[0].sign()
        for delta in deltas[1:]:
            vote.add_(delta.sign())
    else:
        vote = deltas[0].clone()
        for delta in deltas[1:]:
            vote.add_(delta)
    positive = vote >= 0
    mixed = vote.zero_()
    mean = p.disjoint_mean or ("weights" if p.normalize else "none")
    divisor = torch.zeros_like(mixed) if mean != "none" else None
    for delta, weight in zip(deltas, p.weights):
        agree = torch.where(positive, delta > 0, delta < 0)
        if not weighted_vote:
            delta.mul_(weight)
        mixed.add_(delta.mul_(agree))
        if divisor is not None:
            divisor.add_(agree, alpha=weight if mean == "weights" else 1.0)
    if mean == "weights":
        mixed.div_(divisor.masked_fill_(divisor == 0, 1.0))
    elif mean == "count":
        mixed.div_(divisor.clamp_(min=1.0))
    return mixed


class RoundedSource:
    """A chunk source whose inputs and base are rounded to `dtype` (kept in float32 buffers)."""

    def __init__(self, source: ChunkSource, dtype: torch.dtype) -> None:
        self.source, self.dtype, self.numel = source, dtype, source.numel

    def chunks(self) -> Chunks:
        for index, start, inputs, base in self.source.chunks():
            for tensor in (*inputs, *([base] if base is not None else [])):
                tensor.copy_(tensor.to(self.dtype))
            yield index, start, inputs, base
