"""Runs a merge plan: each merged tensor streams through its method chunk by chunk."""

from __future__ import annotations

import itertools
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from merge_models.plan import MergePlan, TensorPlan
from merge_models.streaming import CHUNK_ELEMENTS, ChunkBuffers, TensorStream


def merged_chunks(plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers) -> Iterator[tuple[int, torch.Tensor]]:
    """(first element, values in the output dtype) covering a merged tensor's flat data in order."""
    assert entry.action == "merge" and entry.params is not None
    method = plan.method.impl
    stream = TensorStream(plan, entry, buffers, method.chunked)
    state = method.prepare(stream, entry.params)
    for index, start, inputs, base in stream.chunks():
        merged = method.combine(inputs, base, entry.params, state, index).reshape(-1).to(entry.out_dtype)
        for target, offset, count in stream.placements(start, merged.numel()):
            yield target, merged[offset:offset + count]
    unmerged = stream.unmerged_ranges()  # vocabulary rows without a partner in every input
    vlm_values = plan.vlm.read(entry.name).reshape(-1) if unmerged else None
    for first, stop in unmerged:
        for start in range(first, stop, CHUNK_ELEMENTS):
            yield start, vlm_values[start:min(start + CHUNK_ELEMENTS, stop)].to(entry.out_dtype)


def merge_tensor(plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers | None = None) -> torch.Tensor:
    """The merged value of one planned tensor, whole, in the output dtype."""
    out = torch.empty(entry.shape, dtype=entry.out_dtype)
    flat = out.view(-1)
    for start, values in merged_chunks(plan, entry, buffers or ChunkBuffers()):
        flat[start:start + values.numel()] = values
    return out


def unchanged_tensor(plan: MergePlan, entry: TensorPlan) -> torch.Tensor:
    """A tensor the merge leaves as the VLM's, cast to the output dtype."""
    return plan.vlm.read(entry.name).to(entry.out_dtype)


def group_of(entry: TensorPlan) -> str:
    """The progress group of a tensor: its decoder layer, or its kind."""
    if entry.layer is not None:
        return f"layer {entry.layer}"
    return {"vision": "vision tower + projector", "other": "other tensors"}.get(entry.action, "embeddings + norm")


def iterate_groups(entries: list[TensorPlan], description: str, quiet: bool) -> Iterator[TensorPlan]:
    """Yield entries, advancing one progress-bar step per tensor group (layer, vision, ...)."""
    groups = [(name, list(items)) for name, items in itertools.groupby(entries, key=group_of)]
    with tqdm(total=len(groups), desc=description, unit="group", disable=quiet, leave=False) as bar:
        for name, items in groups:
            bar.set_postfix_str(name)
            yield from items
            bar.update(1)


def merge_into(plan: MergePlan, target: Callable[[TensorPlan], torch.Tensor], quiet: bool = True) -> int:
    """Write every merged tensor into the tensor `target(entry)` returns (e.g. a model parameter), in place.

    No second copy of the model is made: chunks go straight into the target. Returns the count merged.
    """
    buffers = ChunkBuffers()
    count = 0
    with torch.no_grad():
        for entry in iterate_groups(plan.merged(), "merging", quiet):
            flat = target(entry).view(-1)
            for start, values in merged_chunks(plan, entry, buffers):
                flat[start:start + values.numel()].copy_(values)
            count += 1
    return count


def merge_state_dict(plan: MergePlan, quiet: bool = True) -> dict[str, torch.Tensor]:
    """The whole merged checkpoint as an in-memory state dict keyed by the VLM's tensor names."""
    buffers = ChunkBuffers()
    state: dict[str, torch.Tensor] = {}
    for entry in iterate_groups(plan.tensors, "merging", quiet):
        state[entry.name] = (merge_tensor(plan, entry, buffers) if entry.action == "merge"
                             else unchanged_tensor(plan, entry))
    return state
