"""Bad recipes and bad checkpoints: one line naming the field, exit status 2, nothing in the cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file


def _good(family) -> dict:
    return {"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base), "method": "ties",
            "sources": [{"model": str(family.reasoning), "weight": 0.5, "density": 0.5}]}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _assert_refused(run_cli, recipe_path, field: str, cache: Path, command: str = "merge") -> str:
    code, out, err = run_cli(command, recipe_path, "--quiet")
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2, (out, err)
    assert len(lines) == 1, err
    assert field in lines[0], lines[0]
    assert not cache.exists() or not any(cache.iterdir()), "nothing may be left in the cache"
    return lines[0]


RECIPE_CASES = {
    "unknown method": (lambda r: r | {"method": "slurp"}, "'method'"),
    "missing base": (lambda r: {k: v for k, v in r.items() if k != "base"}, "'base'"),
    "density above 1": (lambda r: r | {"sources": [r["sources"][0] | {"density": 1.5}]}, "sources[0].density"),
    "density zero": (lambda r: r | {"density": 0}, "'density'"),
    "negative weight": (lambda r: r | {"sources": [r["sources"][0] | {"weight": -0.2}]}, "sources[0].weight"),
    "non-numeric weight": (lambda r: r | {"sources": [r["sources"][0] | {"weight": "heavy"}]}, "sources[0].weight"),
    "unknown field": (lambda r: r | {"lamda": 0.5}, "unknown field 'lamda' (did you mean 'lambda'?)"),
    "layers past the end": (lambda r: r | {"layers": [0, 99]}, "'layers'"),
}


@pytest.mark.parametrize("case", sorted(RECIPE_CASES))
def test_bad_recipe_is_refused(case, tiny_family, write_recipe, run_cli, isolated_cache):
    mutate, field = RECIPE_CASES[case]
    _assert_refused(run_cli, write_recipe(mutate(_good(tiny_family("qwen2_vl")))), field, isolated_cache)


def test_a_misspelt_field_is_named_with_the_closest_one(tiny_family, write_recipe, run_cli, isolated_cache):
    """`methd: linear` is a typo, not a missing `method`; the message points to a reference that exists."""
    recipe = _good(tiny_family("qwen2_vl"))
    recipe["methd"] = recipe.pop("method")
    line = _assert_refused(run_cli, write_recipe(recipe), "'methd'", isolated_cache)
    assert "unknown field 'methd' (did you mean 'method'?)" in line and "is required" not in line
    assert "docs/recipes.md" in line and (Path(__file__).parents[1] / "docs/recipes.md").is_file()
    nested = _good(tiny_family("qwen2_vl")) | {"vlm": {"model": str(tiny_family("qwen2_vl").vlm), "wieght": 1.0}}
    line = _assert_refused(run_cli, write_recipe(nested), "'vlm.wieght'", isolated_cache)
    assert "did you mean 'weight'?" in line


@pytest.mark.parametrize("method,extra,why,fix", [
    ("linear", {}, "it averages whole models", "for task negation use task_arithmetic, dare_linear, breadcrumbs"),
    ("ties", {}, "it elects each entry's sign", "for task negation use task_arithmetic, dare_linear, breadcrumbs"),
    ("task_arithmetic", {"normalize": True}, "dividing by the sum of the weights", "set `normalize: false`"),
])
def test_negative_weight_is_refused_where_it_means_nothing(method, extra, why, fix, tiny_family, write_recipe,
                                                          run_cli, isolated_cache):
    recipe = _good(tiny_family("qwen2_vl")) | {"method": method, **extra}
    recipe["sources"] = [{"model": recipe["sources"][0]["model"], "weight": -0.5}]
    line = _assert_refused(run_cli, write_recipe(recipe), "sources[0].weight", isolated_cache)
    assert "must not be negative" in line and why in line and fix in line


def test_negative_weight_negates_a_task_vector(tiny_family):
    """Task negation: theta_base + tau_vlm - 0.5 * tau_src, tensor by tensor."""
    from merge_models.executor import merge_state_dict
    from merge_models.plan import build_plan
    from merge_models.recipe import parse_recipe

    family = tiny_family("qwen2_vl")
    plan = build_plan(parse_recipe({"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base),
                                    "method": "task_arithmetic",
                                    "sources": [{"model": str(family.reasoning), "weight": -0.5}]}))
    merged = merge_state_dict(plan)
    vlm, base, source = (load_file(p / "model.safetensors") for p in (family.vlm, family.base, family.reasoning))
    entry = plan.merged()[0]
    expected = base[entry.canonical] + (vlm[entry.name] - base[entry.canonical]) - 0.5 * (
        source[entry.canonical] - base[entry.canonical])
    assert torch.allclose(merged[entry.name].float(), expected.float(), atol=1e-6)


def test_recipe_that_is_not_a_mapping(tmp_path, run_cli, isolated_cache):
    path = tmp_path / "list.yaml"
    path.write_text("- vlm\n- base\n")
    line = _assert_refused(run_cli, path, "(top level)", isolated_cache)
    assert "mapping" in line


def test_missing_recipe_file(run_cli, isolated_cache):
    _assert_refused(run_cli, "no/such/recipe.yaml", "'recipe'", isolated_cache)


def test_unknown_architecture(tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    family = tiny_family("qwen2_vl")
    vlm = _copy(family.vlm, tmp_path / "odd")
    config = json.loads((vlm / "config.json").read_text())
    config["model_type"] = "florence9"
    config["architectures"] = ["Florence9ForConditionalGeneration"]
    (vlm / "config.json").write_text(json.dumps(config))
    recipe = _good(family)
    recipe["vlm"]["model"] = str(vlm)
    line = _assert_refused(run_cli, write_recipe(recipe), "vlm.model", isolated_cache)
    assert "florence9" in line and "qwen2_vl" in line


@pytest.mark.parametrize("key,label", [("hidden_size", "hidden size"), ("num_hidden_layers", "layer count")])
def test_shape_mismatch(key, label, tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    family = tiny_family("qwen2_vl")
    source = _copy(family.reasoning, tmp_path / "other")
    config = json.loads((source / "config.json").read_text())
    config[key] *= 2
    (source / "config.json").write_text(json.dumps(config))
    recipe = _good(family) | {"sources": [{"model": str(source), "weight": 0.5, "density": 0.5}]}
    line = _assert_refused(run_cli, write_recipe(recipe), "sources[0].model", isolated_cache)
    assert label in line


def test_tensor_shape_mismatch(tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    family = tiny_family("qwen2_vl")
    source = _copy(family.reasoning, tmp_path / "other")
    weights = load_file(source / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(weights, source / "model.safetensors")
    recipe = _good(family) | {"sources": [{"model": str(source), "weight": 0.5, "density": 0.5}]}
    line = _assert_refused(run_cli, write_recipe(recipe), "sources[0].model", isolated_cache)
    assert "model.layers.1.mlp.up_proj.weight" in line


def test_missing_checkpoint(tiny_family, write_recipe, run_cli, isolated_cache):
    recipe = _good(tiny_family("qwen2_vl")) | {"base": "/nonexistent/base-llm"}
    _assert_refused(run_cli, write_recipe(recipe), "base.model", isolated_cache)


def test_hub_id_offline_names_the_download_command(tiny_family, write_recipe, run_cli, isolated_cache):
    recipe = _good(tiny_family("qwen2_vl")) | {"base": "Qwen/Qwen2-7B"}
    line = _assert_refused(run_cli, write_recipe(recipe), "base.model", isolated_cache)
    assert "hf download Qwen/Qwen2-7B" in line


def test_hub_reason_is_cut_at_a_word_boundary():
    from merge_models.checkpoint import short_reason

    long = "Cannot find an appropriate cached snapshot folder for the specified revision on the local disk and " \
           "outgoing traffic has been disabled. To enable repo look-ups and downloads online, set HF_HUB_OFFLINE=0."
    assert short_reason(ValueError(long)) == ("Cannot find an appropriate cached snapshot folder for the specified "
                                              "revision on the local disk and outgoing traffic has been disabled")
    words = " ".join(f"word{i}" for i in range(60))
    shortened = short_reason(OSError(words), 50)
    assert len(shortened) <= 50 and shortened.endswith(" ...") and shortened[:-4] == words[:len(shortened) - 4]
    assert words.split().count(shortened[:-4].split()[-1]) == 1  # the last word is whole


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint(damage, tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    family = tiny_family("qwen2_vl")
    source = _copy(family.reasoning, tmp_path / "damaged")
    shard = source / "model.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 10)
    recipe = _good(family) | {"sources": [{"model": str(source), "weight": 0.5, "density": 0.5}]}
    line = _assert_refused(run_cli, write_recipe(recipe), "sources[0].model", isolated_cache)
    assert "safetensors" in line


def test_missing_shard_listed_in_index(tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    family = tiny_family("qwen2_vl")
    source = _copy(family.reasoning, tmp_path / "indexed")
    (source / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}))
    recipe = _good(family) | {"sources": [{"model": str(source), "weight": 0.5, "density": 0.5}]}
    line = _assert_refused(run_cli, write_recipe(recipe), "sources[0].model", isolated_cache)
    assert "model-00002-of-00002.safetensors" in line


def test_pickle_only_checkpoint_needs_allow_pickle(tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    family = tiny_family("qwen2_vl")
    source = _copy(family.reasoning, tmp_path / "pickled")
    torch.save(load_file(source / "model.safetensors"), source / "pytorch_model.bin")
    (source / "model.safetensors").unlink()
    recipe = _good(family) | {"sources": [{"model": str(source), "weight": 0.5, "density": 0.5}]}
    line = _assert_refused(run_cli, write_recipe(recipe), "sources[0].model", isolated_cache)
    assert "allow_pickle" in line
    code, out, err = run_cli("merge", write_recipe(recipe | {"allow_pickle": True}), "--quiet")
    assert code == 0, err
