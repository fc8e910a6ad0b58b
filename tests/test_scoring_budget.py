"""Every official and strict scorer survives whatever a model writes: a number beyond the scoring
budget is scored wrong with the reason, nothing raises out of a scorer, and each call returns
within a generous bound (a correctness bound against minutes-long evaluations, not a benchmark)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mvlm_tasks.scoring import budget, protocols
from mvlm_tasks.scoring.official import mathvision
from mvlm_tasks.scoring.verdict import Verdict
from mvlm_tasks.suite.common import record

BOUND_S = 2.0
MC_CHOICES = ["red", "2", "a cat", "x^2"]
DOCS = {
    "mathvista": [
        {"question_type": "multi_choice", "answer_type": "text", "choices": MC_CHOICES, "answer": "red",
         "question": "Which?"},
        {"question_type": "free_form", "answer_type": "integer", "answer": "12", "question": "How many?"},
        {"question_type": "free_form", "answer_type": "float", "precision": 2, "answer": "1.45", "question": "?"},
        {"question_type": "free_form", "answer_type": "list", "answer": "[2007, 2008]", "question": "?"},
    ],
    "mathvision": [{"options": [], "answer": "3\\sqrt{2}"}, {"options": ["1", "2", "3", "4", "5"], "answer": "C"},
                   {"options": [], "answer": "(2,3)"}],
    "mathverse": [{"question_type": "free-form", "answer": "y=-2x+4", "question": "?"},
                  {"question_type": "multi-choice", "answer": "B", "question": "Choices:\nA:1\nB:2\nC:3"}],
    "dynamath": [{"answer_type": "float", "ground_truth": "2.0944", "question": ""},
                 {"answer_type": "multiple choice", "ground_truth": "B", "question": "A: 1 B: 2"},
                 {"answer_type": "text", "ground_truth": "(0.886, -0.465)", "question": ""}],
    "ocrbench": [{"answer": ["abc", "x^{2}"], "question_type": "Regular Text Recognition"},
                 {"answer": ["x^{2}"], "dataset": "HME100k",
                  "question_type": "Handwritten Mathematical Expression Recognition"}],
    "mmstar": [{"question": "Q?\nOptions: A: 1, B: 2, C: 3, D: 4", "answer": "C"}],
}
ADVERSARIAL = [
    "\\boxed{(2,(10^{4000})^{4000})}",
    "\\boxed{((2^{4096})^{4096})^{4096}}",
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
    "\\boxed{(10^{4000})!}",
    "\\boxed{4096!\\cdot 4096!}",
    "\\boxed{\\binom{10^{400}}{10^{200}}}",
    "\\boxed{" + "9" * 5000 + "}",
    "The answer is 9**9**9**9",
    "\\frac{" * 300,
    "(" * 500 + "1" + ")" * 500,
    "\\sqrt{" * 200 + "2" + "}" * 200,
    "\n" * 48_000 + "Question: 1",
    " \n" * 24_000,
    "\t\r\x0b\x0c\x1c\u2028\x00\x07" * 3000,
    "the answer is (A)" + " " * 40_000 + "(B)",
]
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
_math = st.lists(st.sampled_from(list("0123456789^{}()!+-*/., ") + ["\\boxed{", "\\frac", "10^{4000}",
                                                                       "2^{4096}", "\\sqrt", "\n", "="]),
                 max_size=40).map("".join)
responses = st.one_of(_text, _math, st.sampled_from(ADVERSARIAL),
                      st.tuples(st.sampled_from(ADVERSARIAL), _text).map("".join))


def _score_everywhere(response: str) -> None:
    for benchmark, docs in DOCS.items():
        for doc in docs:
            for protocol, scorer in protocols.SCORERS[benchmark].items():
                start = time.perf_counter()
                verdict = scorer(doc, response)
                elapsed = time.perf_counter() - start
                assert isinstance(verdict, Verdict) and isinstance(verdict.correct, bool), (benchmark, protocol)
                assert elapsed < BOUND_S, f"{benchmark}/{protocol} took {elapsed:.1f}s on {response[:60]!r}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(response=responses)
def test_no_scorer_raises_or_stalls_on_any_response(response: str) -> None:
    _score_everywhere(response)


def test_every_adversarial_case_is_scored_by_every_scorer() -> None:
    for response in ADVERSARIAL:
        _score_everywhere(response)


def test_mathvision_official_huge_tuple_item_is_wrong_with_reason() -> None:
    verdict = mathvision.score({"options": [], "answer": "3"}, "\\boxed{(2,(10^{4000})^{4000})}")
    assert (verdict.correct, verdict.rule) == (False, "over_budget")
    assert "4000 digits" in verdict.reason


def test_mathvision_official_power_chain_is_refused_before_it_is_computed() -> None:
    verdict = mathvision.score({"options": [], "answer": "3"}, "\\boxed{((2^{4096})^{4096})^{4096}}")
    assert (verdict.correct, verdict.rule) == (False, "over_budget")


def test_numbers_within_the_budget_are_still_compared() -> None:
    assert mathvision.is_equal("2^{4096}", "2^{4096}")
    assert mathvision.latex_value("2^{10}") == 1024
    assert mathvision.score({"options": [], "answer": "120"}, "\\boxed{5!}").correct


def test_power_check_uses_operand_sizes() -> None:
    budget.check_power(10, budget.MAX_DIGITS - 1)
    budget.check_power(2.0, 10**9)  # a float overflows by itself
    with pytest.raises(budget.BudgetExceeded):
        budget.check_power(2, budget.MAX_INT_BITS + 1)


def test_a_failing_scorer_scores_the_sample_wrong_with_the_reason() -> None:
    def broken(doc: dict, response: str) -> Verdict:
        raise ValueError("boom")

    verdict = protocols.guarded(broken)({}, "x")
    assert (verdict.correct, verdict.rule, verdict.reason) == (False, "scorer_error", "ValueError: boom")


def test_the_reason_is_kept_in_the_sample_record() -> None:
    verdicts = protocols.score_protocols("mathvision", {"options": [], "answer": "3"},
                                         "\\boxed{((2^{4096})^{4096})^{4096}}")
    sample = record("1", "test", "algebra", verdicts)
    assert sample["rule"] == "over_budget" and "digits" in sample["reason"]
    assert "reason" not in record("1", "test", "algebra", protocols.score_protocols(
        "mathvision", {"options": [], "answer": "3"}, "\\boxed{3}"))["verdicts"]["official"]
