"""Runs a merge plan: each merged tensor streams through its method tile by tile, on the merge device."""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import Future
from typing import Callable, Iterator

import torch
from tqdm.auto import tqdm

from merge_models.checkpoint import itemsize
from merge_models.errors import MergeError, RecipeError
from merge_models.plan import MergePlan, TensorPlan
from merge_models.runtime import merging, shared_pool
from merge_models.streaming import READ_BLOCK, ChunkBuffers, TensorStream, tile_elements

# CPU merges combine this many tiles at once, one per thread.
CPU_WORKERS = 2


def resolve_merge_device(requested: str | None, model_device: str | int | torch.device | None = None) -> torch.device:
    """Where merging runs: `requested` (the recipe's merge_device), else where the model will live
    (a device name or GPU index), else the first CUDA device when there is one, else the CPU."""
    if requested is None and model_device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested if requested is not None else model_device)
    except (RuntimeError, TypeError):
        raise RecipeError("merge_device", f"{requested or model_device!r} is not a device", "use cpu, cuda or cuda:N") \
            from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RecipeError("merge_device", f"{device} was asked for but no CUDA device is available",
                          "use merge_device=cpu, or run where a GPU is")
    if device.type not in ("cpu", "cuda") and requested is None:
        return torch.device("cpu")  # a model on another kind of device is merged for on the CPU
    if device.type not in ("cpu", "cuda"):
        raise RecipeError("merge_device", f"merging on {device.type} is not supported", "use cpu or cuda")
    return device


def merged_chunks(plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers,
                  output: Callable[[int, torch.dtype], torch.Tensor] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """(first element, values in the output dtype) covering a merged tensor's flat data, a block of
    tiles at a time (in order, unless vocabulary rows are paired: then each block's stretches of
    consecutive VLM rows, and after them the VLM's rows that kept its values). Values go into
    `output(count, dtype)` (default: two buffers on the merge device, used in turn), so each
    item is only valid until the next is taken.

    On the CPU, tiles that the method may combine in any order are combined two at a time, on two
    threads (torch itself running single-threaded meanwhile).
    """
    assert entry.action == "merge" and entry.params is not None
    method = plan.method.impl
    output = output or buffers.output
    stream = TensorStream(plan, entry, buffers, tile_elements(buffers.device, method.chunked, method.fixed_tiles))
    with merging(buffers.device):
        state = method.prepare(stream, entry.params)
        several = stream.numel > stream.block  # smaller tensors are not worth the hand-offs
        workers = CPU_WORKERS if buffers.device.type == "cpu" and several and method.any_order(state) else 1
        all_zero = True
        for block_start, block in _combined_blocks(method, entry, stream, state, output, workers):
            all_zero = all_zero and not bool(block.any())  # one check per tensor, unless it is zero so far
            for target, offset, count in stream.placements(block_start, block.numel()):
                yield target, block[offset:offset + count]
    if all_zero and stream.numel:
        _refuse_vanished(plan, stream)
    source = plan.vlm.tensors[entry.name]
    for first, stop in stream.unmerged_ranges():  # vocabulary rows without a partner in every input
        for start in range(first, stop, READ_BLOCK):
            count = min(READ_BLOCK, stop - start)
            raw = plan.vlm.read_into(entry.name, start, torch.empty(count * itemsize(source.dtype), dtype=torch.uint8))
            yield start, output(count, entry.out_dtype).copy_(raw.view(source.dtype))


def _refuse_vanished(plan: MergePlan, stream: TensorStream) -> None:
    """A merged tensor that came out all zeros although no input holds only zeros means the weights cancel
    out (a layernorm of zeros silences the model): refused rather than written."""
    if all(bool(checkpoint.read(name).any()) for checkpoint, name in stream.sources):
        name = stream.sources[0][1]
        raise MergeError(f"the merge made {name} all zeros although every input holds non-zero values: the "
                         "weights and lambda cancel out; change them (see `merged-vlm plan` for what merges)")


def _combined_blocks(method, entry: TensorPlan, stream: TensorStream, state, output, workers: int
                     ) -> Iterator[tuple[int, torch.Tensor]]:
    """The stream's tiles combined into blocks of output, in order, `workers` tiles at a time.

    Tiles in flight may belong to two blocks: a block is handed on once the next one has begun, so
    a method whose blocks are single tiles (DARE's) still combines two at once. `output` must
    therefore give each of two consecutive blocks its own memory.
    """

    def combine(index: int, inputs: list[torch.Tensor], base: torch.Tensor | None, into: torch.Tensor) -> None:
        into.copy_(method.combine(inputs, base, entry.params, state, index).reshape(-1))  # to the output dtype

    pool = shared_pool("combine", CPU_WORKERS) if workers > 1 else None
    pending: deque[Future] = deque()
    filled: deque[tuple[int, torch.Tensor, list[Future]]] = deque()  # blocks whose tiles are all submitted

    def finished(keep: int) -> Iterator[tuple[int, torch.Tensor]]:
        while len(filled) > keep:
            block_start, block, futures = filled.popleft()
            for future in futures:
                future.result()
            yield block_start, block

    try:
        block, block_start, futures = None, 0, []
        for index, start, inputs, base in stream.chunks():
            if block is None:
                yield from finished(keep=1)  # the latest block may still be combining; earlier ones are done
                block, block_start, futures = output(min(stream.block, stream.numel - start), entry.out_dtype), start, []
            into = block[start - block_start:start - block_start + inputs[0].numel()]
            if pool is None:
                combine(index, inputs, base, into)
            else:
                futures.append(pool.submit(combine, index, inputs, base, into))  # its scratch: per thread
                pending.append(futures[-1])
                while len(pending) >= workers:  # the oldest tile's buffers are decoded into next
                    pending.popleft().result()
            if start - block_start + inputs[0].numel() == block.numel():
                filled.append((block_start, block, futures))
                block = None
                if pool is None:
                    yield from finished(keep=0)
        yield from finished(keep=0)
    finally:
        for future in pending:  # the stream's buffers outlive no tile that is still being combined
            future.result()


def merge_tensor(plan: MergePlan, entry: TensorPlan, buffers: ChunkBuffers | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """The merged value of one planned tensor, whole, in the output dtype, on `device` (default: the
    merge device, where blocks are merged straight into it)."""
    buffers = buffers or ChunkBuffers(device or "cpu")
    out = torch.empty(entry.shape, dtype=entry.out_dtype, device=device or buffers.device)
    flat, position = out.view(-1), 0
    direct = flat.device == buffers.device and entry.pairing is None  # blocks then come in order

    def next_slice(count: int, dtype: torch.dtype) -> torch.Tensor:  # blocks come in order
        nonlocal position
        position += count
        return flat[position - count:position]

    for start, values in merged_chunks(plan, entry, buffers, next_slice if direct else None):
        if not direct:
            flat[start:start + values.numel()].copy_(values)
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


def merge_into(plan: MergePlan, target: Callable[[TensorPlan], torch.Tensor], quiet: bool = True,
               device: torch.device | str = "cpu") -> int:
    """Write every merged tensor into the tensor `target(entry)` returns (e.g. a model parameter, on
    any device), in place, merging on `device`. No second copy of the model is made: tiles go
    straight into the target. Returns the count merged.
    """
    buffers = ChunkBuffers(device)
    count = 0
    with torch.no_grad():
        for entry in iterate_groups(plan.merged(), "merging", quiet):
            flat = target(entry).view(-1)
            for start, values in merged_chunks(plan, entry, buffers):
                flat[start:start + values.numel()].copy_(values)
            count += 1
    return count


def merge_state_dict(plan: MergePlan, quiet: bool = True, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The whole merged checkpoint as an in-memory (CPU) state dict keyed by the VLM's tensor names."""
    buffers = ChunkBuffers(device)
    state: dict[str, torch.Tensor] = {}
    for entry in iterate_groups(plan.tensors, "merging", quiet):
        state[entry.name] = (merge_tensor(plan, entry, buffers) if entry.action == "merge"
                             else unchanged_tensor(plan, entry))
    return state
