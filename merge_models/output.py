"""The merged Hugging Face checkpoint directory: shards, index, config, processor files, card, manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
import yaml

from merge_models.checkpoint import dtype_name, itemsize
from merge_models.content_digest import ALGORITHM, content_digest
from merge_models.executor import iterate_groups, merged_chunks, unchanged_tensor
from merge_models.plan import MergePlan, TensorPlan, module_rows
from merge_models.portable import relative_to_folder
from merge_models.safetensors_header import HeaderError, read_header
from merge_models.safetensors_writer import ShardWriter, tensor_bytes
from merge_models.streaming import ChunkBuffers

MANIFEST = "merge_manifest.json"
RECIPE_FILE = "merge_recipe.yaml"
INDEX = "model.safetensors.index.json"
WRITE_QUEUE = 8


def versions() -> dict[str, str]:
    """Versions of the packages that shape a merge's result."""
    out = {}
    for package in ("merged-vlm", "torch", "transformers", "safetensors", "mergekit"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def shard_layout(plan: MergePlan) -> dict[str, list[TensorPlan]]:
    """Output file name -> its tensors, mirroring the VLM's own sharding."""
    files: dict[str, list[TensorPlan]] = {}
    for entry in plan.tensors:
        files.setdefault(plan.vlm.tensors[entry.name].file.name, []).append(entry)
    if len(files) == 1:
        return {"model.safetensors": next(iter(files.values()))}
    total = len(files)
    return {f"model-{i:05d}-of-{total:05d}.safetensors": entries for i, entries in enumerate(files.values(), 1)}


def write_checkpoint(plan: MergePlan, out_dir: Path, quiet: bool = True, device: torch.device | str = "cpu") -> None:
    """Write the complete merged checkpoint into `out_dir` (which must exist and be empty), merging on `device`.

    File writes run on one background thread (at most WRITE_QUEUE tiles in flight), so writing
    one tile overlaps reading and merging the next; merged tiles wait in a ring of reused host buffers.
    """
    layout = shard_layout(plan)
    metadata = {"merged_vlm_recipe_hash": plan.recipe_hash}
    writers = {file: ShardWriter(out_dir / file, [(e.name, e.out_dtype, e.shape) for e in entries], metadata,
                                 digest=True) for file, entries in layout.items()}
    file_of = {e.name: file for file, entries in layout.items() for e in entries}
    buffers = ChunkBuffers(device)
    ring = HostRing(WRITE_QUEUE + 2, pinned=buffers.accelerated)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="merged-vlm-writer") as io:
        pending: deque[Future] = deque()

        def submit(function, *args) -> None:
            pending.append(io.submit(function, *args))
            while len(pending) > WRITE_QUEUE:
                pending.popleft().result()

        for entry in iterate_groups(plan.tensors, "writing merged checkpoint", quiet):
            writer = writers[file_of[entry.name]]
            source = plan.vlm.tensors[entry.name]
            if entry.action == "merge":
                on_host = None if buffers.accelerated else ring.take  # CPU merges write straight into the ring
                for start, values in merged_chunks(plan, entry, buffers, on_host):
                    host = values if on_host else ring.hold(values)
                    submit(writer.write, entry.name, tensor_bytes(host), start * values.element_size())
            elif source.dtype == entry.out_dtype and not plan.vlm.pickle_files:
                submit(writer.copy_range, entry.name, source.file, source.start)
            else:
                submit(writer.write, entry.name, tensor_bytes(unchanged_tensor(plan, entry)))
        while pending:
            pending.popleft().result()
    for writer in writers.values():
        writer.close()
    if len(layout) > 1:
        total = sum(w.size - w.data_start for w in writers.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(file_of.items()))}
        (out_dir / INDEX).write_text(json.dumps(index, indent=2))
    _copy_support_files(plan, out_dir)
    write_descriptions(plan, out_dir)
    manifest = {**plan.record(), "versions": versions(), "created": _now(), "files": file_digests(out_dir, writers)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))


class HostRing:
    """Host buffers for merged blocks waiting to be written, `size` of them, taken in turn.

    A buffer is reused `size` blocks later, by when fewer than `size` writes may still be pending.
    """

    def __init__(self, size: int, pinned: bool) -> None:
        self.buffers: list[torch.Tensor] = [torch.empty(0, dtype=torch.uint8) for _ in range(size)]
        self.pinned = pinned
        self.turn = 0

    def take(self, count: int, dtype: torch.dtype) -> torch.Tensor:
        """The next buffer, as `count` elements of `dtype`."""
        nbytes = count * itemsize(dtype)
        slot = self.turn % len(self.buffers)
        self.turn += 1
        if self.buffers[slot].numel() < nbytes:
            self.buffers[slot] = torch.empty(nbytes, dtype=torch.uint8, pin_memory=self.pinned)
        return self.buffers[slot][:nbytes].view(dtype)

    def hold(self, values: torch.Tensor) -> torch.Tensor:
        """A host copy of `values` (any device) in the next buffer."""
        return self.take(values.numel(), values.dtype).copy_(values.reshape(-1))


def _copy_support_files(plan: MergePlan, out_dir: Path) -> None:
    for item in plan.vlm.support_files():
        if item.name not in ("README.md", MANIFEST, RECIPE_FILE):
            shutil.copyfile(item.resolve(), out_dir / item.name)
    config_file = out_dir / "config.json"
    config = json.loads(config_file.read_text())
    _set_dtype(config, dtype_name(plan.out_dtype))
    config_file.write_text(json.dumps(config, indent=2))


def _set_dtype(config: dict[str, Any], name: str) -> None:
    touched = False
    for node in (config, config.get("text_config")):
        if isinstance(node, dict):
            for key in ("torch_dtype", "dtype"):
                if key in node:
                    node[key] = name
                    touched = True
    if not touched:
        config["dtype"] = name


def file_digests(out_dir: Path, writers: dict[str, ShardWriter]) -> dict[str, dict[str, Any]]:
    """Size, header hash and content digest (taken as it was written) of every closed shard: what
    cache verification checks on each reuse."""
    out = {}
    for file, writer in writers.items():
        path = out_dir / file
        _, _, header = read_header(path)
        out[file] = {"size": path.stat().st_size, "header_sha256": _header_sha256(header), ALGORITHM: writer.digest}
    return out


def verify_checkpoint(out_dir: Path, recipe_hash: str) -> str | None:
    """None when `out_dir` holds a complete merge for `recipe_hash` whose shards hold the bytes written,
    else what is wrong. Every byte of every shard is read (hashed at several GB/s)."""
    manifest_file = out_dir / MANIFEST
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return "no readable manifest"
    if not isinstance(manifest, dict) or manifest.get("recipe_hash") != recipe_hash:
        return "the manifest is for another recipe"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "the manifest lists no shards"
    for file, expected in files.items():
        path = out_dir / file
        if not isinstance(expected, dict) or ALGORITHM not in expected:
            return f"the manifest records no content digest of {file}"
        if not path.is_file() or path.stat().st_size != expected.get("size"):
            return f"{file} is missing or has the wrong size"
        try:
            _, _, header = read_header(path)
        except (OSError, HeaderError) as exc:
            return f"{file} has an invalid header ({exc})"
        if _header_sha256(header) != expected.get("header_sha256"):
            return f"{file} header differs from the manifest"
        if content_digest(path) != expected[ALGORITHM]:
            return f"{file} content differs from the digest recorded when it was written"
    if not (out_dir / "config.json").is_file():
        return "config.json is missing"
    return None


def _header_sha256(header: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()


def write_descriptions(plan: MergePlan, out_dir: Path) -> None:
    """The model card and the recipe of a merged checkpoint, naming local inputs relative to `out_dir` (which
    must sit where the checkpoint will: its final folder or a sibling of it)."""
    (out_dir / RECIPE_FILE).write_text(recipe_yaml(plan, out_dir))
    (out_dir / "README.md").write_text(model_card(plan, out_dir))


def recipe_yaml(plan: MergePlan, folder: Path) -> str:
    """The normalised recipe as YAML, loadable again as a recipe from `folder`: local checkpoints are named
    relative to it (never by an absolute path), with their content identities in the header."""
    recipe = plan.portable_recipe(naming=lambda path: relative_to_folder(path, folder))
    header = f"# merged-vlm recipe, normalised; recipe_hash {plan.recipe_hash}\n"
    for checkpoint in plan.checkpoints():  # each one's field names a recipe entry
        if checkpoint.hub_identity is None:
            header += f"# {checkpoint.field}: local checkpoint {json.dumps(checkpoint.identity)}\n"
    return header + yaml.safe_dump(recipe, sort_keys=False)


def model_card(plan: MergePlan, folder: Path) -> str:
    """A Hugging Face model card stating the recipe, its hash, the inputs and the versions (local inputs by
    their names relative to their repository; the recipe as `recipe_yaml(plan, folder)`)."""
    recipe = plan.recipe
    portable = plan.portable_recipe()
    front = {
        "base_model": [portable["vlm"]["model"]] + [s["model"] for s in portable["sources"]],
        "library_name": "transformers",
        "tags": ["merge", "merged-vlm", plan.method.name],
    }
    rows = "\n".join(f"| {r.module} | {r.action} | {r.tensors} | {r.params:,} |" for r in module_rows(plan))
    inputs = "\n".join(f"| {c.field} | `{c.path.name}` | `{json.dumps(c.identity)}` |" for c in plan.checkpoints())
    vers = ", ".join(f"{k} {v}" for k, v in versions().items())
    title = recipe.name or f"{Path(recipe.vlm.model).name} + {', '.join(Path(s.model).name for s in recipe.sources)}"
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# {title}\n\n"
        f"A vision-language model whose language backbone was merged with reasoning LLM(s) in parameter space "
        f"by merged-vlm (training-free). The vision tower and projector are the VLM's, "
        f"bit for bit.\n\n"
        f"- recipe hash: `{plan.recipe_hash}`\n- method: `{plan.method.name}`: {plan.method.formula}\n"
        f"- output dtype: {dtype_name(plan.out_dtype)}\n- made with: {vers}\n\n"
        f"## Inputs\n\n| role | checkpoint | identity |\n|---|---|---|\n{inputs}\n\n"
        f"## What was merged\n\n| module | action | tensors | parameters |\n|---|---|---|---|\n{rows}\n\n"
        f"## Recipe\n\n```yaml\n{recipe_yaml(plan, folder)}```\n"
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
