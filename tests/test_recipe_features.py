"""Recipe features users rely on: layer ranges, layer swap, module filters, gradients, mergekit YAML,
overrides, and the normalised recipe written beside every merge."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny_checkpoints import linear_recipe

from merge_models.errors import RecipeError
from merge_models.executor import merge_state_dict
from merge_models.plan import build_plan
from merge_models.recipe import load_recipe, parse_recipe


def _changed_layers(merged: dict, vlm: dict, module: str = "mlp.up_proj") -> list[int]:
    return [i for i in range(4) if not torch.equal(merged[f"model.layers.{i}.{module}.weight"],
                                                   vlm[f"model.layers.{i}.{module}.weight"])]


def test_layer_range_and_layer_swap_keep_other_layers_bit_identical(tiny_family):
    family = tiny_family("qwen2_vl")
    vlm = load_file(family.vlm / "model.safetensors")
    layers = linear_recipe(family.vlm, family.reasoning, layers=[1, 2])
    ranged = merge_state_dict(build_plan(parse_recipe(layers)))
    assert _changed_layers(ranged, vlm) == [1, 2]
    swap = linear_recipe(family.vlm, family.reasoning, method="layer_swap",
                         layer_swap={"keep_through": 1, "inner": "linear"})
    swapped = merge_state_dict(build_plan(parse_recipe(swap)))
    assert _changed_layers(swapped, vlm) == [2, 3]
    assert not torch.equal(swapped["model.norm.weight"], vlm["model.norm.weight"]), "the final norm merges"


def test_module_filter_and_filter_rules(tiny_family):
    family = tiny_family("qwen2_vl")
    vlm = load_file(family.vlm / "model.safetensors")
    attention = linear_recipe(family.vlm, family.reasoning, modules=["self_attn"])
    attention_only = merge_state_dict(build_plan(parse_recipe(attention)))
    assert _changed_layers(attention_only, vlm, "self_attn.q_proj") == [0, 1, 2, 3]
    assert _changed_layers(attention_only, vlm, "mlp.up_proj") == []

    rules = linear_recipe(family.vlm, family.reasoning)
    rules["sources"][0]["weight"] = [{"filter": "mlp", "value": 0.5}, {"value": 0.1}]
    rules["vlm"]["weight"] = 0.5
    plan = build_plan(parse_recipe(rules))
    params = {t.canonical: t.params for t in plan.merged()}
    assert params["model.layers.0.mlp.up_proj.weight"].weights == (0.5, 0.5)
    assert params["model.layers.0.self_attn.q_proj.weight"].weights == (0.5, 0.1)


def test_gradient_interpolates_over_depth(tiny_family):
    family = tiny_family("qwen2_vl")
    recipe = linear_recipe(family.vlm, family.reasoning)
    recipe["vlm"]["weight"] = 1.0
    recipe["sources"][0]["weight"] = [0.0, 0.3]
    plan = build_plan(parse_recipe(recipe))
    by_layer = {t.layer: t.params.weights[1] for t in plan.merged() if t.canonical.endswith("mlp.up_proj.weight")}
    assert by_layer == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2, 3: 0.3})
    merged = merge_state_dict(plan)
    vlm = load_file(family.vlm / "model.safetensors")
    src = load_file(family.reasoning / "model.safetensors")
    key = "model.layers.2.mlp.up_proj.weight"
    torch.testing.assert_close(merged[key], (vlm[key] + 0.2 * src[key]) / 1.2, rtol=0, atol=1e-6)


def test_mergekit_yaml_is_accepted(tiny_family, tmp_path):
    family = tiny_family("qwen2_vl")
    config = {"merge_method": "ties", "base_model": str(family.base), "dtype": "float32",
              "models": [{"model": str(family.reasoning), "parameters": {"weight": 0.2, "density": 0.2}},
                         {"model": str(family.vlm), "parameters": {"weight": 1.6, "density": 0.2}}],
              "parameters": {"normalize": True, "int8_mask": True}}
    path = tmp_path / "mergekit.yaml"
    path.write_text(yaml.safe_dump(config))
    recipe = load_recipe(path)
    assert recipe.vlm.model == str(family.vlm), "the VLM is found by its config, not its position"
    assert recipe.vlm.weight == 1.6 and recipe.sources[0].weight == 0.2 and recipe.sources[0].density == 0.2
    native = parse_recipe({"vlm": {"model": str(family.vlm), "weight": 1.6, "density": 0.2}, "base": str(family.base),
                           "sources": [{"model": str(family.reasoning), "weight": 0.2, "density": 0.2}],
                           "method": "ties", "normalize": True, "dtype": "float32"})
    assert build_plan(recipe).recipe_hash == build_plan(native).recipe_hash


@pytest.mark.parametrize("field,config", [
    ("slices", {"slices": [{"sources": [{"model": "a", "layer_range": [0, 2]}]},
                           {"sources": [{"model": "b", "layer_range": [2, 4]}]}]}),
    ("tokenizer_source", {"models": [{"model": "a"}, {"model": "b"}], "tokenizer_source": "union"}),
    ("models[0].parameters.epsilon", {"models": [{"model": "a", "parameters": {"epsilon": 0.1}}, {"model": "b"}]}),
])
def test_inexpressible_mergekit_yaml_names_the_field(field, config, tmp_path):
    path = tmp_path / "mk.yaml"
    path.write_text(yaml.safe_dump({"merge_method": "ties", **config}))
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert error.value.field == field


def test_mergekit_only_method_runs_through_mergekit(tiny_family):
    pytest.importorskip("mergekit")
    family = tiny_family("qwen2_vl")
    recipe = {"vlm": str(family.vlm), "sources": [{"model": str(family.reasoning), "weight": 1.0}],
              "method": "mergekit.slerp", "mergekit_parameters": {"t": 0.3}}
    merged = merge_state_dict(build_plan(parse_recipe(recipe)))
    vlm = load_file(family.vlm / "model.safetensors")
    key = "model.layers.1.mlp.up_proj.weight"
    assert not torch.equal(merged[key], vlm[key])
    with pytest.raises(RecipeError, match="mergekit_parameters.tee"):
        parse_recipe(recipe | {"mergekit_parameters": {"tee": 0.3}})


def test_overrides_and_written_recipe_round_trip(tiny_family, tmp_path, write_recipe, run_cli):
    family = tiny_family("qwen2_vl")
    path = write_recipe(linear_recipe(family.vlm, family.reasoning))
    code, out, err = run_cli("merge", path, "--set", "vlm.weight=0.7", "--set", "sources.0.weight=0.3",
                             "--out", tmp_path / "merged", "--quiet")
    assert code == 0, err
    written = tmp_path / "merged" / "merge_recipe.yaml"
    again = build_plan(load_recipe(written))
    assert again.recipe.vlm.weight == 0.7
    assert again.recipe_hash in out, "the normalised recipe reloads to the same hash"
    code, _, err = run_cli("merge", path, "--out", tmp_path / "merged", "--quiet")
    assert code == 2 and "--force" in err, "an existing output is not overwritten silently"
