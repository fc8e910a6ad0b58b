"""The header of a safetensors file, read and checked as the format requires before any byte is trusted.

The format (https://huggingface.co/docs/safetensors): 8 bytes little-endian header length N, N bytes of
UTF-8 JSON (an object: tensor name -> {dtype, shape, data_offsets}, plus an optional `__metadata__`
map of strings to strings), then the data section. Offsets are relative to the data section; every
tensor's byte range is exactly its element count times its dtype's size, and the ranges tile the data
section with neither holes nor overlaps. A header that breaks any rule is refused here, naming the
tensor, so that no tensor is ever read from another tensor's bytes, from the header or past the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
SAFETENSORS_NAMES = {v: k for k, v in SAFETENSORS_DTYPES.items()}
MAX_HEADER_BYTES = 100 * 1024**2  # the safetensors library's own limit
ENTRY_KEYS = {"dtype", "shape", "data_offsets"}


class HeaderError(ValueError):
    """A safetensors header that breaks the format; the message names the tensor when one is at fault."""


@dataclass(frozen=True)
class HeaderEntry:
    """One tensor of a header: dtype, shape and byte range within the data section."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(file: Path) -> tuple[dict[str, HeaderEntry], int, dict[str, Any]]:
    """The checked tensors of a safetensors file, the offset where its data section begins and the raw
    JSON header (for hashing). Raises HeaderError for anything the format forbids."""
    size = os.stat(file).st_size
    with open(file, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise HeaderError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise HeaderError(f"header length {length} exceeds the file (truncated?)")
        blob = handle.read(length)
    try:
        header = json.loads(blob.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise HeaderError("header is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise HeaderError(f"header is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    return check_header(header, size - 8 - length), 8 + length, header


def check_header(header: dict[str, Any], data_bytes: int) -> dict[str, HeaderEntry]:
    """The header's tensors when they obey the format within a data section of `data_bytes`, else HeaderError."""
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise HeaderError("__metadata__ is not a map of strings to strings")
    entries = {name: _entry(name, info) for name, info in header.items() if name != "__metadata__"}
    cursor = 0
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin != cursor:
            what = "overlaps the tensor before it" if entry.begin < cursor else "leaves a hole before it"
            raise HeaderError(f"tensor {entry.name}: byte range [{entry.begin}, {entry.end}] {what}")
        cursor = entry.end
    if cursor != data_bytes:
        raise HeaderError(f"tensors cover {cursor} bytes of a data section of {data_bytes} (truncated or padded?)")
    return entries


def _entry(name: str, info: Any) -> HeaderEntry:
    if not isinstance(info, dict) or set(info) != ENTRY_KEYS:
        raise HeaderError(f"tensor {name}: entry is not {{dtype, shape, data_offsets}}")
    dtype = SAFETENSORS_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise HeaderError(f"tensor {name}: dtype {info['dtype']!r} is not one of {', '.join(SAFETENSORS_DTYPES)}")
    shape, offsets = info["shape"], info["data_offsets"]
    if not isinstance(shape, list) or not all(_natural(d) for d in shape):
        raise HeaderError(f"tensor {name}: shape {shape!r} is not a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_natural(o) for o in offsets):
        raise HeaderError(f"tensor {name}: data_offsets {offsets!r} are not two non-negative integers")
    begin, end = offsets
    if begin > end:
        raise HeaderError(f"tensor {name}: data_offsets [{begin}, {end}] begin after they end")
    expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if end - begin != expected:
        raise HeaderError(f"tensor {name}: byte range [{begin}, {end}] holds {end - begin} bytes, "
                          f"shape {shape} of {info['dtype']} needs {expected}")
    return HeaderEntry(name, dtype, tuple(shape), begin, end)


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise HeaderError(f"tensor {key}: named twice in the header")
        out[key] = value
    return out


def _no_constant(name: str) -> None:
    raise HeaderError(f"header holds {name}, which is not JSON")
