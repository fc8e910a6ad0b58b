"""The real-size stand-in generator (benchmarks/standins.py) at small width: what it writes is what the
real transformers classes expect of the published checkpoints."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch
import transformers as T
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import standins

SHRINK = {
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2},
    "vision": {
        "embed_dim": 32,
        "depth": 1,
        "num_heads": 2,
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    },
    "perceiver": {
        "hidden_size": 64,
        "resampler_depth": 1,
        "resampler_n_heads": 2,
        "resampler_head_dim": 8,
        "num_key_value_heads": 1,
    },
}
ROLES = [
    (trio, role, folder, standin)
    for trio, members in standins.TRIOS.items()
    for role, folder, standin in members
]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins")
    return {trio: standins.write_trio(trio, root / trio, layers=2, shrink=SHRINK) for trio in standins.TRIOS}


def _stored(path: Path) -> dict[str, tuple[torch.dtype, tuple[int, ...], str]]:
    """Every stored tensor's dtype, shape and file."""
    out = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(file, "pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not iterable)
                tensor = handle.get_slice(name)
                out[name] = (
                    getattr(
                        torch, {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[tensor.get_dtype()]
                    ),
                    tuple(tensor.get_shape()),
                    file.name,
                )
    for file in sorted(path.glob("pytorch_model*.bin")):
        for name, tensor in torch.load(file, weights_only=True, mmap=True).items():
            out[name] = (tensor.dtype, tuple(tensor.shape), file.name)
    return out


@pytest.mark.parametrize("trio,role,folder,standin", ROLES, ids=[f"{t}-{r}" for t, r, _, _ in ROLES])
def test_layout_matches_the_real_class_and_the_published_sharding(written, trio, role, folder, standin):
    path = written[trio][role]
    stored = _stored(path)
    assert {dtype for dtype, _, _ in stored.values()} == {standin.dtype}
    files = sorted({file for _, _, file in stored.values()})
    assert len(files) == standin.shards
    index_name = "pytorch_model.bin.index.json" if standin.pickle else "model.safetensors.index.json"
    index = json.loads((path / index_name).read_text())
    assert index["weight_map"] == {name: file for name, (_, _, file) in stored.items()}
    assert index["metadata"]["total_size"] == sum(
        torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        for dtype, shape, _ in stored.values()
    )
    if standin.pickle:
        assert (path / "training_args.bin").is_file() and not list(path.glob("*.safetensors"))
    # the oracle: the real class loads every stored tensor into a parameter of the same shape, none missing
    model_class = getattr(T, standin.config["architectures"][0])
    model, info = model_class.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    config = json.loads((path / "config.json").read_text())
    text = config.get("text_config", config)
    assert text["num_hidden_layers"] == 2
    assert model.get_input_embeddings().weight.shape[0] == standin.config.get(
        "text_config", standin.config
    ).get("vocab_size", standin.config.get("vocab_size"))


@pytest.mark.parametrize("trio,role,folder,standin", ROLES, ids=[f"{t}-{r}" for t, r, _, _ in ROLES])
def test_tokenizer_has_the_real_size_and_special_ids(written, trio, role, folder, standin):
    path = written[trio][role]
    tokenizer = T.AutoTokenizer.from_pretrained(path)
    vocab = standin.vocab
    assert len(tokenizer) == max(vocab.regular, max(vocab.specials) + 1)
    for index, token in vocab.specials.items():
        assert tokenizer.convert_tokens_to_ids(token) == index
    ids = tokenizer("What is 12 + 7?", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == "What is 12 + 7?"
    if standin.processor is not None:
        processor = T.AutoProcessor.from_pretrained(path)
        assert type(processor) is type(standin.processor(tokenizer))


def test_real_ids_of_the_image_tokens():
    ids = {
        s.repo: s.vocab.specials
        for s in (standins.QWEN2_VL, standins.LLAVA_NEXT, standins.IDEFICS2, standins.MAMMOTH)
    }
    assert ids["Qwen/Qwen2-VL-7B-Instruct"][151655] == "<|image_pad|>"
    assert ids["llava-hf/llama3-llava-next-8b-hf"][128256] == "<image>"
    assert ids["HuggingFaceM4/idefics2-8b"][32000] == "<fake_token_around_image>"
    assert ids["TIGER-Lab/MAmmoTH-7B-Mistral"][32000] == "[PAD]"


def test_full_size_configs_resolve_to_the_published_sizes():
    """Without --layers, the real config classes give the published sizes (meta device: nothing allocated)."""
    sizes = {}
    for _, _, standin in ROLES_FULL:
        tensors = standins.model_tensors(standin, standins.published_config(standin))
        sizes[standin.repo] = sum(torch.Size(shape).numel() for _, shape in tensors)
    assert round(sizes["Qwen/Qwen2-VL-7B-Instruct"] / 1e9, 2) == 8.29
    assert round(sizes["Qwen/Qwen2-Math-7B"] / 1e9, 2) == 7.62
    assert round(sizes["llava-hf/llama3-llava-next-8b-hf"] / 1e9, 2) == 8.36
    assert round(sizes["HuggingFaceM4/idefics2-8b"] / 1e9, 2) == 8.4
    assert round(sizes["TIGER-Lab/MAmmoTH-7B-Mistral"] / 1e9, 2) == 7.24


ROLES_FULL = [(t, r, s) for t, r, _, s in ROLES]


def _recipe(paths: dict[str, Path], folder: Path, **extra) -> Path:
    """A linear recipe (0.9 VLM, 0.1 source) over written stand-ins, as a YAML file for the CLI."""
    recipe = {
        "vlm": {"model": str(paths["vlm"]), "weight": 0.9},
        "sources": [{"model": str(paths["source"]), "weight": 0.1}],
        "method": "linear",
        "allow_pickle": True,
        **extra,
    }
    path = folder / "recipe.yaml"
    path.write_text(json.dumps(recipe))  # JSON is YAML
    return path


@pytest.mark.parametrize("embeddings", ["excluded", "merged"])
def test_plan_and_validate_name_the_rows_whose_tokens_differ_at_one_index(
    written, run_cli, tmp_path, caplog, embeddings
):
    """Idefics2-8b's row 32000 is <fake_token_around_image>, MAmmoTH-7B-Mistral's is [PAD]: one warning line names
    that row and both tokens (merging rows by index would mix them), whether or not the embeddings merge."""
    extra = {"exclude": [], "shared_vocab_rows": True} if embeddings == "merged" else {}
    recipe = _recipe(written["idefics2"], tmp_path, **extra)
    for command in ("plan", "validate"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="merged_vlm"):
            code, _, err = run_cli(command, recipe)
        assert code == 0, err
        lines = [r.getMessage() for r in caplog.records if "sources[0]" in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0], lines
        assert (
            "3 token rows differ at the same index: 32000 '[PAD]' vs '<fake_token_around_image>', "
            "32001 none vs '<image>', 32002 none vs '<end_of_utterance>'" in lines[0]
        )


def test_plan_names_qwen2_vls_vision_token_rows_qwen2_math_lacks(written, tmp_path):
    """Qwen2-VL's rows 151646-151656 hold vision tokens; Qwen2-Math (and Qwen2-7B) has no token there."""
    from merge_models.plan import build_plan
    from merge_models.recipe import parse_recipe

    paths = written["qwen2vl"]
    plan = build_plan(
        parse_recipe(
            {
                "vlm": str(paths["vlm"]),
                "base": str(paths["base"]),
                "sources": [{"model": str(paths["source"]), "weight": 0.5}],
                "method": "dare_ties",
                "density": 0.5,
            }
        )
    )
    for field in ("base", "sources[0]"):
        (line,) = [line for line in plan.warnings if line.startswith(field)]
        assert (
            "11 token rows differ at the same index (151646-151656): 151646 none vs '<|object_ref_start|>'"
            in line
        )
    assert "rope_theta 10000 vs 1e+06" in next(
        line for line in plan.warnings if line.startswith("sources[0]")
    )
