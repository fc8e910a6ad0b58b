"""Merging to disk and checking a cache entry take memory flat in the size of the files: a pickle-only
source (MAmmoTH-7B-Mistral's layout) merges like safetensors, and shards are hashed through a buffer."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_checkpoints import TinySizes, build_family, build_pickle_only, linear_recipe

from merge_models.checkpoint import Checkpoint, _index_pickle
from merge_models.content_digest import ALGORITHM, content_digest
from merge_models.errors import CheckpointError
from merge_models.output import MANIFEST

# Language tensors of about 110 MB in float32, one pickle file: a merge that keeps the pages it read of
# the shard mapped peaks that much above the same merge from safetensors.
SIZES = TinySizes(hidden=512, layers=4, heads=8, kv_heads=4, intermediate=4096, vision_hidden=32)

# Plan first (hashing small inputs maps them whole, a bounded cost not measured here), then reset the
# process's peak RSS (Linux: /proc/self/clear_refs) and write the merge to disk as `merged-vlm merge --out`.
MERGE_PEAK = """
import sys
from pathlib import Path
from merge_models.output import write_checkpoint
from merge_models.plan import build_plan
from merge_models.recipe import load_recipe

def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

plan = build_plan(load_recipe(sys.argv[1]))
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS:")
out = Path(sys.argv[2])
out.mkdir()
write_checkpoint(plan, out, quiet=True, device="cpu")
print("RISE_KIB", status("VmHWM:") - before)
"""

# The peak RSS rise of hashing a file as a cache hit checks it.
DIGEST_PEAK = """
import sys
from pathlib import Path
from merge_models.content_digest import content_digest

def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))

Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS:")
content_digest(Path(sys.argv[1]))
print("RISE_KIB", status("VmHWM:") - before)
"""


def _rise_mib(*args: str) -> float:
    """How far a fresh process running `python -c *args` raised its peak RSS, in MiB (it prints RISE_KIB)."""
    done = subprocess.run([sys.executable, "-c", *args], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RISE_KIB"))
    return int(line.split()[1]) / 1024


def _merge_rise_mib(recipe: dict, tmp_path: Path, tag: str) -> float:
    """Write a recipe's merge to disk in a fresh process; how far its peak RSS rose from its start, in MiB."""
    recipe_file = tmp_path / f"{tag}.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    return _rise_mib(MERGE_PEAK, str(recipe_file), str(tmp_path / f"out-{tag}"))


def _can_reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@pytest.mark.usefixtures("isolated_cache")
@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux's /proc/self/clear_refs to reset the peak RSS")
def test_pickle_only_source_peaks_no_higher_than_safetensors(tmp_path):
    family = build_family("llava", tmp_path / "trio", sizes=SIZES)
    pickled = build_pickle_only(family.reasoning, tmp_path / "pickled", added_tokens=(), shards=1)
    shard_mib = (pickled / "pytorch_model.bin").stat().st_size / 1024**2
    assert shard_mib > 100
    safetensors_rise = _merge_rise_mib(linear_recipe(family.vlm, family.reasoning), tmp_path, "safetensors")
    pickle_rise = _merge_rise_mib(linear_recipe(family.vlm, pickled, allow_pickle=True), tmp_path, "pickle")
    # Mapped reads kept every page of the shard they touched: about shard_mib above the safetensors merge.
    print(f"peak RSS rise: pickle {pickle_rise:.0f} MiB, safetensors {safetensors_rise:.0f} MiB, "
          f"shard {shard_mib:.0f} MiB")
    assert pickle_rise < safetensors_rise + shard_mib / 3, (pickle_rise, safetensors_rise, shard_mib)


@pytest.mark.usefixtures("isolated_cache")
@pytest.mark.skipif(not _can_reset_peak(), reason="needs Linux's /proc/self/clear_refs to reset the peak RSS")
def test_writing_and_checking_a_shard_does_not_hold_it_in_memory(tmp_path):
    """The content digest recorded for each shard, and checked on every cache hit, is taken without
    keeping the shard's pages resident: at real size one shard is 4-5 GB."""
    family = build_family("llava", tmp_path / "trio", sizes=dataclasses.replace(SIZES, layers=12))
    recipe = linear_recipe(family.vlm, family.reasoning)
    recipe["dtype"] = "float32"
    rise = _merge_rise_mib(recipe, tmp_path, "merge")
    shard = tmp_path / "out-merge" / "model.safetensors"
    shard_mib = shard.stat().st_size / 1024**2
    assert shard_mib > 300
    manifest = json.loads((tmp_path / "out-merge" / MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"][ALGORITHM] == content_digest(shard)
    check_rise = _rise_mib(DIGEST_PEAK, str(shard))
    print(f"peak RSS rise: merge {rise:.0f} MiB, digest check {check_rise:.0f} MiB, shard {shard_mib:.0f} MiB")
    # A mapped read-back of the shard, or of its cache check, would add about shard_mib to each.
    assert check_rise < 32 and rise < shard_mib / 2, (check_rise, rise, shard_mib)


def test_pickle_tensors_saved_as_views_read_back_exactly(tmp_path):
    """Tensors torch.save wrote as transposed, sliced or shared views read back value for value, whole and
    in element ranges, as a merge reads them."""
    grid = torch.randn(6, 8)
    saved = {"whole": grid, "transposed": grid.t(), "rows": grid[2:5], "strided": grid[1:4, ::3],
             "half": torch.arange(10, dtype=torch.bfloat16), "empty": torch.empty(0, 3)}
    file = tmp_path / "pytorch_model.bin"
    torch.save(saved, file)
    checkpoint = Checkpoint("sources[0]", tmp_path, {}, None, _index_pickle((file,), "sources[0]"), None, (file,))
    try:
        for name, want in saved.items():
            assert torch.equal(checkpoint.read(name), want), name
            flat, size = want.reshape(-1), want.element_size()
            for start in range(0, want.numel(), 4):
                count = min(4, want.numel() - start)
                got = checkpoint.read_into(name, start, torch.empty(count * size, dtype=torch.uint8))
                assert torch.equal(got, flat[start:start + count].contiguous().view(torch.uint8)), (name, start)
    finally:
        checkpoint.close()


def test_a_legacy_format_pickle_is_refused_in_one_line(tmp_path):
    file = tmp_path / "pytorch_model.bin"
    torch.save({"weight": torch.randn(3, 4)}, file, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as refused:
        _index_pickle((file,), "sources[0]")
    message = str(refused.value)
    assert "legacy" in message and "torch.save" in message and "\n" not in message
