"""Loading a merged model: every input byte read once in memory, device_map / max_memory placement,
and where merging runs (merge_device)."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from PIL import Image
from tiny_checkpoints import vlm_args

from harness_ext.generation import conversation, generate
from harness_ext.loading import Placement, build_merged_causal_lm, load_merged_vlm
from harness_ext.model_options import ModelArgsError
from merge_models import streaming
from merge_models.checkpoint import Checkpoint
from merge_models.executor import resolve_merge_device
from merge_models.plan import build_plan
from merge_models.recipe import parse_recipe

CHATS = [conversation([Image.new("RGB", (56, 56), (200, 30, 30))], "What number is shown?"),
         conversation([], "Hello there.")]
GEN = {"max_new_tokens": 8, "until": ["\n\n"]}


@pytest.fixture
def recipe(tiny_family, write_recipe):
    """Task arithmetic over every language tensor of a tiny LLaVA (embeddings too: their shared rows)."""
    family = tiny_family("llava")
    return write_recipe({"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base),
                         "sources": [{"model": str(family.reasoning), "weight": 0.4}],
                         "method": "task_arithmetic", "exclude": [], "shared_vocab_rows": True})


def test_in_memory_load_reads_each_input_byte_once(recipe, monkeypatch):
    """cache=false: the VLM's own tensors and the merge inputs are read exactly once, all through the
    merge's reader: transformers opens no weight file."""
    reads: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    original = Checkpoint.read_into

    def counting(self, name, start, buffer):
        reads[(self.field, name)].append((start * self.tensors[name].dtype.itemsize, buffer.numel()))
        return original(self, name, start, buffer)

    monkeypatch.setattr(Checkpoint, "read_into", counting)
    import transformers.modeling_utils

    monkeypatch.setattr(transformers.modeling_utils, "safe_open", lambda *a, **k: pytest.fail("a weight file was opened"))
    loaded = load_merged_vlm(vlm_args(recipe, cache=False), "cpu")
    assert loaded.stats["how"] == "merged in memory"
    plan = build_plan(vlm_args(recipe).recipe)
    expected = {(c.field, name): meta.nbytes for c in plan.checkpoints() for name, meta in c.tensors.items()}
    assert set(reads) == set(expected), "every tensor of every input is read"
    for key, ranges in reads.items():
        covered = sorted(ranges)
        assert sum(size for _, size in covered) == expected[key], key
        assert all(a + size == b for (a, size), (b, _) in zip(covered, covered[1:])), f"{key} read twice"


@pytest.mark.parametrize("cache", [True, False])
def test_device_map_auto_loads_and_generates_token_identically(recipe, cache):
    default = load_merged_vlm(vlm_args(recipe, cache=cache), "cpu")
    spread = load_merged_vlm(vlm_args(recipe, cache=cache, device_map="auto", max_memory="{cpu: 8GiB}"),
                             "cpu")
    assert {p.device.type for p in spread.model.parameters()} == {"cpu"}
    assert generate(spread.model, spread.processor, CHATS, GEN) == generate(default.model, default.processor, CHATS, GEN)
    for (name, a), (_, b) in zip(default.model.state_dict().items(), spread.model.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("cache", [True, False])
def test_max_memory_below_the_model_offloads_to_disk_and_generates_identically(recipe, cache, isolated_cache):
    """A model larger than max_memory on a CPU-only machine: the rest goes to the disk (the in-memory
    merge needs an offload folder of its own: it has no checkpoint file to read offloaded weights back from)."""
    default = load_merged_vlm(vlm_args(recipe, cache=cache), "cpu")
    spread = load_merged_vlm(vlm_args(recipe, cache=cache, device_map="auto", max_memory="{cpu: 100KB}"), "cpu")
    assert "disk" in spread.model.hf_device_map.values()
    assert generate(spread.model, spread.processor, CHATS, GEN) == generate(default.model, default.processor, CHATS, GEN)
    if not cache:
        assert [p.name for p in isolated_cache.glob("offload-*")]  # removed when the process ends


def test_explicit_device_map_places_modules(recipe):
    loaded = load_merged_vlm(vlm_args(recipe, cache=False, device_map="{model: cpu, lm_head: cpu}"), "cpu")
    assert generate(loaded.model, loaded.processor, CHATS[1:], GEN)


@pytest.mark.parametrize("name,value", [("device_map", "[cuda:0]"), ("max_memory", "8GiB"), ("device_map", "true")])
def test_bad_placement_arguments_are_refused(recipe, name, value):
    with pytest.raises(ModelArgsError, match=name):
        vlm_args(recipe, **{name: value})


def test_merged_lm_with_device_map_auto_matches_the_default(recipe):
    plan = build_plan(vlm_args(recipe).recipe)
    cpu = Placement("cpu", None, torch.device("cpu"))
    spread = Placement("auto", {"cpu": "8GiB"}, torch.device("cpu"))
    tokens = torch.tensor([[1, 5, 9, 17, 33]])
    with torch.no_grad():
        logits = [build_merged_causal_lm(plan, p)(tokens).logits for p in (cpu, spread)]
    assert torch.equal(logits[0], logits[1])


def test_merges_run_on_the_merge_device(recipe, monkeypatch):
    """The recipe's (or model argument's) merge_device, else the model's device, is where tiles go."""
    devices = []
    original = streaming.ChunkBuffers.__init__

    def spy(self, device="cpu"):
        devices.append(torch.device(device))
        original(self, device)

    monkeypatch.setattr(streaming.ChunkBuffers, "__init__", spy)
    load_merged_vlm(vlm_args(recipe, cache=False, merge_device="cpu"), "cpu")
    load_merged_vlm(vlm_args(recipe, cache=True), "cpu")
    assert devices and set(devices) == {torch.device("cpu")}


def test_merge_device_defaults_to_where_the_model_lives(monkeypatch):
    assert resolve_merge_device(None, "cpu") == torch.device("cpu")
    assert resolve_merge_device("cpu", "cuda:1") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_merge_device(None, "cuda:1") == torch.device("cuda:1")
    assert resolve_merge_device(None, 0) == torch.device("cuda:0")
    assert resolve_merge_device(None, None) == torch.device("cuda")
    assert Placement.from_options(None, {"device_map": "auto"}, None).merge_device == torch.device("cuda")
    assert Placement.from_options(None, {}, "cpu").merge_device == torch.device("cpu")


def test_merge_device_is_not_part_of_the_recipe_hash(tiny_family):
    family = tiny_family("qwen2_vl")
    recipe = {"vlm": str(family.vlm), "sources": [{"model": str(family.reasoning), "weight": 0.2}], "method": "linear"}
    hashes = {build_plan(parse_recipe(recipe | extra)).recipe_hash for extra in ({}, {"merge_device": "cpu"},
                                                                                {"merge_device": "cuda:1"})}
    assert len(hashes) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_merge_on_a_missing_gpu_is_refused(recipe, run_cli, isolated_cache):
    code, _, err = run_cli("merge", recipe, "--set", "merge_device=cuda", "--quiet")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "merge_device" in lines[0], err
    assert not isolated_cache.exists() or not any(isolated_cache.iterdir())


def test_unknown_merge_device_is_refused(recipe, run_cli, isolated_cache):
    code, _, err = run_cli("merge", recipe, "--set", "merge_device=gpu0", "--quiet")
    assert code == 2 and "merge_device" in err, err
