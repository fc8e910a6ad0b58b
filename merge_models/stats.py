"""Per-layer statistics of task vectors and of the merged change (no evaluation, seconds).

For each decoder layer and module group (attention, MLP): the norm of every input's task vector
tau = theta - theta_base, the cosine between the VLM's and each reasoning LLM's task vector, the
fraction of entries where both are non-zero and their signs disagree, and the layer's share of
the merge's total squared change ||theta_merged - theta_vlm||^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


from merge_models.errors import RecipeError
from merge_models.executor import merged_chunks
from merge_models.plan import MergePlan
from merge_models.streaming import CHUNK_ELEMENTS, ChunkBuffers, TensorStream

MODULE_PATTERNS = {"attn": "self_attn.", "mlp": "mlp."}


@dataclass
class LayerStats:
    """Statistics of one (layer, module group)."""

    layer: int
    module: str
    tau_norms: list[float] = field(default_factory=list)
    cosine: list[float] = field(default_factory=list)
    sign_conflict: list[float] = field(default_factory=list)
    change_share: float = 0.0


@dataclass
class _Sums:
    squares: list[float]
    dots: list[float]
    conflicts: list[int]
    both_nonzero: list[int]
    change: float = 0.0


def task_vector_stats(plan: MergePlan, modules: list[str]) -> list[LayerStats]:
    """Statistics per layer and module group for a plan whose recipe names a base LLM."""
    if plan.base is None:
        raise RecipeError("base", "task-vector statistics need the shared base LLM", "add `base:` to the recipe")
    unknown = [m for m in modules if m not in MODULE_PATTERNS]
    if unknown:
        raise RecipeError("--module", f"unknown module group {unknown[0]!r}", f"use {', '.join(MODULE_PATTERNS)}")
    inputs = 1 + len(plan.sources)
    sums: dict[tuple[int, str], _Sums] = {}
    buffers = ChunkBuffers()
    for entry in plan.tensors:
        if entry.layer is None or entry.canonical is None:
            continue
        group = next((m for m in modules if MODULE_PATTERNS[m] in entry.canonical), None)
        if group is None:
            continue
        total = sums.setdefault((entry.layer, group), _Sums([0.0] * inputs, [0.0] * inputs, [0] * inputs,
                                                             [0] * inputs))
        for _, _, chunk, base in TensorStream(plan, entry, buffers, CHUNK_ELEMENTS, with_base=True).chunks():
            taus = [x.sub_(base) for x in chunk]
            for i, tau in enumerate(taus):
                total.squares[i] += float(tau.square().sum())
                total.dots[i] += float((taus[0] * tau).sum())
                nonzero = (taus[0] != 0) & (tau != 0)
                total.both_nonzero[i] += int(nonzero.sum())
                total.conflicts[i] += int((nonzero & (taus[0].sign() != tau.sign())).sum())
        if entry.action == "merge":
            vlm = plan.vlm.read(entry.name).reshape(-1).float()
            for start, values in merged_chunks(plan, entry, buffers):
                total.change += float((values.float() - vlm[start:start + values.numel()]).square().sum())
    grand = sum(s.change for s in sums.values()) or 1.0
    out = []
    for (layer, module), s in sorted(sums.items()):
        norms = [math.sqrt(q) for q in s.squares]
        cosine = [s.dots[i] / (norms[0] * norms[i]) if norms[0] and norms[i] else 0.0 for i in range(1, inputs)]
        conflict = [s.conflicts[i] / s.both_nonzero[i] if s.both_nonzero[i] else 0.0 for i in range(1, inputs)]
        out.append(LayerStats(layer, module, norms, cosine, conflict, s.change / grand))
    return out
