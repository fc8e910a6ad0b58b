"""The merge cache: hits skip the work, concurrent processes merge once, kills leave no entry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tiny_checkpoints import TinySizes, build_family, linear_recipe

from merge_models.cache import cached_checkpoint
from merge_models.plan import build_plan
from merge_models.recipe import parse_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_second_merge_is_a_cache_hit(tiny_family, monkeypatch):
    family = tiny_family("qwen2_vl")
    plan = build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning)))
    path, hit = cached_checkpoint(plan)
    assert not hit and (path / "model.safetensors").is_file()

    import merge_models.cache as cache

    def no_merging(*args, **kwargs):
        raise AssertionError("a cache hit must not merge")

    monkeypatch.setattr(cache, "write_checkpoint", no_merging)
    again, hit = cached_checkpoint(build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning))))
    assert hit and again == path


def test_changed_field_changes_hash_but_name_does_not(tiny_family):
    family = tiny_family("qwen2_vl")
    recipe = linear_recipe(family.vlm, family.reasoning)
    first = build_plan(parse_recipe(recipe)).recipe_hash
    assert build_plan(parse_recipe(recipe | {"name": "renamed"})).recipe_hash == first
    assert build_plan(parse_recipe(recipe | {"seed": 1})).recipe_hash != first
    assert build_plan(parse_recipe(recipe | {"vlm": {"model": str(family.vlm), "weight": 0.8},
                                             "sources": [{"model": str(family.reasoning),
                                                          "weight": 0.2}]})).recipe_hash != first


def test_a_named_base_is_recorded_even_when_the_method_does_not_use_it(tiny_family):
    """linear ignores `base`, so it leaves the hash alone; the record still says which base was named."""
    family = tiny_family("qwen2_vl")
    recipe = linear_recipe(family.vlm, family.reasoning)
    without = build_plan(parse_recipe(recipe))
    named = build_plan(parse_recipe(recipe | {"base": str(family.base)}))
    assert named.recipe_hash == without.recipe_hash
    record = named.record()
    assert set(record["inputs"]) == {"vlm", "base", "sources[0]"}
    arithmetic = recipe | {"base": str(family.base), "method": "task_arithmetic"}
    assert record["inputs"]["base"] == build_plan(parse_recipe(arithmetic)).base.identity
    assert all(not ref["model"].startswith("/") for ref in [record["recipe"]["vlm"], record["recipe"]["base"],
                                                            *record["recipe"]["sources"]])


def test_merged_checkpoint_card_and_recipe_name_no_absolute_path(tiny_family):
    family = tiny_family("qwen2_vl")
    recipe = linear_recipe(family.vlm, family.reasoning, base=str(family.base))
    path, _ = cached_checkpoint(build_plan(parse_recipe(recipe)))
    for name in ("README.md", "merge_recipe.yaml", "merge_manifest.json"):
        text = (path / name).read_text()
        assert str(family.vlm.parent) not in text and str(Path.home()) not in text, name


def test_corrupted_entry_is_detected_and_rebuilt(tiny_family):
    family = tiny_family("qwen2_vl")
    path, _ = cached_checkpoint(build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning))))
    shard = path / "model.safetensors"
    shard.write_bytes(shard.read_bytes()[:-16])
    again, hit = cached_checkpoint(build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning))))
    assert not hit and again == path
    assert shard.stat().st_size > 0


def _merge_process(recipe: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness_ext.cli", "merge", str(recipe), "--quiet", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_two_processes_merge_once(tiny_family, write_recipe, isolated_cache):
    family = tiny_family("qwen2_vl")
    recipe = write_recipe(linear_recipe(family.vlm, family.reasoning))
    env = dict(os.environ)
    procs = [_merge_process(recipe, env) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sorted(line.split(":")[0] for line in outputs) == ["cache hit", "merged"], outputs
    assert len([p for p in isolated_cache.iterdir() if p.is_dir()]) == 1


def test_killed_merge_leaves_no_entry_and_next_run_succeeds(tmp_path, write_recipe, isolated_cache):
    # Large enough (about 20M parameters, TIES) that the write lasts long enough to be killed mid-way.
    family = build_family("qwen2_vl", tmp_path, sizes=TinySizes(hidden=512, layers=8, heads=8, intermediate=1024))
    recipe = write_recipe({"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base),
                           "sources": [{"model": str(family.reasoning), "weight": 0.5}], "method": "ties",
                           "density": 0.3})
    proc = _merge_process(recipe, dict(os.environ))
    deadline = time.time() + 120
    while not any((p / "model.safetensors").exists() for p in _children(isolated_cache) if p.name.startswith(".tmp-")):
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    entries = [p for p in _children(isolated_cache) if p.is_dir() and not p.name.startswith(".")]
    assert entries == [], "a killed merge must not publish a cache entry"

    done = _merge_process(recipe, dict(os.environ))
    out, err = done.communicate(timeout=240)
    assert done.returncode == 0 and out.startswith("merged"), err
    assert not any(p.name.startswith(".tmp-") for p in _children(isolated_cache)), "stale temp dirs are cleaned"


def _children(path: Path) -> list[Path]:
    return list(path.iterdir()) if path.exists() else []


def test_flipped_tensor_bytes_are_not_served_but_merged_again(tiny_family, caplog):
    """Same size, same header, 4 KiB of one tensor's bytes changed: the entry is re-merged, with a warning."""
    from safetensors.torch import load_file

    family = tiny_family("qwen2_vl")
    path, _ = cached_checkpoint(build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning))))
    shard = path / "model.safetensors"
    good = load_file(shard)["lm_head.weight"].clone()
    meta = next(m for m in _index(shard) if m.name == "lm_head.weight")
    assert meta.nbytes >= 4096
    with open(shard, "r+b") as handle:
        handle.seek(meta.start)
        flipped = bytes(b ^ 0xFF for b in handle.read(4096))
        handle.seek(meta.start)
        handle.write(flipped)
    assert not load_file(shard)["lm_head.weight"].equal(good)
    with caplog.at_level("WARNING", logger="merged_vlm"):
        again, hit = cached_checkpoint(build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning))))
    assert not hit and again == path
    assert load_file(shard)["lm_head.weight"].equal(good)
    warnings = [r.getMessage() for r in caplog.records if "merge cache" in r.getMessage()]
    assert len(warnings) == 1 and "model.safetensors content differs" in warnings[0], warnings


def test_publish_flushes_files_and_folders_before_and_after_the_rename(tmp_path, monkeypatch):
    from merge_models import cache

    synced: list[tuple[str, bool]] = []
    real = os.fsync

    def recording(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        synced.append((target.name, (tmp_path / "entry").exists()))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)

    def build(folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(b"x" * 10)
        (folder / "config.json").write_text("{}")

    cache.publish(tmp_path / "entry", build)
    before = {name for name, published in synced if not published}
    assert {"model.safetensors", "config.json"} <= before and any(n.startswith(".tmp-entry") for n in before)
    assert synced[-1] == (tmp_path.name, True), "the parent folder is flushed after the rename"


def _index(shard: Path):
    from merge_models.checkpoint import _index_safetensors

    return _index_safetensors([shard], "cache").values()
