"""A safetensors file written tensor by tensor, with its layout fixed before the first byte.

The `safetensors` library writes a file from a complete dict of tensors, which would hold a
whole shard in memory. Knowing every name, dtype and shape from the merge plan, we write the
header first and then each tensor's bytes at its offset, so memory stays at one tensor.
The files are read back with the `safetensors` library itself. With `digest`, the writer hashes the
bytes it writes in file order as they pass (xxh3-128), so a shard's content digest costs no re-read
of the file unless its tensors were written out of order (then the rest is read back at close).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
import xxhash

from merge_models.checkpoint import itemsize
from merge_models.content_digest import READ_BYTES, content_digest
from merge_models.safetensors_header import SAFETENSORS_NAMES


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a tensor, without a copy when it is contiguous."""
    flat = tensor.detach().reshape(-1)
    if not flat.is_contiguous():
        flat = flat.contiguous()
    return memoryview(flat.view(torch.uint8).numpy())


class ShardWriter:
    """Writes one safetensors file; `entries` fixes the order and sizes of its tensors."""

    def __init__(self, path: Path, entries: list[tuple[str, torch.dtype, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None, digest: bool = False) -> None:
        header: dict[str, object] = {"__metadata__": {"format": "pt", **(metadata or {})}}
        self.offsets: dict[str, tuple[int, int]] = {}
        cursor = 0
        for name, dtype, shape in entries:
            count = 1
            for size in shape:
                count *= size
            nbytes = count * itemsize(dtype)
            header[name] = {"dtype": SAFETENSORS_NAMES[dtype], "shape": list(shape),
                            "data_offsets": [cursor, cursor + nbytes]}
            self.offsets[name] = (cursor, cursor + nbytes)
            cursor += nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        self.data_start = 8 + len(blob)
        self.size = self.data_start + cursor
        self.path = path
        self.unwritten = dict((name, stop - start) for name, (start, stop) in self.offsets.items())
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._hasher = xxhash.xxh3_128() if digest else None
        self._hashed = 0  # the bytes before this position have been hashed, in order
        self.digest: str | None = None  # set by close() when hashing
        self._write_at(memoryview(struct.pack("<Q", len(blob)) + blob), 0)
        # the file grows as tensors are written, in order (a file truncated to its size first is slower to fill)

    def write(self, name: str, data: memoryview, offset: int = 0) -> None:
        """Write bytes of a tensor at `offset` within its place in the file (whole or in pieces)."""
        start, stop = self.offsets[name]
        if offset < 0 or offset + data.nbytes > stop - start:
            raise ValueError(f"{name}: bytes {offset}..{offset + data.nbytes} lie outside its {stop - start}")
        self._write_at(data.cast("B"), self.data_start + start + offset)
        self.unwritten[name] -= data.nbytes

    def _write_at(self, view: memoryview, position: int) -> None:
        if self._hasher is not None and position == self._hashed:
            self._hasher.update(view)
            self._hashed += view.nbytes
        while view.nbytes:
            written = os.pwrite(self.fd, view, position)
            view, position = view[written:], position + written

    def copy_range(self, name: str, source: Path, source_start: int) -> None:
        """Copy a tensor's bytes straight from another file (same dtype): in the kernel where possible,
        through a buffer when the kernel cannot or when they are next to be hashed."""
        start, stop = self.offsets[name]
        remaining, src_pos, dst_pos = stop - start, source_start, self.data_start + start
        buffered = self._hasher is not None and dst_pos == self._hashed
        with open(source, "rb") as handle:
            src_fd = handle.fileno()
            while remaining:
                moved = None
                if not buffered:
                    try:
                        moved = os.copy_file_range(src_fd, self.fd, remaining, src_pos, dst_pos)
                    except OSError:
                        pass
                if moved is None:
                    data = os.pread(src_fd, min(remaining, READ_BYTES), src_pos)
                    self._write_at(memoryview(data), dst_pos)
                    moved = len(data)
                if moved == 0:
                    raise OSError(f"{source} ended before tensor {name} was copied")
                remaining, src_pos, dst_pos = remaining - moved, src_pos + moved, dst_pos + moved
        self.unwritten[name] = 0

    def close(self) -> None:
        """Close the file (and set `digest` when hashing); raises if any tensor of the layout was never written."""
        os.ftruncate(self.fd, self.size)  # already its size when every tensor was written
        os.close(self.fd)
        missing = sorted(name for name, left in self.unwritten.items() if left)
        if missing:
            raise RuntimeError(f"{self.path.name}: tensors not fully written: {missing[:3]}")
        if self._hasher is not None:
            self.digest = content_digest(self.path, self._hashed, self._hasher)
