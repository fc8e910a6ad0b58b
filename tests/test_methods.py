"""Merge methods: parity with mergekit 0.1.5, DARE keep-rate/rescale/determinism, exact streamed cut-offs."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest
import torch
from method_sources import InMemorySource
from safetensors.torch import load_file, save_file

from merge_models.executor import merge_state_dict
from merge_models.methods import selection
from merge_models.methods.native import TaskVectorMethod, TensorParams
from merge_models.methods.selection import select_magnitudes
from merge_models.methods.sparsify import RankCut, topk_start
from merge_models.streaming import CHUNK_ELEMENTS
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


def run_method(method, inputs, base, params, chunk):
    source = InMemorySource(inputs, base, chunk)
    state = method.prepare(source, params)
    return torch.cat([method.combine(x, b, params, state, i).clone() for i, _, x, b in source.chunks()])


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


def oracle_keep(magnitude: torch.Tensor, rank: int) -> torch.Tensor:
    """The old whole-tensor cut-off: entries whose ascending (magnitude, index) rank is >= `rank`,
    from a stable sort of every magnitude at once (ties broken by position)."""
    keep = torch.zeros(magnitude.numel())
    keep[torch.sort(magnitude, stable=True).indices[rank:]] = 1.0
    return keep


def streamed_keep(magnitude: torch.Tensor, rank: int, tile: int, scanner) -> torch.Tensor:
    """The engine's cut-off: the rank's value found by streaming selection, applied tile by tile."""
    n = magnitude.numel()
    source = InMemorySource([magnitude], torch.zeros(n), tile)
    found = select_magnitudes(source, [[rank + 1]], scanner)[0][0] if 0 < rank < n else None
    cut = RankCut.at(rank, n, found)
    tiles = list(source.chunks())
    if cut.any_order:  # then each tile is cut on its own: go backwards to prove it
        kept = {i: cut.keep(x[0], torch.empty(x[0].numel()), i) for i, _, x, _ in reversed(tiles)}
        return torch.cat([kept[i] for i in sorted(kept)])
    return torch.cat([cut.keep(x[0], torch.empty(x[0].numel()), i) for i, _, x, _ in tiles])


def _magnitudes(kind: str, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(19)
    if kind == "continuous":
        return torch.randn(n, generator=generator).abs()
    if kind == "few_values":  # most entries tie with others, as bf16 task vectors do
        return torch.randint(0, 40, (n,), generator=generator).float() * 2.0**-10
    if kind == "one_value_dominates":
        values = torch.full((n,), 0.5)
        values[torch.randint(0, n, (n // 10,), generator=generator)] = torch.rand(n // 10, generator=generator)
        return values
    return torch.cat([torch.zeros(n // 2), torch.arange(n - n // 2).float()])  # "sorted_halves": sample-hostile


@pytest.mark.parametrize("kind", ["continuous", "few_values", "one_value_dominates", "sorted_halves"])
def test_streamed_cutoffs_equal_the_whole_tensor_oracle(kind, monkeypatch):
    """Exactly the oracle's entries are kept, for ranks across the range, through both selection paths
    (the sample window, and the radix passes it falls back to) and both scan implementations."""
    monkeypatch.setattr(selection, "EXACT_ELEMENTS", 1 << 16)  # stream tensors above this size
    n, limits = 300_007, (selection.GATHER_LIMIT, 0)  # 0: every window overflows, the radix passes decide
    magnitude = _magnitudes(kind, n)
    for rank in (1, n // 7, topk_start(n, 0.2), n - 1):
        expected = oracle_keep(magnitude, rank)
        for scan in (selection.CpuScanner(), selection.TorchScanner()):
            for limit in limits:
                monkeypatch.setattr(selection, "GATHER_LIMIT", limit)
                kept = streamed_keep(magnitude, rank, 10_007, scan)  # tiles end inside tie groups
                assert torch.equal(kept, expected), (kind, rank, type(scan).__name__, limit)


def test_small_tensors_are_ranked_directly_and_exactly():
    magnitude = _magnitudes("few_values", 50_001)
    for rank in (0, 1, 25_000, 50_000, 50_001):
        kept = streamed_keep(magnitude, rank, 4096, None)
        assert torch.equal(kept, oracle_keep(magnitude, min(rank, 50_001))), rank


def test_compiled_and_torch_scans_agree_on_every_count():
    """The compiled CPU loops and the torch operations (used on accelerators) find the same window
    counts, gathered values and histograms."""
    magnitude = _magnitudes("few_values", 300_000).numpy()
    compiled, reference = selection.CpuScanner(), selection.TorchScanner()
    for lo, hi in ((0.0, 2.0**-10), (5 * 2.0**-10, 11 * 2.0**-10), (0.0, float("inf"))):
        a, b = selection.Query(0, 1, lo, hi), selection.Query(0, 1, lo, hi, counts=[0, 0, 0, 0])
        compiled.window(magnitude, a)
        reference.window(torch.from_numpy(magnitude), b)
        assert [int(c) for c in a.counts] == b.counts and a.filled == b.filled
        assert torch.equal(compiled.gathered(a), reference.gathered(b))
    tops = compiled.counter(), reference.counter()
    compiled.histogram_top(magnitude, tops[0])
    reference.histogram_top(torch.from_numpy(magnitude), tops[1])
    assert (tops[0] == tops[1].numpy()).all()
    bucket = int(np.nonzero(tops[0])[0][3])
    lows = compiled.counter(), reference.counter()
    compiled.histogram_low(magnitude, bucket, lows[0])
    reference.histogram_low(torch.from_numpy(magnitude), bucket, lows[1])
    assert (lows[0] == lows[1].numpy()).all() and lows[0].sum() == tops[0][bucket]


def test_ties_trimming_keeps_exactly_k_largest():
    magnitude = torch.randn(10_001).abs()
    kept = streamed_keep(magnitude, topk_start(10_001, 0.2), 1000, None).bool()
    assert int(kept.sum()) == 2000
    assert magnitude[kept].min() >= magnitude[~kept].max()


def _adversarial_tiles(n: int, inputs: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Input and base tiles where task vectors are zero, negative zero, cancel out exactly (a vote of
    0), overflow to infinity when summed, or are ordinary."""
    generator = torch.Generator().manual_seed(23)
    base = torch.randn(n, generator=generator)
    tiles = [base + torch.randn(n, generator=generator) for _ in range(inputs)]
    quarter = n // 4
    tiles[0][:quarter] = base[:quarter]  # a zero task vector
    tiles[1][quarter:2 * quarter] = 2 * base[quarter:2 * quarter] - tiles[0][quarter:2 * quarter]  # votes of 0
    base[2 * quarter:2 * quarter + 7] = -0.0
    tiles[-1][2 * quarter:2 * quarter + 7] = 0.0
    tiles[0][-5:], tiles[-1][-5:] = 3e38, 3e38  # sums beyond float32's range
    return tiles, base


@pytest.mark.parametrize("sparsify", [None, "dare"])
def test_compiled_task_vector_loops_give_the_torch_operations_bits(sparsify, monkeypatch):
    """On the CPU, TIES-family tiles go through fused compiled loops; accelerators run the torch
    operations. Both must give the same bits for every option the loops cover."""
    from merge_models.methods import native

    n = 40_003
    cases = []
    for elect in (True, False):
        for election in ("weighted_sum", "unweighted_sum"):
            for mean in ("weights", "count", "none", None):
                for rescale in ("none", "inverse_density", "l1"):
                    cases.append((elect, election, mean, rescale, bool(len(cases) % 2), 1.0 if len(cases) % 3 else 0.7))
    for elect, election, mean, rescale, normalize, lam in cases:
        for weights, densities in (((1.0, 0.2), (0.2, 0.2)), ((0.7, -0.5, 1.0), (1.0, 0.3, 0.5))):
            method = TaskVectorMethod(sparsify, elect)
            params = TensorParams(weights=weights, densities=densities, lam=lam, normalize=normalize, rescale=rescale,
                                  gamma=0.0, seed=3, name="layers.0.mlp.up_proj.weight", sign_election=election,
                                  disjoint_mean=mean)
            state = [1.7, 0.9, 1.1][:len(weights)] if sparsify == "dare" and rescale == "l1" else None
            results = []
            for compiled in (True, False):
                monkeypatch.setattr(native, "_uses_compiled_loops", lambda base, rounding, on=compiled: on)
                tiles, base = _adversarial_tiles(n, len(weights))
                results.append(method.combine(tiles, base, params, state, 5).clone())
            assert torch.equal(results[0].view(torch.int32), results[1].view(torch.int32)), (
                elect, election, mean, rescale, normalize, lam, weights)


def test_dare_blocks_are_combined_two_at_once(tmp_path, monkeypatch):
    """DARE's blocks are single tiles (its masks are seeded per block). The next block is combined while
    the last one is handed on, so both CPU workers run, as they do for every other method."""
    from tiny_checkpoints import TinySizes, build_family

    from merge_models.methods import native

    sizes = TinySizes(hidden=128, layers=1, heads=4, kv_heads=2, intermediate=3 * CHUNK_ELEMENTS // 128 + 8)
    family = build_family("qwen2_vl", tmp_path / "trio", sizes=sizes)
    recipe = {"vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base), "method": "dare_ties",
              "sources": [{"model": str(family.reasoning), "weight": 0.7, "density": 0.4}], "seed": 3}
    plan = build_plan(parse_recipe(recipe))
    unwatched = merge_state_dict(plan)
    running, most = [0], [0]
    lock = threading.Lock()
    combine = native.TaskVectorMethod.combine

    def watched(self, *args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # long enough for a second tile to be submitted meanwhile
        try:
            return combine(self, *args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(native.TaskVectorMethod, "combine", watched)
    watched_merge = merge_state_dict(plan)
    assert most[0] == 2
    assert all(torch.equal(unwatched[k], watched_merge[k]) for k in unwatched)
