"""Merged values are bit-identical to reference digests recorded with the engine of commit be8bf1c.

Inputs are tie-heavy (few distinct task-vector magnitudes, many exact zeros) bf16 and fp16
checkpoints whose largest tensor spans two merge chunks, so exact top-k cut-offs, their
tie-breaking by position across chunk boundaries, DARE's per-chunk masks and every method's
arithmetic are pinned down. `python tests/test_merge_golden.py` rewrites the digests (only do
that for an intended change of merge results, and say so in the commit).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from merge_models import streaming
from merge_models.methods import selection
from merge_models.output import write_checkpoint
from merge_models.plan import build_plan
from merge_models.recipe import parse_recipe

GOLDEN = Path(__file__).with_name("merge_golden.json")
SHAPES = {
    "model.embed_tokens.weight": (40, 96),
    "model.layers.0.self_attn.q_proj.weight": (96, 96),
    "model.layers.0.self_attn.q_proj.bias": (96,),
    "model.layers.0.mlp.up_proj.weight": (1500, 1500),  # two chunks of 2**21 elements
    "model.layers.1.mlp.down_proj.weight": (96, 1000),
    "model.layers.1.input_layernorm.weight": (96,),
    "model.norm.weight": (96,),
    "lm_head.weight": (40, 96),
}
TEXT = {"hidden_size": 96, "num_hidden_layers": 2, "vocab_size": 40}
THREE = {"vlm": 1.0, "s0": 0.4, "s1": 0.3}
RECIPES: dict[str, dict] = {
    "linear": {"method": "linear", "weights": {"vlm": 0.6, "s0": 0.3, "s1": 0.1}},
    "linear_lambda": {"method": "linear", "weights": {"vlm": 0.5, "s0": 0.3, "s1": 0.2}, "lambda": 0.7},
    "task_arithmetic": {"method": "task_arithmetic", "weights": THREE, "lambda": 0.9},
    "task_arithmetic_normalize": {"method": "task_arithmetic", "weights": THREE, "normalize": True},
    "ties": {"method": "ties", "weights": {"vlm": 1.6, "s0": 0.2, "s1": 0.5},
             "densities": {"vlm": 0.2, "s0": 0.3, "s1": 0.5}},
    "ties_raw_sum": {"method": "ties", "weights": THREE, "density": 0.35, "normalize": False, "lambda": 1.2},
    "ties_full_density": {"method": "ties", "weights": THREE, "densities": {"vlm": 1.0, "s0": 0.01, "s1": 0.9}},
    "dare_linear": {"method": "dare_linear", "weights": THREE, "density": 0.4},
    "dare_linear_l1": {"method": "dare_linear", "weights": THREE, "density": 0.3, "rescale": "l1"},
    "dare_linear_none": {"method": "dare_linear", "weights": THREE, "density": 0.6, "rescale": "none"},
    "dare_ties": {"method": "dare_ties", "weights": THREE, "densities": {"vlm": 0.5, "s0": 0.3, "s1": 1.0},
                  "seed": 5},
    "breadcrumbs": {"method": "breadcrumbs", "weights": THREE, "densities": {"vlm": 0.8, "s0": 0.6, "s1": 0.9},
                    "gamma": 0.05},
    "breadcrumbs_ties": {"method": "breadcrumbs_ties", "weights": THREE, "density": 0.5, "gamma": 0.1,
                         "normalize": True},
    "ties_float32_out": {"method": "ties", "weights": THREE, "density": 0.3, "dtype": "float32"},
    "mergekit_ties": {"method": "mergekit.ties", "weights": THREE, "density": 0.3},
    "layer_swap_ties": {"method": "layer_swap", "layer_swap": {"keep_through": 0, "inner": "ties"},
                        "weights": THREE, "density": 0.25},
}
FP16_RECIPES = ("task_arithmetic", "ties", "dare_ties", "breadcrumbs", "ties_full_density")


def _write(folder: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    folder.mkdir(parents=True)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def build_inputs(root: Path, dtype: torch.dtype) -> dict[str, Path]:
    """A VLM, a base and two reasoning LLMs whose task vectors take few distinct magnitudes."""
    generator = torch.Generator().manual_seed(19)
    base = {k: (torch.randint(-64, 65, s, generator=generator) * 2.0**-8).to(dtype) for k, s in SHAPES.items()}
    models = {}
    for role in ("vlm", "s0", "s1"):
        models[role] = {k: (v.float() + torch.randint(-6, 7, v.shape, generator=generator) * 2.0**-10).to(dtype)
                        for k, v in base.items()}
    name = "bfloat16" if dtype == torch.bfloat16 else "float16"
    llm = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "torch_dtype": name, **TEXT}
    vlm = {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl", "torch_dtype": name,
           "text_config": TEXT, "vision_config": {"depth": 1}}
    visual = {"visual.patch_embed.proj.weight": torch.randn(32, 48, generator=generator).to(dtype)}
    return {"vlm": _write(root / "vlm", {**models["vlm"], **visual}, vlm),
            "base": _write(root / "base", base, llm),
            "s0": _write(root / "s0", models["s0"], llm),
            "s1": _write(root / "s1", models["s1"], llm)}


def recipe_for(spec: dict, paths: dict[str, Path]) -> dict:
    """A recipe mapping (all language tensors merged) from a compact RECIPES entry."""
    densities = spec.get("densities", {})

    def ref(role: str) -> dict:
        entry = {"model": str(paths[role]), "weight": spec["weights"][role]}
        return entry | ({"density": densities[role]} if role in densities else {})

    recipe = {"vlm": ref("vlm"), "base": str(paths["base"]), "sources": [ref("s0"), ref("s1")], "exclude": []}
    recipe |= {k: v for k, v in spec.items() if k not in ("weights", "densities")}
    return recipe


def merged_digest(folder: Path) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes in a merged checkpoint directory."""
    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(folder / "model.safetensors").items()):
        digest.update(f"{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def digests(root: Path) -> dict[str, str]:
    """Digest of every recipe's merged checkpoint on bf16 inputs, and of FP16_RECIPES on fp16 inputs."""
    out = {}
    for dtype, names in ((torch.bfloat16, list(RECIPES)), (torch.float16, FP16_RECIPES)):
        label = str(dtype).removeprefix("torch.")
        paths = build_inputs(root / label, dtype)
        for name in names:
            plan = build_plan(parse_recipe(recipe_for(RECIPES[name], paths)))
            folder = root / label / f"out-{name}"
            folder.mkdir()
            write_checkpoint(plan, folder)
            plan.close()
            out[f"{label}/{name}"] = merged_digest(folder)
    return out


def test_merged_values_match_reference_digests(tmp_path):
    expected = json.loads(GOLDEN.read_text())
    assert digests(tmp_path) == expected


@pytest.mark.parametrize("name", ["ties", "breadcrumbs_ties", "ties_full_density"])
def test_every_selection_and_streaming_path_gives_the_same_bits(name, tmp_path, monkeypatch):
    """The radix passes (as when a window misses), the tiles read again instead of held, and tiles
    combined one after another in order (ties placed as they come) give the reference bits too."""
    monkeypatch.setattr(selection, "_windowed", lambda source, queries, scan: None)  # every rank to radix
    monkeypatch.setattr(streaming, "HOLD_BYTES", 0)
    paths = build_inputs(tmp_path, torch.bfloat16)
    plan = build_plan(parse_recipe(recipe_for(RECIPES[name], paths)))
    (tmp_path / "out").mkdir()
    write_checkpoint(plan, tmp_path / "out")
    assert merged_digest(tmp_path / "out") == json.loads(GOLDEN.read_text())[f"bfloat16/{name}"]


def test_inputs_are_tie_heavy(tmp_path):
    """The digests pin tie-breaking only if many magnitudes are equal at the cut-off."""
    paths = build_inputs(tmp_path, torch.bfloat16)
    key = "model.layers.0.mlp.up_proj.weight"
    tau = (load_file(paths["vlm"] / "model.safetensors")[key].float()
           - load_file(paths["base"] / "model.safetensors")[key].float()).abs()
    assert tau.unique().numel() < 64 and tau.numel() > 1 << 21


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as temp:
        GOLDEN.write_text(json.dumps(digests(Path(temp)), indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
