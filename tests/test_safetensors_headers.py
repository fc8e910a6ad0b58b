"""Safetensors headers are checked as the format requires: a header that lies about where a tensor's bytes
are is refused with one line naming the file and the tensor, never read from the wrong bytes."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from merge_models.checkpoint import _index_safetensors
from merge_models.errors import CheckpointError


def _split(file: Path) -> tuple[dict, bytes]:
    raw = file.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + length]), raw[8 + length:]


def _join(file: Path, header: dict | bytes, data: bytes, length_delta: int = 0) -> None:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", max(len(blob) + length_delta, 0)) + blob + data)


def _damaged_vlm(family, tmp_path: Path, damage) -> tuple[Path, str]:
    vlm = tmp_path / "vlm"
    shutil.copytree(family.vlm, vlm)
    shard = vlm / "model.safetensors"
    header, data = _split(shard)
    name = next(n for n, info in header.items() if n != "__metadata__" and info["shape"] and info["shape"][0] > 1)
    damage(header[name])
    _join(shard, header, data)
    return vlm, name


@pytest.mark.parametrize("damage", [
    pytest.param(lambda info: info.update(data_offsets=[-256, 0]), id="offsets into the header"),
    pytest.param(lambda info: info.update(data_offsets=[info["data_offsets"][0],
                                                        sum(info["data_offsets"]) // 2]), id="half a range"),
    pytest.param(lambda info: info.update(dtype="F8_E9M9"), id="unknown dtype"),
])
def test_a_header_that_lies_is_refused_naming_file_and_tensor(damage, tiny_family, tmp_path, write_recipe, run_cli,
                                                              isolated_cache):
    family = tiny_family("qwen2_vl")
    vlm, name = _damaged_vlm(family, tmp_path, damage)
    recipe = {"vlm": {"model": str(vlm), "weight": 0.9}, "method": "linear",
              "sources": [{"model": str(family.reasoning), "weight": 0.1}]}
    code, _, err = run_cli("merge", write_recipe(recipe), "--quiet")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "vlm.model" in lines[0] and "model.safetensors" in lines[0] and name in lines[0], lines[0]
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


# ---------------------------------------------------------------------------------------------------------
# Fuzz: every mutated header is refused with one line or reads exactly what the safetensors library reads.

ORIGINAL = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.arange(4).to(torch.bfloat16),
            "c": torch.tensor([7], dtype=torch.int64), "d": torch.zeros(0, 3, dtype=torch.float16)}
NAMES = sorted(ORIGINAL)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=4))
numbers = st.one_of(st.integers(-300, 300), st.integers(-2**66, 2**66), st.floats(-10, 10), st.booleans(), st.none())


@st.composite
def mutation(draw):
    """One change to the header dict, the data bytes, the length field or the header's JSON text."""
    name = draw(st.sampled_from([*NAMES, "__metadata__", "new"]))
    kind = draw(st.sampled_from(["offset", "shift", "shape", "dtype", "drop", "value", "key", "data", "length",
                                 "byte", "metadata", "swap"]))
    if kind == "offset":
        return kind, name, draw(st.integers(0, 1)), draw(numbers)
    if kind == "shift":
        return kind, name, draw(st.integers(-64, 64)), None
    if kind == "shape":
        return kind, name, draw(st.lists(numbers, max_size=3)), None
    if kind == "dtype":
        return kind, name, draw(st.sampled_from(["F32", "F16", "BF16", "I64", "I8", "U8", "BOOL", "F64", "I32",
                                                 "U16", "F8_E4M3", "f32", "", 3])), None
    if kind in ("value", "metadata"):
        return kind, name, draw(st.one_of(json_scalar, st.lists(json_scalar, max_size=3),
                                          st.dictionaries(st.text(max_size=3), json_scalar, max_size=3))), None
    if kind == "key":
        return kind, name, draw(st.sampled_from(["extra", "dtype", "shape", "data_offsets"])), draw(json_scalar)
    if kind == "data":
        return kind, name, draw(st.integers(-40, 40)), None
    if kind == "length":
        return kind, name, draw(st.integers(-8, 8)), None
    if kind == "byte":
        return kind, name, draw(st.integers(0, 400)), draw(st.integers(0, 255))
    return kind, name, draw(st.sampled_from(NAMES)), None


def _apply(changes, header: dict, data: bytes) -> tuple[dict | bytes, bytes, int]:
    length_delta, byte_flips = 0, []
    for kind, name, arg, extra in changes:
        info = header.setdefault(name, {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}) \
            if kind in ("offset", "shift", "shape", "dtype", "key") else header.get(name)
        if kind in ("offset", "shift", "shape", "dtype", "key") and not isinstance(info, dict):
            continue
        if kind == "offset" and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2:
            info["data_offsets"][arg] = extra
        elif kind == "shift" and isinstance(info.get("data_offsets"), list):
            info["data_offsets"] = [o + arg if isinstance(o, int) else o for o in info["data_offsets"]]
        elif kind in ("shape", "dtype"):
            info[kind] = arg
        elif kind == "key":
            info[arg] = extra
        elif kind == "drop":
            header.pop(name, None)
        elif kind in ("value", "metadata"):
            header["__metadata__" if kind == "metadata" else name] = arg
        elif kind == "data":
            data = data[:arg] if arg < 0 else data + bytes(arg)
        elif kind == "length":
            length_delta += arg
        elif kind == "byte":
            byte_flips.append((arg, extra))
        elif kind == "swap" and isinstance(header.get(name), dict) and isinstance(header.get(arg), dict):
            header[name]["data_offsets"], header[arg]["data_offsets"] = \
                header[arg].get("data_offsets"), header[name].get("data_offsets")
    if not byte_flips:
        return header, data, length_delta
    blob = bytearray(json.dumps(header).encode())
    for position, value in byte_flips:
        blob[position % len(blob)] = value
    return bytes(blob), data, length_delta


def _library_reads(file: Path) -> dict[str, torch.Tensor] | None:
    try:
        with safe_open(str(file), "pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    except SafetensorError:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(mutation(), min_size=1, max_size=3))
def test_mutated_headers_are_refused_or_read_as_the_library_reads_them(changes, tmp_path):
    good = tmp_path / "good.safetensors"
    if not good.exists():
        save_file(ORIGINAL, good, metadata={"format": "pt"})
    header, data = _split(good)
    blob, data, length_delta = _apply(changes, header, data)
    file = tmp_path / "mutated.safetensors"
    _join(file, blob, data, length_delta)
    try:
        tensors = _index_safetensors([file], "vlm")
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(file) in str(exc)
        return
    expected = _library_reads(file)
    assert expected is not None, f"the engine accepted a header the safetensors library refuses: {changes}"
    assert sorted(tensors) == sorted(expected)
    raw = file.read_bytes()
    for name, meta in tensors.items():
        want = expected[name]
        assert (meta.dtype, meta.shape) == (want.dtype, tuple(want.shape)), name
        assert raw[meta.start:meta.stop] == want.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes(), name
