"""Sweeps and layer analysis: in-place re-merging is exact, knockouts restore bit for bit, statistics
match an independent computation, a sweep resumes after a kill, and the figures open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from harness_ext.layers import knockout_analysis, write_outputs
from harness_ext.remerge import InPlaceMerger
from harness_ext.sweep import parse_grid
from merge_models.executor import merge_state_dict
from merge_models.plan import build_plan
from merge_models.recipe import parse_recipe
from merge_models.stats import task_vector_stats

ROOT = Path(__file__).resolve().parents[1]


def _recipe(family, **extra) -> dict:
    return {"name": "tiny-ta", "vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base),
            "sources": [{"model": str(family.reasoning), "weight": 0.5}], "method": "task_arithmetic", **extra}


def _language(merger: InPlaceMerger) -> dict[str, torch.Tensor]:
    return {c: merger.parameter(c).clone() for c in merger.vlm.canonical_map}


def test_grid_ranges_are_exact_and_inclusive():
    grid = parse_grid(["lambda=0.1:1.0:0.1", "method=linear,ties"])
    assert grid["lambda"] == [round(0.1 * i, 1) for i in range(1, 11)]
    assert grid["method"] == ["linear", "ties"]


def test_in_place_remerge_equals_a_fresh_merge_in_any_order(tiny_family):
    family = tiny_family("qwen2_vl")
    first, second = parse_recipe(_recipe(family, **{"lambda": 0.3})), parse_recipe(_recipe(family, layers=[1, 2]))
    merger = InPlaceMerger(first)
    merger.apply(first)
    merger.apply(second)
    fresh = merge_state_dict(build_plan(second))
    for canonical, name in merger.vlm.canonical_map.items():
        assert torch.equal(merger.parameter(canonical), fresh[name]), canonical


def test_knockouts_change_weights_then_restore_them_bit_for_bit(tiny_family, tmp_path):
    family = tiny_family("qwen2_vl")
    recipe = parse_recipe(_recipe(family))
    merger = InPlaceMerger(recipe)
    before = _language(merger)
    merged = {}
    merger.apply(recipe)
    merged.update(_language(merger))
    seen = []

    def fake_scores(m: InPlaceMerger) -> dict[str, dict[str, bool]]:
        """Verdicts on 10 documents per split that move with the weights, so every knockout registers."""
        total = sum(float(m.parameter(c).double().abs().sum()) for c in m.vlm.canonical_map)
        seen.append(total)
        return {split: {f"doc{d}": d < round(10 * fraction) for d in range(10)}
                for split, fraction in (("perception", total % 1.0), ("reasoning", (total * 7) % 1.0))}

    result = knockout_analysis(recipe, fake_scores, ["attn", "mlp"], "zero-delta", merger=merger, log=lambda _: None)
    assert len(seen) == 2 * (1 + 4 * 2)
    assert len(set(seen)) > 10, "each knockout changes the weights"
    assert result.drops["merged"]["perception"].shape == (4, 2)
    assert result.n == {"VLM": {"perception": 10, "reasoning": 10}, "merged": {"perception": 10, "reasoning": 10}}
    for model, splits in result.drops.items():
        for split, drops in splits.items():
            low, high = result.lows[model][split], result.highs[model][split]
            assert (low <= drops + 1e-9).all() and (drops <= high + 1e-9).all(), (model, split)
    after = _language(merger)
    assert all(torch.equal(before[c], after[c]) for c in before), "the VLM's weights come back exactly"
    merger.apply(recipe)
    assert all(torch.equal(merged[c], merger.parameter(c)) for c in merged)

    paths = write_outputs(result, tmp_path, "test")
    with Image.open(paths["png"]) as image:
        assert image.size[0] > 200 and image.size[1] > 200
    rows = paths["csv"].read_text().splitlines()
    assert rows[0] == "model,split,layer,module,drop_points,low_points,high_points,n" and len(rows) == 1 + 2 * 2 * 4 * 2
    assert all(row.endswith(",10") for row in rows[1:])


def test_a_knockout_drop_on_three_documents_has_a_wide_interval():
    """A +66.7-point drop from 3 documents: its paired interval spans from no drop to the whole range."""
    import numpy as np

    from harness_ext.layers import paired_drop

    intact = {"a": True, "b": True, "c": True}
    drop, low, high = paired_drop(intact, {"a": True, "b": False, "c": False}, np.random.default_rng(0))
    assert drop == pytest.approx(200 / 3) and low == pytest.approx(0.0) and high == pytest.approx(100.0)
    drop, low, high = paired_drop(intact, {"a": True, "b": True, "c": True, "d": False}, np.random.default_rng(0))
    assert (drop, low, high) == (0.0, 0.0, 0.0), "on the documents both have"


def test_stats_match_an_independent_computation(tiny_family):
    family = tiny_family("qwen2_vl")
    plan = build_plan(parse_recipe(_recipe(family)))
    rows = {(r.layer, r.module): r for r in task_vector_stats(plan, ["attn", "mlp"])}
    vlm, base, src = (load_file(p / "model.safetensors") for p in (family.vlm, family.base, family.reasoning))
    merged = merge_state_dict(plan)
    changes = {}
    for layer in range(4):
        for module, pattern in (("attn", "self_attn."), ("mlp", "mlp.")):
            keys = [k for k in vlm if k.startswith(f"model.layers.{layer}.") and pattern in k]
            tau_v = torch.cat([(vlm[k] - base[k]).reshape(-1) for k in keys]).double()
            tau_s = torch.cat([(src[k] - base[k]).reshape(-1) for k in keys]).double()
            row = rows[(layer, module)]
            assert row.tau_norms[0] == pytest.approx(float(tau_v.norm()), rel=1e-5)
            assert row.tau_norms[1] == pytest.approx(float(tau_s.norm()), rel=1e-5)
            cosine = float(tau_v @ tau_s / (tau_v.norm() * tau_s.norm()))
            assert row.cosine[0] == pytest.approx(cosine, abs=1e-5)
            both = (tau_v != 0) & (tau_s != 0)
            conflict = float(((tau_v.sign() != tau_s.sign()) & both).sum() / both.sum())
            assert row.sign_conflict[0] == pytest.approx(conflict, abs=1e-6)
            changes[(layer, module)] = sum(float((merged[k] - vlm[k]).double().square().sum()) for k in keys)
    total = sum(changes.values())
    for key, change in changes.items():
        assert rows[key].change_share == pytest.approx(change / total, rel=1e-4)


def _children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.exists() else []


def test_sweep_resumes_after_a_kill_and_plots(tiny_family, write_recipe, tmp_path):
    family = tiny_family("qwen2_vl")
    recipe = write_recipe(_recipe(family))
    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "harness_ext.cli", "sweep", str(recipe), "--grid", "lambda=0.2:0.6:0.2",
               "--tasks", "mvlm_probe_reasoning", "--limit", "2", "--out", str(out)]
    store = tmp_path / "results"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MERGED_VLM_RESULTS=str(store))
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while len(_children(out)) < 1:
        assert process.poll() is None and time.time() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = _children(out)
    assert 1 <= len(finished) < 3, "killed after the first variant"

    rerun = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert rerun.stdout.count("already done") == len(finished), "finished variants are not redone"
    assert len(_children(out)) == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".partial-")], "no half-written variant is left"
    with Image.open(out / "sweep.png") as image:
        assert image.size[0] > 300
    assert len(list((store / "local/runs").glob("*.json"))) == 3, "every variant is recorded once, locally"
    assert not (store / "runs").exists(), "a --limit sweep leaves the committed record alone"
    table = rerun.stdout[rerun.stdout.index("sweep of"):]
    assert "probe_reasoning" in table and "reasoning (split)" in table and "n=2" in table, table
    assert all(f"lambda={value}" in table for value in ("0.2", "0.4", "0.6")), table


def test_layer_statistics_of_a_linear_recipe_that_names_its_base(run_cli, tmp_path):
    """`merged-vlm layers recipes/tiny-world.yaml --stats`: linear does not use the base, the statistics do."""
    code, out, err = run_cli("layers", str(ROOT / "recipes/tiny-world.yaml"), "--stats", "--out", tmp_path)
    assert code == 0, err
    rows = (tmp_path / "task_vector_stats.csv").read_text().splitlines()
    assert rows[0].startswith("layer,module,|tau_vlm|,|tau_src0|") and len(rows) == 1 + 4 * 2
