"""Bad recipes and bad checkpoints: one line naming the field, exit status 2, nothing in the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


@pytest.mark.parametrize("assignment,field", [("lambda=.nan", "'lambda'"), ("sources.0.weight=.inf", "sources[0].weight"),
                                              ("vlm.weight=1e308", "'vlm.weight'"), ("lambda=-.inf", "'lambda'")])
def test_non_finite_or_huge_numbers_are_refused_at_validation(assignment, field, tiny_family, write_recipe, run_cli,
                                                              isolated_cache):
    family = tiny_family("qwen2_vl")
    recipe = write_recipe({"vlm": {"model": str(family.vlm), "weight": 0.9}, "method": "linear",
                           "sources": [{"model": str(family.reasoning), "weight": 0.1}]})
    for command in ("validate", "merge"):
        code, out, err = run_cli(command, recipe, "--set", assignment, "--quiet")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and field in lines[0] and "finite" in lines[0], (out, err)
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


def test_lmms_eval_model_args_go_through_the_same_number_checks(tmp_path):
    command = [str(Path(sys.executable).parent / "lmms_eval"), "--model", "merged_vlm", "--model_args",
               "recipe=tiny-world,lambda=.nan", "--tasks", "mvlm_probe_perception", "--limit", "1",
               "--output_path", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert "'lambda'" in lines[0] and "finite" in lines[0] and not (tmp_path / "out").exists()


def test_linear_weights_that_add_up_to_zero_are_refused(tiny_family, write_recipe, run_cli, isolated_cache):
    """Nothing to mix: every merged tensor, layernorms included, would be all zeros."""
    family = tiny_family("qwen2_vl")
    recipe = {"vlm": {"model": str(family.vlm), "weight": 0}, "method": "linear",
              "sources": [{"model": str(family.reasoning), "weight": 0}]}
    for command in ("validate", "merge"):
        line = _assert_refused(run_cli, write_recipe(recipe), "'sources'", isolated_cache, command)
        assert "add up to 0" in line
    per_layer = recipe | {"vlm": {"model": str(family.vlm), "weight": [1.0, 0.0]},
                          "sources": [{"model": str(family.reasoning), "weight": [0.0, 0.0]}]}
    line = _assert_refused(run_cli, write_recipe(per_layer), "'sources'", isolated_cache, "validate")
    assert "add up to 0 for" in line


def _linear(family) -> dict:
    return {"vlm": {"model": str(family.vlm), "weight": 0.9}, "method": "linear",
            "sources": [{"model": str(family.reasoning), "weight": 0.1}]}


def _one_line(code: int, err: str, status: int) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert code == status and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


@pytest.mark.parametrize("value", ["!!python/object/apply:os.system ['true']", "[1,", "{a: 1"])
def test_a_yaml_tag_or_bad_yaml_in_set_and_grid_is_one_line(value, tiny_family, write_recipe, run_cli, tmp_path,
                                                            isolated_cache):
    recipe = write_recipe(_linear(tiny_family("qwen2_vl")))
    line = _one_line(*run_cli("merge", recipe, "--set", f"lambda={value}", "--quiet")[::2], 2)
    assert "--set" in line and "not plain YAML" in line
    code, _, err = run_cli("sweep", recipe, "--grid", f"lambda={value}", "--tasks", "mvlm_probe", "--limit", "1",
                           "--out", str(tmp_path / "sw"), "--no-ingest", "--quiet")
    assert "--grid" in _one_line(code, err, 2)
    assert not (tmp_path / "sw").exists() and not isolated_cache.exists()


def test_out_naming_an_existing_file_is_one_line_and_leaves_it(tiny_family, write_recipe, run_cli, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for extra in ((), ("--force",)):
        code, _, err = run_cli("merge", write_recipe(_linear(tiny_family("qwen2_vl"))), "--out", target, "--quiet",
                               *extra)
        assert "--out" in _one_line(code, err, 2) and target.read_text() == "mine"


@pytest.mark.parametrize("where", ["cache", "out"])
def test_a_full_disk_during_the_merge_is_one_line_exit_1_and_leaves_nothing(where, tiny_family, write_recipe,
                                                                           run_cli, tmp_path, monkeypatch,
                                                                           isolated_cache):
    import errno

    import merge_models.safetensors_writer as writer

    calls = []
    real = os.pwrite

    def full(fd, data, offset):
        calls.append(offset)
        if len(calls) > 2:  # the header and a first tensor fit; then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(writer.os, "pwrite", full)
    out = () if where == "cache" else ("--out", tmp_path / "merged")
    code, _, err = run_cli("merge", write_recipe(_linear(tiny_family("qwen2_vl"))), *out, "--quiet")
    line = _one_line(code, err, 1)
    assert "No space left on device" in line and "free disk space" in line, line
    left = [p.name for p in isolated_cache.iterdir() if not p.name.endswith((".lock", ".sqlite"))] \
        if isolated_cache.exists() else []
    assert left == [] and not (tmp_path / "merged").exists()
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())


def test_a_read_only_cache_is_one_line_exit_1(tiny_family, write_recipe, run_cli, monkeypatch, isolated_cache):
    import errno

    real = Path.mkdir

    def read_only(self, *args, **kwargs):
        if self == isolated_cache or isolated_cache in self.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = run_cli("merge", write_recipe(_linear(tiny_family("qwen2_vl"))), "--quiet")
    line = _one_line(code, err, 1)
    assert "Read-only file system" in line and "MERGED_VLM_CACHE" in line and not isolated_cache.exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_reported_as_such(tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    family = tiny_family("qwen2_vl")
    source = _copy(family.reasoning, tmp_path / "pickled")
    marker = tmp_path / "code-ran"
    torch.save({**load_file(source / "model.safetensors"), "payload": _Payload(marker)}, source / "pytorch_model.bin")
    (source / "model.safetensors").unlink()
    recipe = _good(family) | {"allow_pickle": True,
                              "sources": [{"model": str(source), "weight": 0.5, "density": 0.5}]}
    line = _assert_refused(run_cli, write_recipe(recipe), "sources[0].model", isolated_cache)
    assert "may be malicious" in line and "posix.system" in line and "download the checkpoint again" not in line
    assert not marker.exists()


def test_config_sizes_must_match_the_tensors(tiny_family, tmp_path, write_recipe, run_cli, isolated_cache):
    """Every config says hidden 256 while the tensors are narrower: validate must not say "compatible"."""
    family = tiny_family("qwen2_vl")
    copies = {name: _copy(getattr(family, name), tmp_path / name) for name in ("vlm", "reasoning")}
    for folder in copies.values():
        config = json.loads((folder / "config.json").read_text())
        for node in (config, config.get("text_config")):
            if isinstance(node, dict) and "hidden_size" in node:
                node["hidden_size"] = 256
        (folder / "config.json").write_text(json.dumps(config))
    recipe = {"vlm": {"model": str(copies["vlm"]), "weight": 0.9}, "method": "linear",
              "sources": [{"model": str(copies["reasoning"]), "weight": 0.1}]}
    line = _assert_refused(run_cli, write_recipe(recipe), "vlm.model", isolated_cache, "validate")
    assert "hidden size 256" in line and "config.json" in line


def test_support_files_linking_outside_the_checkpoint_are_refused(tiny_family, tmp_path, write_recipe, run_cli,
                                                                  isolated_cache):
    """A tokenizer file that is a link to a private file elsewhere is not copied into the merged checkpoint;
    a link to a file inside the checkpoint folder is followed."""
    family = tiny_family("qwen2_vl")
    vlm = _copy(family.vlm, tmp_path / "vlm")
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (vlm / "chat_template.jinja").unlink(missing_ok=True)
    (vlm / "chat_template.jinja").symlink_to(secret)
    recipe = _linear(family) | {"vlm": {"model": str(vlm), "weight": 0.9}}
    for command in ("validate", "merge"):
        line = _assert_refused(run_cli, write_recipe(recipe), "vlm.model", isolated_cache, command)
        assert "chat_template.jinja" in line and "outside the checkpoint folder" in line
    (vlm / "chat_template.jinja").unlink()
    (vlm / "extra").mkdir()
    (vlm / "extra" / "template.jinja").write_text("{{ messages }}")
    (vlm / "chat_template.jinja").symlink_to(vlm / "extra" / "template.jinja")
    out = tmp_path / "merged"
    code, _, err = run_cli("merge", write_recipe(recipe), "--out", out, "--quiet")
    assert code == 0, err
    copied = out / "chat_template.jinja"
    assert not copied.is_symlink() and copied.read_text() == "{{ messages }}"


def test_a_merge_that_zeroes_a_tensor_no_input_holds_as_zeros_is_refused(tiny_family, tmp_path, write_recipe,
                                                                        run_cli, isolated_cache):
    """task_arithmetic with weights 1 and -1: base + tau_vlm - tau_src is zero where vlm = 2, base = 1, src = 3."""
    family = tiny_family("qwen2_vl")
    copies = {role: _copy(getattr(family, role), tmp_path / role) for role in ("vlm", "base", "reasoning")}
    vlm_name = next(n for n in load_file(copies["vlm"] / "model.safetensors")
                    if n.endswith("norm.weight") and "layers" not in n and "visual" not in n)
    for role, name, value in (("vlm", vlm_name, 2.0), ("base", "model.norm.weight", 1.0),
                              ("reasoning", "model.norm.weight", 3.0)):
        weights = load_file(copies[role] / "model.safetensors")
        weights[name] = torch.full_like(weights[name], value)
        save_file(weights, copies[role] / "model.safetensors")
    recipe = {"vlm": {"model": str(copies["vlm"]), "weight": 1.0}, "base": str(copies["base"]),
              "method": "task_arithmetic", "sources": [{"model": str(copies["reasoning"]), "weight": -1.0}]}
    code, _, err = run_cli("merge", write_recipe(recipe), "--quiet")
    line = _one_line(code, err, 2)
    assert vlm_name in line and "all zeros" in line and "cancel" in line
    assert not [p for p in isolated_cache.iterdir() if p.is_dir()], "no cache entry, no temporary folder"


def test_mergekit_parameters_must_be_finite(tiny_family):
    from merge_models.errors import RecipeError
    from merge_models.recipe import parse_recipe

    family = tiny_family("qwen2_vl")
    recipe = {"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base), "method": "mergekit.della",
              "sources": [{"model": str(family.reasoning), "weight": 0.5, "density": 0.5}]}
    for value, problem in ((float("nan"), "finite"), (float("inf"), "finite"), (1e300, "finite number between")):
        with pytest.raises(RecipeError, match=rf"'mergekit_parameters.epsilon': must be a {problem}"):
            parse_recipe(recipe | {"mergekit_parameters": {"epsilon": value}})
    karcher = recipe | {"method": "mergekit.karcher", "mergekit_parameters": {"max_iter": 500}}
    del karcher["sources"][0]["density"]
    assert parse_recipe(karcher).mergekit_parameters["max_iter"] == 500
    with pytest.raises(RecipeError, match="'mergekit_parameters.max_iter': must be a finite number"):
        parse_recipe(karcher | {"mergekit_parameters": {"max_iter": float("inf")}})
