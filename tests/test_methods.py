"""Merge methods: parity with mergekit 0.1.5, DARE keep-rate/rescale/determinism, selection exactness."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from merge_models.executor import merge_state_dict
from merge_models.methods.native import TaskVectorMethod, TensorParams
from merge_models.methods.sparsify import kth_smallest, rank_band_mask, topk_start
from merge_models.plan import build_plan
from merge_models.recipe import parse_recipe

mergekit_api = pytest.importorskip("mergekit.merge_methods.api")


@pytest.fixture(scope="module")
def trio_plus_second_source(tiny_family, tmp_path_factory):
    """The qwen2_vl trio plus a second reasoning LLM (another perturbation of the base)."""
    family = tiny_family("qwen2_vl")
    second = tmp_path_factory.mktemp("second") / "reasoning-2"
    shutil.copytree(family.reasoning, second)
    generator = torch.Generator().manual_seed(7)
    weights = {k: v + 0.03 * torch.randn(v.shape, generator=generator)
               for k, v in load_file(family.base / "model.safetensors").items()}
    save_file(weights, second / "model.safetensors")
    return family, second


def _mergekit_reference(family, second, method: str, recipe_params: dict) -> dict[str, torch.Tensor]:
    """Merge every language tensor with mergekit's in-memory API, fed by plain safetensors reads."""
    vlm = load_file(family.vlm / "model.safetensors")
    base = load_file(family.base / "model.safetensors")
    sources = [load_file(family.reasoning / "model.safetensors"), load_file(second / "model.safetensors")]
    out = {}
    for key in vlm:
        if not key.startswith("model.layers.") and key != "model.norm.weight":
            continue
        tensors = [vlm[key], sources[0][key], sources[1][key]]
        ids = ["vlm", "s0", "s1"]
        base_index = None
        if method != "linear":
            tensors.append(base[key])
            ids.append("base")
            base_index = 3
        out[key] = mergekit_api.merge_tensors(tensors, method, parameters=recipe_params, ids=ids,
                                              base_index=base_index, dtype=torch.float32)
    return out


PARITY = {
    "linear": ({"weight": {"vlm": 0.6, "s0": 0.3, "s1": 0.1}}, {}),
    "task_arithmetic": ({"weight": {"vlm": 1.0, "s0": 0.4, "s1": 0.3}, "lambda": 0.9}, {"lambda": 0.9}),
    "ties": ({"weight": {"vlm": 1.6, "s0": 0.2, "s1": 0.5}, "density": {"vlm": 0.2, "s0": 0.3, "s1": 0.5}}, {}),
    "breadcrumbs": ({"weight": {"vlm": 1.0, "s0": 0.5, "s1": 0.5}, "density": {"vlm": 0.8, "s0": 0.6, "s1": 0.9},
                     "gamma": {"vlm": 0.05, "s0": 0.05, "s1": 0.05}}, {"gamma": 0.05}),
}


@pytest.mark.parametrize("method", sorted(PARITY))
def test_parity_with_mergekit(method, trio_plus_second_source):
    family, second = trio_plus_second_source
    mk_params, extra = PARITY[method]
    weights, densities = mk_params["weight"], mk_params.get("density", {})

    def ref(model: str, key: str) -> dict:
        entry = {"model": model, "weight": weights[key]}
        if key in densities:
            entry["density"] = densities[key]
        return entry

    recipe = {"vlm": ref(str(family.vlm), "vlm"), "base": str(family.base), "method": method,
              "sources": [ref(str(family.reasoning), "s0"), ref(str(second), "s1")], **extra}
    ours = merge_state_dict(build_plan(parse_recipe(recipe)))
    theirs = _mergekit_reference(family, second, method, mk_params)
    assert len(theirs) >= 4 * 12
    worst = max(float((ours[k] - v).abs().max()) for k, v in theirs.items())
    assert worst <= 1e-6, f"{method}: max abs difference {worst}"


class InMemorySource:
    """Chunks of in-memory tensors, as TensorStream yields them from checkpoints."""

    def __init__(self, inputs: list[torch.Tensor], base: torch.Tensor, chunk: int) -> None:
        self.inputs, self.base, self.chunk, self.numel = inputs, base, chunk, base.numel()

    def chunks(self):
        for index, start in enumerate(range(0, self.numel, self.chunk)):
            stop = start + self.chunk
            yield index, start, [x[start:stop].clone() for x in self.inputs], self.base[start:stop].clone()


def run_method(method, inputs, base, params, chunk):
    source = InMemorySource(inputs, base, chunk)
    state = method.prepare(source, params)
    return torch.cat([method.combine(x, b, params, state, i) for i, _, x, b in source.chunks()])


def _params(n: int, **kw) -> TensorParams:
    values = dict(weights=(1.0,) * n, densities=(1.0,) * n, lam=1.0, normalize=False, rescale="inverse_density",
                  gamma=0.01, seed=11, name="t")
    return TensorParams(**(values | kw))


def test_dare_keep_rate_and_inverse_density_rescale():
    base = torch.randn(400_000)
    delta = torch.randn(400_000)
    dare = TaskVectorMethod("dare", False)
    dropped = run_method(dare, [base + delta], base, _params(1, densities=(0.3,)), 1 << 16) - base
    kept = dropped != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.005
    torch.testing.assert_close(dropped[kept], delta[kept] / 0.3, rtol=1e-5, atol=1e-6)
    l1 = run_method(dare, [base + delta], base, _params(1, densities=(0.3,), rescale="l1"), 1 << 16) - base
    assert torch.equal(l1 != 0, kept), "the mask depends on the seed alone, not on the rescale"
    assert abs(float(l1.abs().sum()) - float(delta.abs().sum())) < 1e-3 * float(delta.abs().sum())


@pytest.mark.parametrize("sparsify,elect", [("magnitude", True), ("band", False)])
def test_chunking_does_not_change_the_result(sparsify, elect):
    torch.manual_seed(0)
    base = torch.zeros(50_000)
    inputs = [torch.randint(-20, 21, (50_000,)).float() for _ in range(3)]  # heavy ties across chunks
    params = _params(3, weights=(1.0, 0.6, 0.3), densities=(0.2, 0.5, 0.35), gamma=0.05, normalize=elect)
    method = TaskVectorMethod(sparsify, elect)
    whole = run_method(method, inputs, base, params, 50_000)
    for chunk in (977, 4096, 25_000):
        assert torch.equal(run_method(method, inputs, base, params, chunk), whole), chunk


def test_dare_is_deterministic_across_threads_order_and_runs(tiny_family):
    family = tiny_family("qwen2_vl")
    recipe = {"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base), "method": "dare_ties",
              "sources": [{"model": str(family.reasoning), "weight": 0.7, "density": 0.4}], "seed": 3}
    plan = build_plan(parse_recipe(recipe))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = merge_state_dict(plan)
        torch.set_num_threads(2)
        plan.tensors.reverse()
        reversed_order = merge_state_dict(plan)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(one_thread[k], reversed_order[k]) for k in one_thread)
    reseeded = merge_state_dict(build_plan(parse_recipe(recipe | {"seed": 4})))
    assert any(not torch.equal(one_thread[k], reseeded[k]) for k in one_thread)


def test_exact_selection_on_large_tensors_with_ties():
    torch.manual_seed(0)
    values = torch.randint(0, 50, (3_000_000,)).float()  # many ties, above the exact-path size
    for rank in (1, 17, 1_500_000, 2_999_999, 3_000_000):
        value, below = kth_smallest(values, rank)
        assert value == torch.sort(values).values[rank - 1]
        assert below == int((values < value).sum())
    mask = rank_band_mask(values, 1_000_000, 2_400_000)
    assert int(mask.sum()) == 1_400_000
    order = torch.sort(values, stable=True).indices  # ties by position, as rank_band_mask promises
    expected = torch.zeros_like(mask)
    expected[order[1_000_000:2_400_000]] = True
    assert torch.equal(mask, expected)


def test_ties_trimming_keeps_exactly_k_largest():
    magnitude = torch.randn(10_001).abs()
    kept = rank_band_mask(magnitude, topk_start(10_001, 0.2), 10_001)
    assert int(kept.sum()) == 2000
    assert magnitude[kept].min() >= magnitude[~kept].max()
