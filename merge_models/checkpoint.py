"""Input checkpoints: locate (local dir or Hugging Face Hub), validate, index and read tensors lazily."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import struct
import sys
import textwrap
import threading
import zipfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from merge_models.adapters import Adapter, detect, supported_vlm_types
from merge_models.errors import CheckpointError
from merge_models.fingerprint import file_digest
from merge_models.language_config import LanguageConfig, language_config
from merge_models.recipe import ModelRef
from merge_models.safetensors_header import HeaderError, read_header

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
PICKLE_INDEX = "pytorch_model.bin.index.json"
# Pickle weights are only ever these (or what PICKLE_INDEX names): never training_args.bin and the like.
PICKLE_WEIGHTS = "pytorch_model*.bin"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py", "*.md", "*.tiktoken"]
CONTENT_HASH_LIMIT = 256 * 1024**2


@dataclass(frozen=True)
class TensorMeta:
    """Where one tensor lives: file, absolute byte range, dtype and shape.

    `stride` is set only for a pickle tensor saved as a non-contiguous view: its elements then lie at
    these element strides from `start` (not row-major in [start, stop)).
    """

    name: str
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    stop: int
    stride: tuple[int, ...] | None = None

    @property
    def nbytes(self) -> int:
        return self.stop - self.start


@dataclass
class Checkpoint:
    """A resolved checkpoint directory with its tensor index and architecture adapter."""

    field: str
    path: Path
    config: dict[str, Any]
    adapter: Adapter
    tensors: dict[str, TensorMeta]
    hub_identity: dict[str, Any] | None
    pickle_files: tuple[Path, ...] = ()
    _handles: dict[Path, int] = field(default_factory=dict, repr=False)
    _memory: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)  # reads come from several threads

    @cached_property
    def identity(self) -> dict[str, Any]:
        """What the recipe hash records for this checkpoint (computed on first use, after validation)."""
        if self.hub_identity is not None:
            return self.hub_identity
        files = sorted({meta.file for meta in self.tensors.values()})
        return _local_identity(self.path, files)

    @property
    def text_config(self) -> dict[str, Any]:
        return self.adapter.text_config(self.config)

    @cached_property
    def language(self) -> LanguageConfig:
        """The language model's settings with transformers' class defaults filled in."""
        return language_config(self.config, self.text_config)

    @cached_property
    def canonical_map(self) -> dict[str, str]:
        """canonical LLM name -> this checkpoint's tensor name, for its language tensors."""
        out: dict[str, str] = {}
        for name in self.tensors:
            canonical = self.adapter.canonical(name)
            if canonical is not None:
                out[canonical] = name
        return out

    def read(self, name: str) -> torch.Tensor:
        """Load one whole tensor into memory of its own."""
        meta = self.tensors[name]
        if meta.stride is not None and name not in self._memory:
            span = 1 + sum((n - 1) * s for n, s in zip(meta.shape, meta.stride)) if meta.nbytes else 0
            storage = torch.empty(span * itemsize(meta.dtype), dtype=torch.uint8)
            values = self._pread(meta, meta.start, storage).view(meta.dtype)
            return values.as_strided(meta.shape, meta.stride).contiguous()
        buffer = torch.empty(meta.nbytes, dtype=torch.uint8)
        return self.read_into(name, 0, buffer).view(meta.dtype).reshape(meta.shape)

    def read_into(self, name: str, start: int, buffer: torch.Tensor) -> torch.Tensor:
        """Read elements [start, start + n) of a tensor's flat data into a uint8 `buffer` of n items' bytes.

        Safetensors and pickle data alike are read with pread at the tensor's file offsets rather than
        memory-mapped, so the process holds only the buffers it asks for, not every page it has touched.
        """
        meta = self.tensors[name]
        size = itemsize(meta.dtype)
        if name in self._memory or meta.stride is not None:
            whole = self._memory.get(name)
            flat = (self.read(name) if whole is None else whole).reshape(-1).view(torch.uint8)
            buffer.copy_(flat[start * size:start * size + buffer.numel()])
            return buffer
        return self._pread(meta, meta.start + start * size, buffer)

    def _pread(self, meta: TensorMeta, position: int, buffer: torch.Tensor) -> torch.Tensor:
        """Fill a uint8 `buffer` with the bytes of `meta.file` from `position` on."""
        with self._lock:
            fd = self._handles.get(meta.file)
            if fd is None:
                fd = self._handles[meta.file] = os.open(meta.file, os.O_RDONLY)
        view = memoryview(buffer.numpy())
        while view.nbytes:
            count = os.preadv(fd, [view], position)
            if count == 0:
                raise CheckpointError(f"{self.field}.model", f"{meta.file} ended inside tensor {meta.name}",
                                      "download the checkpoint again")
            view, position = view[count:], position + count
        return buffer

    def preload_language(self) -> None:
        """Hold every language tensor in memory, so later reads never touch the disk (used by sweeps)."""
        for name in self.canonical_map.values():
            if name not in self._memory:
                self._memory[name] = self.read(name)

    def support_files(self) -> list[Path]:
        """The files beside the weights (configs, tokenizer, processor, templates). A symbolic link that leads
        outside the checkpoint folder (for a Hub snapshot: outside its repository's cache folder, where the
        Hub keeps the files a snapshot links to) is refused, so no other file's content is ever copied."""
        root = (self.path.parents[1] if self.hub_identity is not None else self.path).resolve()
        files = []
        for item in sorted(self.path.iterdir()):
            if item.name.startswith(".") or is_weight_file(item.name):
                continue
            target = item.resolve()
            if not target.is_relative_to(root):
                raise CheckpointError(f"{self.field}.model", f"{item.name} in {self.path} is a link to {target}, "
                                      "outside the checkpoint folder", "replace the link by a copy of the file "
                                      "(cp --dereference) if you trust it")
            if target.is_file():
                files.append(item)
        return files

    def relabel(self, field: str) -> "Checkpoint":
        """The same checkpoint (sharing files and memory) under another recipe field name."""
        return replace(self, field=field)

    def close(self) -> None:
        """Release open files."""
        for handle in self._handles.values():
            os.close(handle)
        self._handles.clear()


def open_checkpoint(ref: ModelRef, field: str, allow_pickle: bool, require_vlm: bool = False) -> Checkpoint:
    """Resolve, validate and index a checkpoint named by a recipe field."""
    path, hub_identity = _locate(ref, field, allow_pickle)
    config = _read_config(path, field)
    adapter = detect(config)
    if adapter is None or (require_vlm and not adapter.is_vlm):
        model_type = config.get("model_type", "?")
        raise CheckpointError(
            f"{field}.model", f"unknown architecture {model_type!r} in {path / 'config.json'}",
            f"supported VLM families: {', '.join(supported_vlm_types())}; add an adapter in merge_models/adapters/",
        )
    safetensor_files = _weight_files(path, "model.safetensors.index.json", "*.safetensors", field)
    pickle_files: tuple[Path, ...] = ()
    if safetensor_files:
        tensors = _index_safetensors(safetensor_files, field)
    else:
        if not allow_pickle and ((path / PICKLE_INDEX).is_file() or any(path.glob(PICKLE_WEIGHTS))):
            raise CheckpointError(
                f"{field}.model", f"{path} has only pickle (.bin) weights, which can run code when loaded",
                "convert it to safetensors, or set `allow_pickle: true` in the recipe if you trust it",
            )
        pickle_list = _weight_files(path, PICKLE_INDEX, PICKLE_WEIGHTS, field) if allow_pickle else []
        if not pickle_list:
            hint = "" if allow_pickle or hub_identity is None else \
                " (if it ships only pickle weights, pytorch_model*.bin, and you trust it, set `allow_pickle: true`)"
            raise CheckpointError(f"{field}.model", f"no weight files (*.safetensors) in {path}",
                                  "point it at a Hugging Face checkpoint directory" + hint)
        pickle_files = tuple(pickle_list)
        tensors = _index_pickle(pickle_files, field)
    return Checkpoint(field, path, config, adapter, tensors, hub_identity, pickle_files)


def _locate(ref: ModelRef, field: str, allow_pickle: bool) -> tuple[Path, dict[str, Any] | None]:
    local = Path(ref.model).expanduser()
    if local.is_dir():
        return local.resolve(), None
    if local.exists() or ref.model.startswith(("/", ".", "~")) or ref.model.count("/") != 1:
        raise CheckpointError(f"{field}.model", f"{ref.model!r} is not a checkpoint directory",
                              "give a local directory or a Hugging Face id such as Qwen/Qwen2-VL-7B-Instruct")
    return _download(ref, field, allow_pickle)


def _download(ref: ModelRef, field: str, allow_pickle: bool) -> tuple[Path, dict[str, Any]]:
    """Fetch configs, tokenizer files and safetensors weights; pickle weights only when allowed and nothing else exists.

    Pickle weights are the files the checkpoint's pytorch_model.bin.index.json names, or
    pytorch_model*.bin: never other .bin files such as training_args.bin.
    """
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(ref.model, revision=ref.revision, allow_patterns=HUB_PATTERNS))
        if allow_pickle and not any(snapshot.glob("*.safetensors")):
            patterns = _pickle_names(snapshot, field) or [PICKLE_WEIGHTS]
            snapshot = Path(snapshot_download(ref.model, revision=snapshot.name, allow_patterns=patterns))
    except CheckpointError:
        raise
    except Exception as exc:  # offline, unknown repo, gated, no disk: all leave the same remedy
        reason = short_reason(exc)
        raise CheckpointError(
            f"{field}.model", f"{ref.model!r} is not a local directory and could not be fetched from the "
                              f"Hugging Face Hub ({reason})",
            f"download it where a network exists (`hf download {ref.model}`) or give a local path",
        ) from None
    return snapshot, {"source": "hub", "repo": ref.model, "commit": snapshot.name}


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """An exception's first sentence, shortened at a word boundary (never mid-word) to at most `limit` characters."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".")
    return textwrap.shorten(sentence, limit, placeholder=" ...")


def _read_config(path: Path, field: str) -> dict[str, Any]:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{field}.model", f"{path} has no config.json", "point it at a Hugging Face checkpoint")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{field}.model", f"{config_file} is not valid JSON", "restore the file") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{field}.model", f"{config_file} is not a JSON object", "restore the file")
    return config


def _index_names(index_file: Path, field: str) -> list[str]:
    """The shard file names a weight index maps tensors to."""
    try:
        weight_map = json.loads(index_file.read_text())["weight_map"]
        return sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{field}.model", f"{index_file} is corrupt (no weight_map)", "restore it") from None


def _pickle_names(path: Path, field: str) -> list[str]:
    """The pickle shards pytorch_model.bin.index.json names, or [] without an index."""
    index_file = path / PICKLE_INDEX
    return _index_names(index_file, field) if index_file.is_file() else []


def _weight_files(path: Path, index_name: str, pattern: str, field: str) -> list[Path]:
    """The weight files an index names, else those matching `pattern`."""
    index_file = path / index_name
    if index_file.is_file():
        files = [path / name for name in _index_names(index_file, field)]
        for file in files:
            if not file.is_file():
                raise CheckpointError(f"{field}.model", f"shard {file.name} listed in {index_name} is missing",
                                      "download the checkpoint again")
        return files
    return sorted(p for p in path.glob(pattern) if p.is_file() and not p.name.startswith("."))


def _index_safetensors(files: list[Path], field: str) -> dict[str, TensorMeta]:
    tensors: dict[str, TensorMeta] = {}
    for file in files:
        try:
            entries, data_start, _ = read_header(file)
        except HeaderError as exc:
            raise CheckpointError(f"{field}.model", f"{file} is not a valid safetensors file ({exc})",
                                  "download the checkpoint again") from None
        for name, e in entries.items():
            tensors[name] = TensorMeta(name, file, e.dtype, e.shape, data_start + e.begin, data_start + e.end)
    return tensors


def _index_pickle(files: tuple[Path, ...], field: str) -> dict[str, TensorMeta]:
    """Where each tensor of torch zip-format pickle shards lies, found without reading any tensor data.

    The shard's pickle is run by torch's weights-only unpickler onto the meta device, which records each
    storage's byte offset inside the (uncompressed) zip archive; reads then pread those bytes.
    """
    tensors: dict[str, TensorMeta] = {}
    for file in files:
        try:
            shard = torch.load(file, map_location="meta", weights_only=True)
            legacy = not zipfile.is_zipfile(file)
            foreign = None if legacy else _foreign_byteorder(file)
        except Exception as exc:
            refused = _refusal(exc)
            if refused:
                raise CheckpointError(f"{field}.model", f"{file} was refused: it asks to load something that is not "
                                      f"a tensor ({refused}), which a weights file never needs, so it may be "
                                      "malicious", "do not load it; use a safetensors copy from a source you trust"
                                      ) from None
            raise CheckpointError(f"{field}.model", f"{file} could not be read ({type(exc).__name__})",
                                  "download the checkpoint again") from None
        if legacy:
            raise CheckpointError(f"{field}.model", f"{file} is in torch's legacy (not zip) format, whose tensors "
                                  "cannot be read one at a time", "re-save it with torch.save from torch 1.6 "
                                  "or later, or convert it to safetensors")
        if foreign:
            raise CheckpointError(f"{field}.model", f"{file} was saved on a {foreign}-endian machine",
                                  "convert it to safetensors on such a machine, or use a safetensors copy")
        if not isinstance(shard, dict):
            raise CheckpointError(f"{field}.model", f"{file} could not be read (it holds no name -> tensor map)",
                                  "download the checkpoint again")
        size = file.stat().st_size
        for name, tensor in shard.items():
            tensors[name] = _pickle_meta(name, file, tensor, size, field)
    return tensors


def _pickle_meta(name: str, file: Path, tensor: Any, file_size: int, field: str) -> TensorMeta:
    """Where one meta-device tensor of a pickle shard lies (torch records its storage's file offset)."""
    storage = tensor.untyped_storage() if isinstance(tensor, torch.Tensor) else None
    offset = getattr(storage, "_checkpoint_offset", None)
    if not isinstance(offset, int) or offset < 0 or offset + storage.nbytes() > file_size:
        raise CheckpointError(f"{field}.model", f"{file} could not be read (entry {name!r} is not a tensor "
                              "stored in the file)", "download the checkpoint again")
    size = tensor.element_size()
    start = offset + tensor.storage_offset() * size
    stride = None if tensor.is_contiguous() else tuple(tensor.stride())
    stop = start + tensor.numel() * size
    return TensorMeta(name, file, tensor.dtype, tuple(tensor.shape), start, stop, stride)


def _foreign_byteorder(file: Path) -> str | None:
    """The byte order a torch zip archive was saved in, when it is not this machine's (None when it is)."""
    with zipfile.ZipFile(file) as archive:
        record = next((n for n in archive.namelist() if n.endswith("/byteorder") and n.count("/") == 1), None)
        order = archive.read(record).decode(errors="replace").strip() if record else sys.byteorder
    return None if order == sys.byteorder else order[:10]


def _refusal(exc: Exception) -> str | None:
    """What torch's weights-only unpickler refused (e.g. "Trying to load unsupported GLOBAL posix.system ..."),
    or None when `exc` is not such a refusal (a damaged file, say)."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    lines = [line.strip() for line in str(exc).splitlines()]
    return next((line[:160] for line in lines if "unsupported" in line.lower()), None)


def _local_identity(path: Path, weight_files: list[Path]) -> dict[str, Any]:
    """A fingerprint of a local checkpoint for the recipe hash.

    Small checkpoints (<= 256 MiB of weights) are hashed by content (memoised per file), so copies
    on other machines hash alike. Larger ones use each file's size and mtime plus a hash of the index and of every
    safetensors header, which is cheap and changes whenever the files are rewritten.
    """
    total = sum(f.stat().st_size for f in weight_files)
    digest = hashlib.sha256()
    config = path / "config.json"
    digest.update(config.read_bytes())
    if total <= CONTENT_HASH_LIMIT:
        for file in weight_files:
            digest.update(f"{file.name}\0{file_digest(file)}".encode())
        return {"source": "local", "content_sha256": digest.hexdigest()}
    stats = []
    for index in WEIGHT_INDEXES:
        if (path / index).is_file():
            digest.update((path / index).read_bytes())
    for file in weight_files:
        stat = file.stat()
        stats.append([file.name, stat.st_size, int(stat.st_mtime)])
        if file.suffix == ".safetensors":
            with open(file, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                digest.update(handle.read(length))
    return {"source": "local", "files": stats, "header_sha256": digest.hexdigest()}


def itemsize(dtype: torch.dtype) -> int:
    """Bytes per element of `dtype`."""
    return torch.empty((), dtype=dtype).element_size()


def dtype_name(dtype: torch.dtype) -> str:
    """'bfloat16' for torch.bfloat16."""
    return str(dtype).removeprefix("torch.")


def is_weight_file(name: str) -> bool:
    """True for weight shards and their index files."""
    return name.endswith(WEIGHT_SUFFIXES) or name in WEIGHT_INDEXES
