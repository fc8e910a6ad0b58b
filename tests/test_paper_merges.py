"""The shipped paper recipes merge as the paper's code (shiqichen17/VLM_Merging, PEFT's `ties`) does.

The references below are written from the published description of that code, deliberately
simple and independent of the engine: every model read as float16, task vectors as float16
differences, top-k trimming to int(density * n) entries (torch.topk), the elected sign from the
sum of the unweighted trimmed task vectors (>= 0 counts as +), weighted agreeing entries summed and
divided by the number of agreeing models (at least 1); linear and layer swap in float16 arithmetic.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from method_sources import InMemorySource
from safetensors.torch import load_file
from tiny_checkpoints import TinySizes, build_family

from merge_models.errors import RecipeError
from merge_models.executor import merge_state_dict
from merge_models.methods.native import TaskVectorMethod, TensorParams
from merge_models.plan import build_plan
from merge_models.recipe import parse_recipe, read_recipe_document

# Written out by hand: LLaVA-Next's published names of its language tensors, and the LLM's.
VLM_PREFIX, LLM_PREFIX = "language_model.model.", "model."


@pytest.fixture(scope="module")
def llava_trio(tmp_path_factory):
    """A tiny LLaVA-Next (Llama-3) VLM, base and reasoning LLM in the published layout, float16, 8 layers."""
    return build_family("llava_next_llama3", tmp_path_factory.mktemp("paper"), dtype=torch.float16,
                        sizes=TinySizes(layers=8))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def _shipped(name: str, family) -> dict:
    """A shipped recipe with the tiny trio's local paths substituted for its Hub ids."""
    doc = read_recipe_document(name)
    doc["vlm"]["model"] = str(family.vlm)
    if "base" in doc:
        doc["base"] = str(family.base)
    doc["sources"][0]["model"] = str(family.reasoning)
    return doc


def _language_pairs(family) -> list[tuple[str, str]]:
    """(VLM name, LLM name) of every language tensor the paper merges: all but the embeddings and the head."""
    return [(key, LLM_PREFIX + key[len(VLM_PREFIX):]) for key in _weights(family.vlm)
            if key.startswith(VLM_PREFIX) and "embed_tokens" not in key]


def paper_ties(taus: list[torch.Tensor], weights: list[float], density: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PEFT's ties on float16 task vectors; also the entries whose trimming torch.topk decides arbitrarily."""
    trimmed, undecided = [], torch.zeros(taus[0].numel(), dtype=torch.bool)
    for tau in taus:
        flat = tau.reshape(-1)
        magnitude = flat.abs().float()
        k = int(density * flat.numel())
        top = torch.topk(magnitude, k)
        keep = torch.zeros(flat.numel(), dtype=torch.bool)
        keep[top.indices] = True
        trimmed.append(torch.where(keep, flat, torch.zeros_like(flat)))
        if k and int((magnitude >= top.values[-1]).sum()) > k:  # ties straddle the cut
            undecided |= magnitude == top.values[-1]
    stacked = torch.stack(trimmed)
    elected = torch.where(stacked.sum(dim=0) >= 0, 1, -1)
    agree = stacked.sign() == elected
    weighted = stacked.float() * torch.tensor(weights).reshape(-1, 1)
    mixed = (weighted * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1)
    return mixed.reshape(taus[0].shape), undecided.reshape(taus[0].shape)


def paper_reference(family, mode: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """What merge.py computes for the shipped recipe's mode, per VLM tensor, as float16; and undecided entries."""
    vlm, base, llm = (_weights(p) for p in (family.vlm, family.base, family.reasoning))
    out, undecided = {}, {}
    for key, llm_key in _language_pairs(family):
        a, b = vlm[key].half(), llm[llm_key].half()
        if mode == "ties":
            theta = base[llm_key].half()
            mixed, undecided[key] = paper_ties([a - theta, b - theta], [1.6, 0.2], 0.2)
            out[key] = (theta.float() + mixed).half()
            continue
        layer = int(re.search(r"\d+", llm_key).group()) if re.search(r"\d+", llm_key) else None
        if mode == "layerswap" and layer is not None and layer <= 5:
            out[key] = a
        else:
            out[key] = 0.9 * a + (1 - 0.9) * b
    return out, undecided


def test_shipped_ties_recipe_equals_the_paper_code(llava_trio):
    ours = merge_state_dict(build_plan(parse_recipe(_shipped("llavanext-dartmath-ties", llava_trio))))
    expected, undecided = paper_reference(llava_trio, "ties")
    vlm = _weights(llava_trio.vlm)
    differing = total = ambiguous = 0
    for key, value in expected.items():
        assert ours[key].dtype == torch.float16
        mismatch = ours[key] != value
        assert not (mismatch & ~undecided[key]).any(), f"{key}: differs outside torch.topk's tied entries"
        differing += int(mismatch.sum())
        ambiguous += int(undecided[key].sum())
        total += value.numel()
    assert ambiguous < 0.01 * total, "the comparison must cover almost every entry exactly"
    for key, value in vlm.items():
        if not key.startswith(VLM_PREFIX) or "embed_tokens" in key:
            assert torch.equal(ours[key], value), f"{key} stays the VLM's"


def test_mergekit_conventions_differ_from_the_paper_code(llava_trio):
    """What the shipped recipe computed before it named the paper's conventions: far from the paper's merge."""
    recipe = _shipped("llavanext-dartmath-ties", llava_trio)
    for field in ("sign_election", "disjoint_mean", "min_kept", "task_vector_dtype"):
        recipe.pop(field)
    ours = merge_state_dict(build_plan(parse_recipe(recipe)))
    expected, _ = paper_reference(llava_trio, "ties")
    differing = sum(int((ours[k] != v).sum()) for k, v in expected.items())
    assert differing > 0.1 * sum(v.numel() for v in expected.values())


@pytest.mark.parametrize("recipe,mode", [("llavanext-dartmath-linear", "linear"),
                                         ("llavanext-dartmath-layerswap", "layerswap")])
def test_shipped_linear_and_layer_swap_equal_the_paper_code(llava_trio, recipe, mode):
    ours = merge_state_dict(build_plan(parse_recipe(_shipped(recipe, llava_trio))))
    expected, _ = paper_reference(llava_trio, mode)
    vlm, llm = _weights(llava_trio.vlm), _weights(llava_trio.reasoning)
    for (key, llm_key), value in zip(_language_pairs(llava_trio), expected.values()):
        assert ours[key].dtype == torch.float16
        # The paper's code rounds 0.9*a, 0.1*b and their sum to float16; we round once. Both are
        # within float16 precision of the operands: a few units in the last place of max(|a|, |b|).
        scale = torch.maximum(vlm[key].float().abs(), llm[llm_key].float().abs())
        assert bool(((ours[key].float() - value.float()).abs() <= scale * 2 ** -9 + 2 ** -24).all()), key
    if mode == "layerswap":
        assert torch.equal(ours[f"{VLM_PREFIX}layers.5.mlp.up_proj.weight"], vlm[f"{VLM_PREFIX}layers.5.mlp.up_proj.weight"])
        assert not torch.equal(ours[f"{VLM_PREFIX}norm.weight"], vlm[f"{VLM_PREFIX}norm.weight"])


def test_float32_inputs_are_rounded_like_the_paper_code(tiny_family):
    """Idefics2 is float32 on disk; the paper's code reads it as float16, and so does task_vector_dtype."""
    family = tiny_family("llava_next_llama3")  # float32 checkpoints
    ours = merge_state_dict(build_plan(parse_recipe(_shipped("llavanext-dartmath-ties", family))))
    expected, undecided = paper_reference(family, "ties")
    for key, value in expected.items():
        assert not ((ours[key] != value) & ~undecided[key]).any(), key


# ---------------------------------------------------------------------------------------------
# Each convention on its own, against a reference written from its definition.


def _reference(taus: list[torch.Tensor], weights: list[float], election: str, mean: str) -> torch.Tensor:
    stacked = torch.stack(taus)
    w = torch.tensor(weights).reshape(-1, 1)
    votes = {"weighted_sum": (stacked * w).sum(0), "unweighted_sum": stacked.sum(0), "count": stacked.sign().sum(0)}
    elected = torch.where(votes[election] >= 0, 1.0, -1.0)
    judged = stacked * w if election == "weighted_sum" else stacked
    agree = (judged.sign() == elected).float()
    total = (stacked * w * agree).sum(0)
    if mean == "count":
        return total / agree.sum(0).clamp(min=1)
    if mean == "weights":
        divisor = (w * agree).sum(0)
        return total / torch.where(divisor == 0, torch.ones_like(divisor), divisor)
    return total


@pytest.mark.parametrize("election", ["weighted_sum", "unweighted_sum", "count"])
@pytest.mark.parametrize("mean", ["weights", "count", "none"])
def test_sign_election_and_disjoint_mean(election, mean):
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(5000, generator=generator)
    taus = [torch.randn(5000, generator=generator) * s for s in (1.0, 3.0, 0.5)]
    weights = [1.6, 0.2, 0.0]  # a weight of 0 still votes (and counts) when the vote is unweighted
    params = TensorParams(weights=tuple(weights), densities=(1.0,) * 3, lam=1.0, normalize=mean != "none",
                          rescale="none", gamma=0.0, seed=0, name="t", sign_election=election, disjoint_mean=mean)
    method = TaskVectorMethod("magnitude", True)
    state = method.prepare(InMemorySource([base + t for t in taus], base), params)
    merged = method.combine([base + t for t in taus], base.clone(), params, state, 0)
    torch.testing.assert_close(merged - base, _reference(taus, weights, election, mean), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("min_kept,kept", [(0, 0), (1, 1)])
def test_min_kept_is_the_least_number_of_trimmed_entries(min_kept, kept):
    """PEFT keeps int(0.2 * 4) = 0 entries of a 4-entry task vector; mergekit's rule keeps 1."""
    base, tau = torch.zeros(4), torch.tensor([0.5, -2.0, 1.0, 0.25])
    params = TensorParams(weights=(1.0,), densities=(0.2,), lam=1.0, normalize=False, rescale="none", gamma=0.0,
                          seed=0, name="t", sign_election="unweighted_sum", disjoint_mean="count", min_kept=min_kept)
    method = TaskVectorMethod("magnitude", True)
    state = method.prepare(InMemorySource([base + tau], base), params)
    merged = method.combine([base + tau], base.clone(), params, state, 0)
    assert int((merged != 0).sum()) == kept
    if kept:
        assert float(merged[1]) == -2.0


def test_paper_dare_does_not_rescale(tiny_family):
    """rescale: none (the paper's DARE): kept task-vector entries keep their value; dropped ones vanish."""
    family = tiny_family("qwen2_vl")
    recipe = {"vlm": {"model": str(family.vlm), "weight": 1.0, "density": 0.3}, "base": str(family.base),
              "sources": [{"model": str(family.reasoning), "weight": 0.0, "density": 0.3}], "method": "dare_linear",
              "rescale": "none", "seed": 1}
    merged = merge_state_dict(build_plan(parse_recipe(recipe)))
    key = "model.layers.1.mlp.up_proj.weight"
    vlm, base = load_file(family.vlm / "model.safetensors")[key], load_file(family.base / "model.safetensors")[key]
    step = merged[key] - base
    kept = step != 0
    assert 0.25 < float(kept.float().mean()) < 0.35
    torch.testing.assert_close(step[kept], (vlm - base)[kept], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The recipe fields


def _ties(family, **extra) -> dict:
    return {"vlm": {"model": str(family.vlm), "weight": 1.6, "density": 0.2}, "base": str(family.base),
            "sources": [{"model": str(family.reasoning), "weight": 0.2, "density": 0.2}], "method": "ties", **extra}


@pytest.mark.parametrize("extra,field", [
    ({"method": "linear", "sign_election": "count"}, "sign_election"),
    ({"method": "dare_linear", "disjoint_mean": "count"}, "disjoint_mean"),
    ({"method": "dare_ties", "min_kept": 0}, "min_kept"),
    ({"method": "linear", "task_vector_dtype": "float16"}, "task_vector_dtype"),
    ({"disjoint_mean": "none", "normalize": True}, "disjoint_mean"),
    ({"disjoint_mean": "count", "normalize": False}, "disjoint_mean"),
    ({"sign_election": "majority"}, "sign_election"),
])
def test_convention_fields_are_checked(tiny_family, extra, field):
    recipe = _ties(tiny_family("qwen2_vl"), **extra)
    if recipe["method"] == "linear":
        for ref in (recipe["vlm"], *recipe["sources"]):
            ref.pop("density")
    with pytest.raises(RecipeError) as error:
        parse_recipe(recipe)
    assert error.value.field == field


def test_mergekit_conventions_spelled_out_hash_like_the_defaults(tiny_family):
    family = tiny_family("qwen2_vl")
    default = build_plan(parse_recipe(_ties(family))).recipe_hash
    spelled = _ties(family, sign_election="weighted_sum", disjoint_mean="weights", min_kept=1,
                    task_vector_dtype="float32")
    assert build_plan(parse_recipe(spelled)).recipe_hash == default
    paper = build_plan(parse_recipe(_ties(family, sign_election="unweighted_sum", disjoint_mean="count")))
    assert paper.recipe_hash != default
    assert paper.recipe.normalized()["sign_election"] == "unweighted_sum"
