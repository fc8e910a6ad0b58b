"""A pickle-only source (MAmmoTH-7B-Mistral's layout) merges in memory flat in its size, as safetensors does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny_checkpoints import TinySizes, build_family, build_pickle_only, linear_recipe

# Language tensors of about 110 MB in float32, one pickle file: a merge that keeps the pages it read of
# the shard mapped peaks that much above the same merge from safetensors.
SIZES = TinySizes(hidden=512, layers=4, heads=8, kv_heads=4, intermediate=4096, vision_hidden=32)

MERGE_PEAK = """
import resource, sys
from harness_ext.cli import main
sys.argv = ["merged-vlm", "merge", sys.argv[1], "--out", sys.argv[2], "--quiet"]
try:
    main()
finally:
    print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _merge_peak_mib(recipe: dict, tmp_path: Path, tag: str) -> float:
    """Run `merged-vlm merge RECIPE --out DIR` in a fresh process; its peak RSS in MiB."""
    recipe_file = tmp_path / f"{tag}.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    done = subprocess.run([sys.executable, "-c", MERGE_PEAK, str(recipe_file), str(tmp_path / f"out-{tag}")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stderr.splitlines() if line.startswith("PEAK_KIB"))
    return int(line.split()[1]) / 1024


@pytest.mark.usefixtures("isolated_cache")
def test_pickle_only_source_peaks_no_higher_than_safetensors(tmp_path):
    family = build_family("llava", tmp_path / "trio", sizes=SIZES)
    pickled = build_pickle_only(family.reasoning, tmp_path / "pickled", added_tokens=(), shards=1)
    shard_mib = (pickled / "pytorch_model.bin").stat().st_size / 1024**2
    assert shard_mib > 100
    safetensors_peak = _merge_peak_mib(linear_recipe(family.vlm, family.reasoning), tmp_path, "safetensors")
    pickle_peak = _merge_peak_mib(linear_recipe(family.vlm, pickled, allow_pickle=True), tmp_path, "pickle")
    # The old mapped reads peaked about shard_mib above the safetensors merge; bounded reads stay level with it.
    assert pickle_peak < safetensors_peak + shard_mib / 3, (pickle_peak, safetensors_peak, shard_mib)
