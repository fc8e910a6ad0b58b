"""The real checkpoints' layouts the shipped recipes meet: pickle-only sources, configs that omit sizes,
pairs whose RoPE settings differ, vocabularies whose rows mean different tokens, flat and untied configs."""

from __future__ import annotations

import fnmatch
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import transformers as T
from method_sources import InMemorySource
from safetensors.torch import load_file, save_file
from tiny_checkpoints import build_pickle_only, linear_recipe

from harness_ext.loading import build_merged_causal_lm
from merge_models import streaming
from merge_models.errors import CheckpointError
from merge_models.executor import merge_state_dict
from merge_models.language_config import language_config
from merge_models.methods import selection
from merge_models.plan import build_plan, plan_totals
from merge_models.recipe import parse_recipe
from merge_models.vocab import describe_differences, row_differences


@pytest.fixture(scope="module")
def mammoth(tiny_family, tmp_path_factory):
    """Pickle-only copies of the tiny Idefics2 trio's reasoning LLM, with `[PAD]` added, sharded and single-file."""
    family = tiny_family("idefics2")
    root = tmp_path_factory.mktemp("mammoth")
    return {"sharded": build_pickle_only(family.reasoning, root / "sharded"),
            "single": build_pickle_only(family.reasoning, root / "single", shards=1)}


# ---------------------------------------------------------------------------------------------
# Pickle-only sources (TIGER-Lab/MAmmoTH-7B-Mistral)


@pytest.mark.parametrize("layout", ["sharded", "single"])
def test_pickle_only_source_reads_its_weights_never_training_args(layout, mammoth, tiny_family):
    family = tiny_family("idefics2")
    source = mammoth[layout]
    assert (source / "training_args.bin").is_file()
    with pytest.raises(CheckpointError, match="allow_pickle"):
        build_plan(parse_recipe(linear_recipe(family.vlm, source)))
    plan = build_plan(parse_recipe(linear_recipe(family.vlm, source, allow_pickle=True)))
    assert {p.name for p in plan.sources[0].pickle_files} == {p.name for p in source.glob("pytorch_model*.bin")}
    merged = merge_state_dict(plan)
    key = "model.text_model.layers.2.mlp.up_proj.weight"
    vlm = load_file(family.vlm / "model.safetensors")[key]
    llm = load_file(family.reasoning / "model.safetensors")["model.layers.2.mlp.up_proj.weight"]
    torch.testing.assert_close(merged[key], 0.9 * vlm + 0.1 * llm, rtol=0, atol=1e-6)


def _fake_hub(repo_files: Path, cache: Path, downloads: list[list[str]]):
    """snapshot_download over a local folder: copies the files matching allow_patterns, records them."""
    def snapshot_download(repo_id: str, revision: str | None = None, allow_patterns: list[str] | None = None) -> str:
        snapshot = cache / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True, exist_ok=True)
        fetched = sorted(f.name for f in repo_files.iterdir()
                         if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns or ["*"]))
        for name in fetched:
            shutil.copyfile(repo_files / name, snapshot / name)
        downloads.append(fetched)
        return str(snapshot)
    return snapshot_download


def test_hub_pickle_only_source_downloads_the_indexed_shards_only(mammoth, tiny_family, tmp_path, monkeypatch):
    import huggingface_hub

    family = tiny_family("idefics2")
    downloads: list[list[str]] = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", _fake_hub(mammoth["sharded"], tmp_path, downloads))
    recipe = linear_recipe(family.vlm, mammoth["sharded"])
    recipe["sources"] = [{"model": "TIGER-Lab/MAmmoTH-7B-Mistral", "weight": 0.1}]
    with pytest.raises(CheckpointError, match="allow_pickle: true"):
        build_plan(parse_recipe(recipe))
    assert not any(name.endswith(".bin") for names in downloads for name in names), "nothing pickled fetched"
    downloads.clear()
    plan = build_plan(parse_recipe(recipe | {"allow_pickle": True}))
    fetched = {name for names in downloads for name in names}
    assert {"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"} <= fetched
    assert "training_args.bin" not in fetched
    assert plan.sources[0].identity == {"source": "hub", "repo": "TIGER-Lab/MAmmoTH-7B-Mistral", "commit": "0123abcd"}


# ---------------------------------------------------------------------------------------------
# Configs: missing values resolved through transformers' defaults; RoPE and vocabulary differences


def test_sizes_a_config_omits_are_compared_at_their_class_defaults(tiny_family, tmp_path):
    """llama3-llava-next-8b-hf's text config omits hidden_size and num_hidden_layers (LlamaConfig: 4096 / 32)."""
    family = tiny_family("llava_next_llama3")
    vlm = tmp_path / "vlm"
    shutil.copytree(family.vlm, vlm)
    config = json.loads((vlm / "config.json").read_text())
    del config["text_config"]["hidden_size"], config["text_config"]["num_hidden_layers"]
    (vlm / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json says hidden size 4096, but tensor \S+ has shape"):
        build_plan(parse_recipe(linear_recipe(vlm, family.reasoning)))


def test_real_configs_resolve_to_their_published_sizes():
    llava = {"model_type": "llava_next", "text_config": {"model_type": "llama", "vocab_size": 128320,
                                                         "rope_theta": 500000.0}}
    idefics = {"model_type": "idefics2", "text_config": {"model_type": "mistral", "vocab_size": 32003}}
    for config, vocab in ((llava, 128320), (idefics, 32003)):
        resolved = language_config(config, config["text_config"])
        assert (resolved.hidden_size, resolved.num_hidden_layers, resolved.vocab_size) == (4096, 32, vocab)
    assert language_config(llava, llava["text_config"]).rope_theta == 5e5


def test_plan_warns_once_per_input_whose_rope_differs(tiny_family, caplog):
    """The tiny Qwen2-VL trio has the real pair's RoPE bases: VLM 1e6, base 1e6, reasoning LLM 1e4."""
    family = tiny_family("qwen2_vl")
    with caplog.at_level(logging.WARNING, logger="merged_vlm"):
        plan = build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning)))
    lines = [line for line in plan.warnings if line.startswith("sources[0]")]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "rope_theta 10000 vs 1e+06" in lines[0] and "max_position_embeddings 4096 vs 32768" in lines[0]
    assert "vocab_size" not in lines[0], "the real pair's vocabularies have one size"
    assert any("rope_theta 10000 vs 1e+06" in r.getMessage() for r in caplog.records)


def test_plan_warns_when_vocabularies_differ(tiny_family):
    family = tiny_family("llava_next_llama3")
    plan = build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning)))
    assert plan.warnings == [line for line in plan.warnings if "vocab_size 384 vs 385" in line] != []


def test_merged_lm_is_configured_as_the_vlms_language_model(tiny_family):
    """A merge that changes nothing gives the VLM's own logits on text (RoPE base 1e6, not the LLM's 1e4)."""
    family = tiny_family("qwen2_vl")
    plan = build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning, modules=[], dtype="float32")))
    model = build_merged_causal_lm(plan)
    assert model.config.rope_parameters["rope_theta"] == 1e6 and model.config.max_position_embeddings == 32768
    vlm = T.AutoModelForImageTextToText.from_pretrained(family.vlm, dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 40, 99, 3, 250, 7, 8, 9, 10, 11, 12, 60, 61, 62, 63]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, vlm(input_ids=ids).logits, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Embedding and head rows paired by token string


def test_rows_pair_by_token_not_by_index(mammoth, tiny_family):
    """Idefics2's <fake_token_around_image> sits at the index MAmmoTH gives [PAD]: that row stays the VLM's."""
    family = tiny_family("idefics2")
    recipe = linear_recipe(family.vlm, mammoth["sharded"], allow_pickle=True, exclude=[],
                           shared_vocab_rows=True)
    plan = build_plan(parse_recipe(recipe))
    merged = merge_state_dict(plan)
    vlm_tokens = T.AutoTokenizer.from_pretrained(family.vlm)
    fake = vlm_tokens.convert_tokens_to_ids("<fake_token_around_image>")
    assert T.AutoTokenizer.from_pretrained(mammoth["sharded"]).convert_tokens_to_ids("[PAD]") == fake
    vlm = load_file(family.vlm / "model.safetensors")
    llm = load_file(family.reasoning / "model.safetensors")
    for name, llm_name in (("model.text_model.embed_tokens.weight", "model.embed_tokens.weight"),
                           ("lm_head.weight", "lm_head.weight")):
        assert torch.equal(merged[name][fake:], vlm[name][fake:]), "image-token rows keep the VLM's values"
        torch.testing.assert_close(merged[name][:fake], 0.9 * vlm[name][:fake] + 0.1 * llm[llm_name][:fake],
                                   rtol=0, atol=1e-6)
    reasons = {t.canonical: t.reason for t in plan.merged()}
    assert "384 of 387 rows paired by token" in reasons["model.embed_tokens.weight"]


def test_a_reindexed_vocabulary_merges_the_same(tiny_family, tmp_path):
    """Swapping two tokens' ids (and their rows) in the reasoning LLM changes nothing in the merge."""
    family = tiny_family("qwen2_vl")
    swapped = tmp_path / "swapped"
    shutil.copytree(family.reasoning, swapped)
    tokenizer = json.loads((swapped / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    by_id = {i: token for token, i in vocab.items()}
    i, j = 100, 200
    vocab[by_id[i]], vocab[by_id[j]] = j, i
    (swapped / "tokenizer.json").write_text(json.dumps(tokenizer))
    weights = load_file(swapped / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        rows = weights[name].clone()
        rows[[i, j]] = rows[[j, i]]
        weights[name] = rows
    save_file(weights, swapped / "model.safetensors", metadata={"format": "pt"})
    original = merge_state_dict(build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning,
                                                                      exclude=[]))))
    reindexed = merge_state_dict(build_plan(parse_recipe(linear_recipe(family.vlm, swapped, exclude=[]))))
    assert all(torch.equal(original[k], reindexed[k]) for k in original)


def test_equal_vocabularies_merge_only_shared_tokens(tiny_family):
    """Qwen2-VL and Qwen2-Math have embeddings of one size; the vision-token and padding rows stay the VLM's."""
    family = tiny_family("qwen2_vl")
    plan = build_plan(parse_recipe(linear_recipe(family.vlm, family.reasoning, exclude=[])))
    merged = merge_state_dict(plan)
    vlm = load_file(family.vlm / "model.safetensors")
    llm = load_file(family.reasoning / "model.safetensors")
    shared = len(T.AutoTokenizer.from_pretrained(family.reasoning))
    image = T.AutoTokenizer.from_pretrained(family.vlm).convert_tokens_to_ids("<|image_pad|>")
    assert image >= shared
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert vlm[name].shape == llm[name].shape and vlm[name].shape[0] > shared
        assert torch.equal(merged[name][shared:], vlm[name][shared:])
        torch.testing.assert_close(merged[name][:shared], 0.9 * vlm[name][:shared] + 0.1 * llm[name][:shared],
                                   rtol=0, atol=1e-6)
    assert plan_totals(plan)["tensors"]["merge"] == len(plan.merged())
    assert all(f"{shared} of {vlm[n].shape[0]} rows paired by token" in t.reason
               for t in plan.merged() for n in [t.name] if t.pairing is not None)


PAIRED_CONVENTIONS = {
    "mergekit_ties": {"method": "ties", "density": 0.3},
    "paper_ties": {"method": "ties", "density": 0.2, "sign_election": "unweighted_sum", "disjoint_mean": "count",
                   "min_kept": 0, "task_vector_dtype": "float16"},
    "dare_ties_count_vote": {"method": "dare_ties", "density": 0.4, "sign_election": "count", "seed": 3},
    "breadcrumbs_ties": {"method": "breadcrumbs_ties", "density": 0.5, "gamma": 0.1, "normalize": True},
}


@pytest.fixture(scope="module")
def gapped_vocabulary(tiny_family, tmp_path_factory):
    """The tiny Qwen2-VL trio with tie-heavy vocabulary task vectors, and a reasoning LLM whose vocabulary
    lacks '!' (a VLM row in the middle without a partner) and swaps two tokens' ids (its rows out of order)."""
    family = tiny_family("qwen2_vl")
    root = tmp_path_factory.mktemp("gapped")
    generator = torch.Generator().manual_seed(5)
    base = load_file(family.base / "model.safetensors")
    paths = {}
    for role in ("vlm", "reasoning"):
        paths[role] = root / role
        shutil.copytree(getattr(family, role), paths[role])
        weights = load_file(paths[role] / "model.safetensors")
        for name in ("model.embed_tokens.weight", "lm_head.weight"):  # few distinct magnitudes: ties at every cut
            weights[name] = base[name] + torch.randint(-3, 4, base[name].shape, generator=generator) * 2.0**-8
        save_file(weights, paths[role] / "model.safetensors", metadata={"format": "pt"})
    tokenizer = json.loads((paths["reasoning"] / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    assert not any("!" in pair for pair in map(str, tokenizer["model"]["merges"]))
    del vocab["!"]
    by_id = {i: token for token, i in vocab.items()}
    vocab[by_id[100]], vocab[by_id[200]] = 200, 100
    (paths["reasoning"] / "tokenizer.json").write_text(json.dumps(tokenizer))
    return {**paths, "base": family.base}


@pytest.mark.parametrize("conventions", list(PAIRED_CONVENTIONS))
def test_paired_rows_merge_in_tiles_as_the_whole_gathered_rows_do(conventions, gapped_vocabulary, monkeypatch):
    """Vocabulary rows paired by token merge in small tiles (cut mid-row, several per block, combined on two
    threads, cut-offs found by the streaming window) exactly as the method merges all paired rows at once,
    under every TIES convention; rows without a partner keep the VLM's values."""
    paths = gapped_vocabulary
    recipe = {"vlm": {"model": str(paths["vlm"]), "weight": 1.0}, "base": str(paths["base"]),
              "sources": [{"model": str(paths["reasoning"]), "weight": 0.5}], "exclude": [],
              **PAIRED_CONVENTIONS[conventions]}
    plan = build_plan(parse_recipe(recipe))
    vocabulary = [e for e in plan.merged() if e.pairing is not None]
    assert vocabulary and all(0 < len(e.pairing) < e.shape[0] - 1 for e in vocabulary)
    expected = {}
    for entry in vocabulary:
        pairing, vlm = entry.pairing, plan.vlm.read(entry.name)
        gathered = [vlm[pairing.rows(None)].float().reshape(-1)]
        for source in plan.sources:
            rows = source.read(source.canonical_map[entry.canonical])[pairing.rows(source.field)]
            gathered.append(rows.float().reshape(-1))
        base = plan.base.read(plan.base.canonical_map[entry.canonical])[pairing.rows(plan.base.field)]
        whole = InMemorySource(gathered, base.float().reshape(-1))
        method = plan.method.impl
        state = method.prepare(whole, entry.params)
        merged = next(method.combine(x, b, entry.params, state, i) for i, _, x, b in whole.chunks())
        expected[entry.name] = vlm.to(entry.out_dtype)
        expected[entry.name][pairing.rows(None)] = merged.reshape(len(pairing), -1).to(entry.out_dtype)
    monkeypatch.setattr(streaming, "CPU_TILE", 1000)
    monkeypatch.setattr(streaming, "READ_BLOCK", 3000)
    monkeypatch.setattr(selection, "EXACT_ELEMENTS", 4096)
    merged = merge_state_dict(plan)
    for entry in vocabulary:
        assert torch.equal(merged[entry.name], expected[entry.name]), entry.name
    plan.close()


# ---------------------------------------------------------------------------------------------
# The fixtures reproduce the real layouts


def test_fixtures_have_the_published_layouts(tiny_family):
    qwen = json.loads((tiny_family("qwen2_vl").vlm / "config.json").read_text())
    assert "text_config" not in qwen and qwen["rope_theta"] == 1e6 and qwen["rope_scaling"]["type"] == "mrope"
    internvl = load_file(tiny_family("internvl").vlm / "model.safetensors")
    assert "language_model.lm_head.weight" in internvl, "InternVL -hf checkpoints store an untied head"
    llava = load_file(tiny_family("llava_next_llama3").vlm / "model.safetensors")
    assert {k.split(".layers.")[0] for k in llava if ".layers." in k} >= {
        "language_model.model", "vision_tower.vision_model.encoder"}
    assert "language_model.lm_head.weight" in llava and "image_newline" in llava


def test_token_rows_are_compared_by_index_both_ways():
    """Rows differ where either side holds another token or none; identical vocabularies differ nowhere."""
    vlm = {"<s>": 0, "a": 1, "<image>": 2}
    assert row_differences(vlm, dict(vlm)) == []
    differences = row_differences(vlm, {"<s>": 0, "b": 1})
    assert differences == [(1, "b", "a"), (2, None, "<image>")]
    assert describe_differences(differences, shown=1) == "2 token rows differ at the same index (1-2): 1 'b' vs 'a' and 1 more"
    assert describe_differences(differences[1:]) == "1 token row differs at the same index: 2 none vs '<image>'"


def test_an_unreadable_tokenizer_stops_only_a_merge_that_pairs_rows(tiny_family, tmp_path):
    """The token-row comparison is a warning: a source whose tokenizer cannot load still plans with the default
    exclude (nothing compared, nothing paired), and is refused with a one-line error when embeddings merge."""
    family = tiny_family("qwen2_vl")
    broken = tmp_path / "broken"
    shutil.copytree(family.reasoning, broken)
    (broken / "tokenizer.json").write_text("{not json")
    plan = build_plan(parse_recipe(linear_recipe(family.vlm, broken)))
    assert not any("token row" in line for line in plan.warnings)
    with pytest.raises(CheckpointError, match="tokenizer could not be loaded"):
        build_plan(parse_recipe(linear_recipe(family.vlm, broken, exclude=[])))
