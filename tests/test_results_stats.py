"""harness_ext.results.stats: task scores from per-sample values (the suite's own definitions), the paired
bootstrap, McNemar's test; and the split rows of a comparison."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mvlm_tasks.suite import metrics

from harness_ext.results import stats
from harness_ext.results.compare import compare
from harness_ext.results.record import Sample, TaskResult, Variant
from harness_ext.results.selection import Evaluation

records = st.lists(st.fixed_dictionaries({"correct": st.booleans(), "category": st.sampled_from("abc"),
                                          "seed": st.sampled_from(["s1", "s2", "s3", "s4"])}), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(records)
def test_scores_equal_the_suite_aggregations(items):
    values = [float(r["correct"]) for r in items]
    categories, seeds = [r["category"] for r in items], [r["seed"] for r in items]
    assert stats.score(values, "micro", categories, seeds) == pytest.approx(metrics.micro_accuracy(items))
    assert stats.score(values, "macro", categories, seeds) == pytest.approx(metrics.macro_accuracy(items))
    assert stats.score(values, "cluster_mean", categories, seeds) == pytest.approx(
        metrics.seed_average_accuracy(items))


def test_bootstrap_is_paired_seeded_and_resamples_the_score_units():
    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.5
    b = a.copy()
    b[:30] = ~b[:30]
    design = stats.Design.of("micro", ["x"] * 300, [None] * 300)
    assert not stats.bootstrap_deltas(a, a, design, 500, np.random.default_rng(1)).any()
    first = stats.bootstrap_deltas(a, b, design, 2000, np.random.default_rng(1))
    assert np.array_equal(first, stats.bootstrap_deltas(a, b, design, 2000, np.random.default_rng(1)))
    observed = b.mean() - a.mean()
    low, high = stats.interval(first, 0.05)
    assert low < observed < high and high - low < 0.2
    # one cluster holding every document: each replicate draws that cluster, so nothing varies
    one = stats.Design.of("cluster_mean", ["x"] * 300, ["seed"] * 300)
    assert np.allclose(stats.bootstrap_deltas(a, b, one, 200, np.random.default_rng(2)), observed)
    # macro: a replicate missing a category averages over the categories it has
    macro = stats.Design.of("macro", ["rare"] + ["common"] * 299, [None] * 300)
    assert not np.isnan(stats.bootstrap_deltas(a, b, macro, 500, np.random.default_rng(3))).any()


@pytest.mark.parametrize(("a_only", "b_only", "p", "test"), [
    (0, 0, 1.0, "none"),
    (7, 0, 2 * 0.5**7, "exact"),
    (12, 12, 1.0, "exact"),
    (20, 5, 0.005110, "chi2"),  # (|20 - 5| - 1)^2 / 25 = 7.84 on 1 degree of freedom
])
def test_mcnemar(a_only, b_only, p, test):
    a = [True] * a_only + [False] * b_only + [True] * 10
    b = [False] * a_only + [True] * b_only + [True] * 10
    result = stats.mcnemar(a, b)
    assert (result.a_only, result.b_only, result.test) == (a_only, b_only, test)
    assert result.p == pytest.approx(p, rel=1e-3)
    assert stats.mcnemar(b, a).p == pytest.approx(result.p)


def _evaluation(name: str, verdicts: dict[str, list[bool]]) -> Evaluation:
    tasks = {}
    for task, correct in verdicts.items():
        split = {"p": "perception", "r": "reasoning"}.get(task[0], "mixed")
        samples = [Sample(doc_id=i, id=f"{task}-{i}", category="c", value=float(c), correct=c, target="t",
                          split=split if split != "mixed" else "perception" if i < len(correct) // 2 else "reasoning")
                   for i, c in enumerate(correct)]
        tasks[task] = TaskResult(split=split, metric="mvlm_acc", aggregation="micro", score=float(np.mean(correct)),
                                 split_scores={split: float(np.mean(correct))}, n=len(correct), samples=samples)
    variant = Variant(id=name, name=name, kind="model")
    return Evaluation(name, variant, tasks, {t: name for t in tasks}, [])


def test_split_rows_average_their_tasks_with_a_stratified_bootstrap():
    a = _evaluation("a", {"p1": [True] * 10, "p2": [True] * 10, "r1": [False] * 10})
    b = _evaluation("b", {"p1": [True] * 6 + [False] * 4, "p2": [True] * 10, "r1": [True] * 5 + [False] * 5})
    comparison = compare(a, b, iterations=1000, seed=3)
    rows = {r.name: r for r in comparison.tasks + comparison.splits}
    assert rows["p1"].delta == pytest.approx(-0.4) and rows["p2"].delta == 0.0 and rows["r1"].delta == 0.5
    perception = rows["perception (mean of 2 tasks)"]
    assert perception.delta == pytest.approx(-0.2) and perception.n == 20
    assert (perception.mcnemar.a_only, perception.mcnemar.b_only) == (4, 0)
    assert perception.high <= 0 and perception.low >= -0.4
    assert rows["reasoning (mean of 1 task)"].low == rows["r1"].low  # a single task's split reuses its replicates


def test_a_mixed_task_counts_in_each_split_with_its_own_documents():
    a = _evaluation("a", {"m1": [True] * 10})
    b = _evaluation("b", {"m1": [False, False] + [True] * 8})
    rows = {r.name: r for r in compare(a, b, iterations=500).splits}
    perception, reasoning = rows["perception (mean of 1 task)"], rows["reasoning (mean of 1 task)"]
    assert (perception.n, perception.delta, reasoning.n, reasoning.delta) == (5, pytest.approx(-0.4), 5, 0.0)
