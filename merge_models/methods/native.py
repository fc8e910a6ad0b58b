"""The merge methods implemented here: float32 torch operations on aligned chunks of the inputs.

Inputs are ordered: index 0 is the VLM's language tensor, then the reasoning sources.
Task vectors are tau_i = theta_i - theta_base. A method first `prepare`s whatever needs the whole
tensor (magnitude thresholds, norms) in streaming passes, then `combine`s tile by tile; tiles of
one tensor are combined in order with a fresh state. Tiles live on the merge device; the same
operations run on the CPU and on an accelerator, element by element in the same order, so both
give the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Protocol

import numpy as np
import torch

from merge_models.methods import cpu_kernels
from merge_models.methods.selection import select_magnitudes
from merge_models.methods.sparsify import RankCut, band_ranks, chunk_seed, dare_draws, dare_keep, topk_start
from merge_models.runtime import scratch

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
    """Float32 tiles of a tensor's inputs: (tile index, start element, inputs, base), and samples.

    `prepare` passes ask with hold=True: another pass follows, so the tiles may be kept in memory.
    """

    numel: int
    device: torch.device

    def chunks(self, hold: bool = False) -> Chunks: ...

    def sample(self, blocks: int, length: int) -> tuple[list[torch.Tensor], torch.Tensor | None]: ...


class Method(Protocol):
    """How a merge method runs: whole-tensor preparation, then tile-wise combination.

    chunked: False when combine needs each whole tensor; fixed_tiles: True when tiles must be
    the format's blocks of CHUNK_ELEMENTS (DARE's masks and l1 sums are per block); any_order:
    whether, given what `prepare` found, tiles may be combined in any order (or concurrently).
    """

    chunked: bool
    fixed_tiles: bool

    def any_order(self, state: Any) -> bool: ...

    def prepare(self, source: ChunkSource, p: TensorParams) -> Any: ...

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: Any,
                chunk: int) -> torch.Tensor: ...


class Linear:
    """theta = vlm + lambda * (mix - vlm), mix = sum_i w_i theta_i (/ sum_i w_i when normalize).

    With lambda = 1 (the default) this is the paper's a*theta_vlm + (1-a)*theta_llm.
    """

    chunked = True
    fixed_tiles = False

    def prepare(self, source: ChunkSource, p: TensorParams) -> None:
        return None

    def any_order(self, state: None) -> bool:
        return True

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: None,
                chunk: int) -> torch.Tensor:
        mixed = torch.mul(inputs[0], p.weights[0], out=scratch("mixed", inputs[0]))
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

    @property
    def fixed_tiles(self) -> bool:
        return self.sparsify == "dare"

    def prepare(self, source: ChunkSource, p: TensorParams) -> Any:
        if p.task_vector_dtype is not None:
            source = RoundedSource(source, p.task_vector_dtype)
        if self.sparsify in ("magnitude", "band"):
            return self._magnitude_cuts(source, p)
        if self.sparsify == "dare" and p.rescale == "l1":
            return self._l1_scales(source, p)
        return None

    def any_order(self, state: Any) -> bool:
        if self.sparsify in ("magnitude", "band"):
            return all(cut.any_order for cuts in state for cut in cuts if cut is not None)
        return True

    def combine(self, inputs: list[torch.Tensor], base: torch.Tensor | None, p: TensorParams, state: Any,
                chunk: int) -> torch.Tensor:
        """Merge one tile; the input tiles are used as scratch space and overwritten."""
        assert base is not None, "task-vector methods need a base tensor"
        rounding = p.task_vector_dtype
        if rounding is not None:
            for tensor in (*inputs, base):
                _round(tensor, rounding)
        # Magnitude cuts were ranked on the exact differences (rounding keeps their order), so those
        # methods round after trimming; DARE's masks do not depend on values, so it rounds before rescaling.
        round_after = self.sparsify in ("magnitude", "band")
        # The weights apply before the vote when it is a weighted sum (mergekit), after it otherwise.
        weigh_first = not self.elect_signs or p.sign_election == "weighted_sum"
        deltas = inputs
        compiled = _uses_compiled_loops(base, rounding)
        for i, (delta, weight) in enumerate(zip(deltas, p.weights)):
            if compiled and self.sparsify in (None, "dare"):
                self._fused_task_vector(delta, base, i, p, state, chunk, weight if weigh_first else 1.0)
                continue
            delta.sub_(base)
            if rounding is not None and not round_after:
                _round(delta, rounding)
            self._sparsify_row(delta, i, p, state, chunk)
            if rounding is not None and round_after:
                _round(delta, rounding)
            if weigh_first and weight != 1.0:  # x * 1 == x exactly
                delta.mul_(weight)
        if self.elect_signs and compiled and p.sign_election != "count":
            return _fused_elect_sum(deltas, base, p, weighted=weigh_first)
        if self.elect_signs:
            mixed = _disjoint_sum(deltas, p, weighted=weigh_first)
        else:
            mixed = deltas[0]
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
            magnitude = torch.abs(delta, out=scratch("magnitude", delta))
            keep = lower.keep(magnitude, scratch("keep", delta), chunk)
            if upper is not None:
                keep.sub_(upper.keep(magnitude, scratch("upper", delta), chunk))  # upper's entries are lower's too
            delta.mul_(keep)
        elif self.sparsify == "dare" and p.densities[i] < 1:
            delta.mul_(dare_keep(delta.shape, p.densities[i], chunk_seed(p.seed, p.name, i, chunk), scratch("keep", delta)))
            if p.rescale == "inverse_density":
                delta.div_(p.densities[i])
            elif p.rescale == "l1":
                delta.mul_(state[i])

    def _fused_task_vector(self, x: torch.Tensor, base: torch.Tensor, i: int, p: TensorParams, state: Any,
                           chunk: int, weight: float) -> None:
        """`_sparsify_row` of x - base, then weighted by `weight`, in place, in one compiled loop (CPU, no
        rounding, sparsify None or "dare"): the same operations in the same order, so the same bits."""
        masked = self.sparsify == "dare" and p.densities[i] < 1
        draws = base
        if masked:  # the draws dare_keep compares
            draws = dare_draws(x.shape, chunk_seed(p.seed, p.name, i, chunk), scratch("keep", x))
        divisor = p.densities[i] if masked and p.rescale == "inverse_density" else 1.0
        factor = state[i] if masked and p.rescale == "l1" else 1.0
        cpu_kernels.task_vector(x.view(-1).numpy(), base.view(-1).numpy(), masked, draws.view(-1).numpy(),
                                np.float32(p.densities[i]), np.float32(divisor), np.float32(factor), np.float32(weight))

    def _magnitude_cuts(self, source: ChunkSource, p: TensorParams) -> list[tuple[RankCut, RankCut | None]]:
        n = source.numel
        ranks: list[tuple[int, int | None]] = []
        for density in p.densities:
            if density >= 1:
                ranks.append((0, None))
            elif self.sparsify == "magnitude":
                ranks.append((topk_start(n, density, p.min_kept), None))
            else:
                bottom, top = band_ranks(n, density, p.gamma)
                ranks.append((bottom, top if top < n else None))
        wanted = [[r + 1 for r in pair if r is not None and 0 < r < n] for pair in ranks]  # 1-based
        found = [dict(zip(ranks_i, values)) for ranks_i, values in zip(wanted, select_magnitudes(source, wanted))]
        return [(RankCut.at(lower, n, found_i.get(lower + 1)),
                 RankCut.at(upper, n, found_i.get(upper + 1)) if upper is not None else None)
                for (lower, upper), found_i in zip(ranks, found)]

    def _l1_scales(self, source: ChunkSource, p: TensorParams) -> list[float]:
        before = [0.0] * len(p.weights)
        after = [0.0] * len(p.weights)
        for chunk, _, inputs, base in source.chunks(hold=True):
            for i, tensor in enumerate(inputs):
                magnitude = torch.sub(tensor, base, out=scratch("magnitude", base)).abs_()
                before[i] += float(magnitude.cpu().sum())  # summed on the CPU on every device: same bits
                if p.densities[i] < 1:
                    magnitude.mul_(dare_keep(magnitude.shape, p.densities[i], chunk_seed(p.seed, p.name, i, chunk),
                                             scratch("keep", magnitude)))
                after[i] += float(magnitude.cpu().sum())
        return [b / a if b >= 1e-7 and a >= 1e-7 else 1.0 for b, a in zip(before, after)]


def _disjoint_sum(deltas: list[torch.Tensor], p: TensorParams, weighted: bool) -> torch.Tensor:
    """Sum of the weighted task-vector entries that agree with the elected sign, divided per p.disjoint_mean.

    `deltas` are already weighted when `weighted` (a weighted vote), else weighted here after the
    vote. Agreement is judged on the quantities the vote was taken on: the weighted entries for a
    weighted vote, the unweighted ones otherwise (so under the paper's convention an input of
    weight 0 still counts towards the number of agreeing inputs, as it does in its code).
    """
    agree = scratch("agree", deltas[0])
    vote = scratch("vote", deltas[0])
    if p.sign_election == "count":
        torch.sign(deltas[0], out=vote)
        for delta in deltas[1:]:
            vote.add_(torch.sign(delta, out=agree))
    else:
        vote.copy_(deltas[0])
        for delta in deltas[1:]:
            vote.add_(delta)
    sign = torch.ge(vote, 0, out=scratch("sign", vote)).mul_(2).sub_(1)  # +1: elected sign positive (>= 0)
    mixed = vote.zero_()
    mean = p.disjoint_mean or ("weights" if p.normalize else "none")
    divisor = scratch("divisor", mixed).zero_() if mean != "none" else None
    for delta, weight in zip(deltas, p.weights):
        torch.mul(delta, sign, out=agree).gt_(0)  # 1.0 where delta has the elected sign
        if not weighted and weight != 1.0:
            delta.mul_(weight)
        mixed.add_(delta.mul_(agree))
        if divisor is not None:
            divisor.add_(agree, alpha=weight if mean == "weights" else 1.0)
    if divisor is not None:  # no agreeing input: divide by 1
        mixed.div_(divisor.add_(torch.eq(divisor, 0, out=agree)))
    return mixed


def _uses_compiled_loops(base: torch.Tensor, rounding: torch.dtype | None) -> bool:
    """Whether a tile is combined with cpu_kernels' fused loops (on the CPU, without rounding) rather than
    torch operations, one pass each (elsewhere; and their test oracle)."""
    return base.device.type == "cpu" and rounding is None


def _fused_elect_sum(deltas: list[torch.Tensor], base: torch.Tensor, p: TensorParams, weighted: bool) -> torch.Tensor:
    """lambda * _disjoint_sum(deltas) + base in one compiled loop on the CPU (sign elected from a sum)."""
    mean = p.disjoint_mean or ("weights" if p.normalize else "none")
    alphas = np.array(p.weights if mean == "weights" else [1.0] * len(deltas), dtype=np.float32)
    out = scratch("vote", deltas[0])
    cpu_kernels.elect_sum(tuple(d.view(-1).numpy() for d in deltas), np.array(p.weights, dtype=np.float32), weighted,
                          alphas, mean != "none", np.float32(p.lam), base.view(-1).numpy(), out.view(-1).numpy())
    return out


def _round(tensor: torch.Tensor, dtype: torch.dtype) -> None:
    """Round a float32 tensor's values to `dtype`, in place."""
    tensor.copy_(tensor.to(dtype))


class RoundedSource:
    """A chunk source whose inputs and base are rounded to `dtype` (kept in float32 buffers).

    Tiles are rounded in place; rounding is idempotent, so tiles held for a later pass stay valid.
    """

    def __init__(self, source: ChunkSource, dtype: torch.dtype) -> None:
        self.source, self.dtype, self.numel, self.device = source, dtype, source.numel, source.device

    def chunks(self, hold: bool = False) -> Chunks:
        for index, start, inputs, base in self.source.chunks(hold):
            for tensor in (*inputs, *([base] if base is not None else [])):
                _round(tensor, self.dtype)
            yield index, start, inputs, base

    def sample(self, blocks: int, length: int) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        inputs, base = self.source.sample(blocks, length)
        for tensor in (*inputs, *([base] if base is not None else [])):
            _round(tensor, self.dtype)
        return inputs, base
