"""Every supported family: the merged checkpoint reloads and generates, vision and excluded tensors
are the VLM's bit for bit, and language tensors equal the formula computed here independently."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers as T
from safetensors.torch import load_file, save_file
from tiny_checkpoints import rename_prefix

from merge_models.executor import merge_state_dict
from merge_models.output import write_checkpoint
from merge_models.plan import build_plan
from merge_models.recipe import parse_recipe

# Written out by hand (not taken from the adapters): where each family keeps its language model.
LANGUAGE_PREFIX = {
    "qwen2_vl": "model.", "qwen2_5_vl": "model.", "llava": "language_model.model.",
    "llava_next": "language_model.model.", "llava_next_llama3": "language_model.model.",
    "llava_onevision": "language_model.model.", "internvl": "language_model.model.",
    "idefics2": "model.text_model.", "idefics3": "model.text_model.",
}
VISION_PREFIXES = ("visual.", "vision_tower.", "multi_modal_projector.", "image_newline", "model.vision_model.",
                   "model.connector.")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def _recipe(family) -> dict:
    return {"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base),
            "sources": [{"model": str(family.reasoning), "weight": 0.5}], "method": "task_arithmetic", "lambda": 0.8}


@pytest.mark.parametrize("name", sorted(LANGUAGE_PREFIX))
def test_family_merge_reloads_and_matches_formula(name, tiny_family, tmp_path):
    family = tiny_family(name)
    plan = build_plan(parse_recipe(_recipe(family)))
    write_checkpoint(plan, tmp_path)

    vlm, base, src, merged = (_weights(p) for p in (family.vlm, family.base, family.reasoning, tmp_path))
    assert merged.keys() == vlm.keys()
    prefix = LANGUAGE_PREFIX[name]
    checked = 0
    for key, value in merged.items():
        if key.startswith(VISION_PREFIXES) or "embed_tokens" in key or "lm_head" in key:
            assert torch.equal(value, vlm[key]), f"{key} must stay the VLM's"
            continue
        assert key.startswith(prefix), key
        llm_key = "model." + key[len(prefix):]
        expected = base[llm_key] + 0.8 * (1.0 * (vlm[key] - base[llm_key]) + 0.5 * (src[llm_key] - base[llm_key]))
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        assert not torch.equal(value, vlm[key])
        checked += 1
    assert checked >= 4 * 9, "every decoder layer's tensors must be merged"

    model = T.AutoModelForImageTextToText.from_pretrained(tmp_path)
    out = model.generate(torch.tensor([[5, 6, 7, 8]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 8)


def test_transformers5_layout_merges_like_the_hub_layout(tiny_family, tmp_path):
    """A checkpoint saved with transformers 5's in-memory names merges to the same values."""
    family = tiny_family("llava_next")
    renamed = tmp_path / "v5-layout"
    renamed.mkdir()
    for item in family.vlm.iterdir():
        if item.name != "model.safetensors":
            (renamed / item.name).write_bytes(item.read_bytes())
    renames = (("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
               ("vision_tower.", "model.vision_tower."),
               ("multi_modal_projector.", "model.multi_modal_projector."),
               ("image_newline", "model.image_newline"))
    weights = {rename_prefix(k, renames): v for k, v in _weights(family.vlm).items()}
    save_file(weights, renamed / "model.safetensors")
    legacy = merge_state_dict(build_plan(parse_recipe(_recipe(family))))
    recipe = _recipe(family)
    recipe["vlm"]["model"] = str(renamed)
    modern = merge_state_dict(build_plan(parse_recipe(recipe)))
    assert {rename_prefix(k, renames) for k in legacy} == set(modern)
    for key, value in legacy.items():
        assert torch.equal(value, modern[rename_prefix(key, renames)])


def test_shared_vocab_rows_merges_only_common_rows(tiny_family):
    family = tiny_family("llava_next")  # the VLM adds an image token to the LLM's vocabulary
    recipe = _recipe(family) | {"exclude": [], "shared_vocab_rows": True}
    merged = merge_state_dict(build_plan(parse_recipe(recipe)))
    vlm, base = _weights(family.vlm), _weights(family.base)
    rows = base["model.embed_tokens.weight"].shape[0]
    embed = merged["language_model.model.embed_tokens.weight"]
    assert embed.shape == vlm["language_model.model.embed_tokens.weight"].shape and rows < embed.shape[0]
    assert torch.equal(embed[rows:], vlm["language_model.model.embed_tokens.weight"][rows:]), \
        "image-token rows stay the VLM's"
    assert not torch.equal(embed[:rows], vlm["language_model.model.embed_tokens.weight"][:rows])
