"""Runs a merge plan tensor by tensor: float32 arithmetic, streamed inputs, bounded memory."""

from __future__ import annotations

import itertools
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from merge_models.plan import MergePlan, TensorPlan


def merge_tensor(plan: MergePlan, entry: TensorPlan) -> torch.Tensor:
    """The merged value of one planned tensor, in the output dtype."""
    assert entry.action == "merge" and entry.params is not None and entry.canonical is not None
    vlm = plan.vlm.read(entry.name)
    inputs = [vlm.float()] + [_read_canonical(s, entry.canonical) for s in plan.sources]
    base = _read_canonical(plan.base, entry.canonical) if plan.base else None
    if entry.rows is not None:
        rows = entry.rows
        merged_rows = plan.method.run([x[:rows] for x in inputs], base[:rows] if base is not None else None,
                                      entry.params)
        merged = torch.cat([merged_rows, inputs[0][rows:]])
    else:
        merged = plan.method.run(inputs, base, entry.params)
    return merged.to(entry.out_dtype)


def unchanged_tensor(plan: MergePlan, entry: TensorPlan) -> torch.Tensor:
    """A tensor the merge leaves as the VLM's, cast to the output dtype."""
    return plan.vlm.read(entry.name).to(entry.out_dtype)


def _read_canonical(checkpoint, canonical: str) -> torch.Tensor:
    return checkpoint.read(checkpoint.canonical_map[canonical]).float()


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


def merge_into(plan: MergePlan, assign: Callable[[TensorPlan, torch.Tensor], None], quiet: bool = True) -> int:
    """Compute every merged tensor and hand it to `assign`; returns the number merged."""
    count = 0
    for entry in iterate_groups(plan.merged(), "merging", quiet):
        assign(entry, merge_tensor(plan, entry))
        count += 1
    return count


def merge_state_dict(plan: MergePlan, quiet: bool = True) -> dict[str, torch.Tensor]:
    """The whole merged checkpoint as an in-memory state dict keyed by the VLM's tensor names."""
    state: dict[str, torch.Tensor] = {}
    for entry in iterate_groups(plan.tensors, "merging", quiet):
        state[entry.name] = merge_tensor(plan, entry) if entry.action == "merge" else unchanged_tensor(plan, entry)
    return state
