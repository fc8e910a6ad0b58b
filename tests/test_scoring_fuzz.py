"""Extraction and scoring never raise and stay under a second, whatever the response."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mvlm_tasks import scoring

MAX_CHARS = 20_000
TIME_LIMIT_S = 1.0
PIECES = [
    "9**9**9",
    "10^{10^{10}}",
    "2^{1000}",
    "1e99999",
    "x^x^x^x",
    "\\frac{",
    "\\dfrac12",
    "\\sqrt[",
    "\\sqrt{",
    "}",
    "{",
    "{{{{{{",
    "}}}}}}",
    "((((((",
    "))))))",
    "\\boxed{",
    "\\text{",
    "\\left(",
    "\\right)",
    "$",
    "$$",
    "\\",
    "^",
    "_",
    "the answer is ",
    "Answer: ",
    "Final answer: ",
    "**",
    "(A)",
    "B.",
    " C ",
    "A ",
    "I ",
    "option D",
    "is correct",
    "is not",
    "1,000",
    "3/4",
    "-",
    "−",
    "=",
    "≈",
    "%",
    "°",
    "π",
    "√",
    "²",
    "sqrt(",
    "sin",
    "|",
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    '"short answer": "',
    "\n",
    " ",
    ".",
    ",",
    "0",
    "7",
    "42",
    "123456789012345678901234567890123456789012345678901234567890",
    "0/0",
    "1/0",
    "x = ",
    "y",
    "cm",
    "$5",
]
_alphabet = st.characters(codec="utf-8", exclude_categories=("Cs",))
fragments = st.one_of(st.sampled_from(PIECES), st.text(alphabet=_alphabet, max_size=20))
responses = st.builds(
    lambda parts, repeat: ("".join(parts) * repeat)[:MAX_CHARS],
    st.lists(fragments, max_size=30),
    st.sampled_from([1, 1, 3, 50, 400, 2000]),
)
short_math = st.lists(st.sampled_from(PIECES + list("0123456789xy+-*/^()[]{}.,= ")), max_size=25).map("".join)

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

CHOICES = ["red", "2", "a cat", "x^2", "A large pond"]
DOCS: dict[str, tuple[Callable[[dict, str], scoring.Verdict], dict]] = {
    "mathvista_mc": (
        scoring.score_mathvista,
        {"question_type": "multi_choice", "answer_type": "text", "choices": CHOICES, "answer": "red"},
    ),
    "mathvista_float": (
        scoring.score_mathvista,
        {"question_type": "free_form", "answer_type": "float", "precision": 2.0, "answer": "1.45"},
    ),
    "mathvista_list": (
        scoring.score_mathvista,
        {"question_type": "free_form", "answer_type": "list", "answer": "[2007, 2008]"},
    ),
    "mmstar": (scoring.score_mmstar, {"question": "Q?\nOptions: A: 1, B: 2, C: 3, D: 4", "answer": "C"}),
    "ocrbench": (
        scoring.score_ocrbench,
        {"answer": ["abc", "x^{2}"], "question_type": "Regular Text Recognition"},
    ),
    "ocrbench_hme": (
        scoring.score_ocrbench,
        {
            "answer": ["x^{2}"],
            "dataset": "HME100k",
            "question_type": "Handwritten Mathematical Expression Recognition",
        },
    ),
    "mathvision": (scoring.score_mathvision, {"options": [], "answer": "3\\sqrt{2}"}),
    "mathverse": (scoring.score_mathverse, {"question_type": "free-form", "answer": "y=-2x+4"}),
    "dynamath_float": (
        scoring.score_dynamath,
        {"answer_type": "float", "ground_truth": "2.0944", "question": ""},
    ),
    "dynamath_text": (scoring.score_dynamath, {"answer_type": "text", "ground_truth": "(0.886, -0.465)"}),
}


def timed(fn: Callable[..., object], *args: object) -> object:
    start = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"took {elapsed:.2f}s"
    return result


@FUZZ
@given(response=responses)
def test_extraction_never_raises_or_stalls(response: str) -> None:
    letter, rule = timed(lambda: scoring.extract_choice(response, CHOICES))
    assert letter is None or letter in "ABCDE"
    assert isinstance(rule, str)
    timed(lambda: scoring.extract_choice(response, []))
    number, _ = timed(lambda: scoring.extract_number(response))
    assert number is None or scoring.numbers_equal(number, number)
    timed(lambda: scoring.numbers_equal(response, "5"))
    timed(lambda: scoring.expressions_equivalent(response[:300], "x^2+1"))


@FUZZ
@given(response=responses)
def test_scoring_never_raises_or_stalls(response: str) -> None:
    verdicts = [timed(lambda: scoring.score_multiple_choice(response, CHOICES, "B"))]
    for answer_type, gold in [
        ("integer", "12"),
        ("float", "0.75"),
        ("text", "May"),
        ("expression", "2\\sqrt{3}"),
        ("list", "[1, 2]"),
    ]:
        verdicts.append(timed(scoring.score_free_form, response, gold, answer_type, 2))
    for scorer, doc in DOCS.values():
        verdicts.append(timed(scorer, doc, response))
    assert all(isinstance(v, scoring.Verdict) and isinstance(v.correct, bool) for v in verdicts)


@settings(max_examples=150, deadline=None)
@given(pred=short_math, gold=short_math)
def test_math_comparisons_never_raise_or_stall(pred: str, gold: str) -> None:
    assert isinstance(timed(lambda: scoring.expressions_equivalent(pred, gold)), bool)
    assert isinstance(timed(lambda: scoring.numbers_equal(pred, gold)), bool)
    assert isinstance(timed(lambda: scoring.numbers_equal(pred, gold, precision=2)), bool)


PATHOLOGICAL = {
    "many answer phrases": "the answer is x^2+y^2+sqrt(z) " * 700,
    "many boxes": "\\boxed{x+y+z} " * 1400,
    "open braces": "{" * MAX_CHARS,
    "nested fracs": "\\frac{" * 5000,
    "nested sqrt": "\\sqrt{" * 3000 + "2" + "}" * 3000,
    "power tower": "The answer is " + "9^" * 6000 + "9",
    "latex tower": "\\boxed{" + "10^{" * 50 + "10" + "}" * 51,
    "digits": "9" * MAX_CHARS,
    "letters": "A B C D " * 2500,
    "parenthesised letters": "(A) (B) (C) " * 1600,
    "list of numbers": "1, 2, 3, 4, 5, " * 1300,
    "unclosed tags": "<answer>" * 2500,
    "json keys": '"short answer": "' * 1100,
    "backslashes": "\\" * MAX_CHARS,
    "unicode math": "π√²−×" * 4000,
    "equations": "x = " * 5000 + "5",
}


@pytest.mark.parametrize("response", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_20k_responses(response: str) -> None:
    timed(lambda: scoring.extract_choice(response, CHOICES))
    timed(lambda: scoring.extract_number(response))
    timed(lambda: scoring.score_free_form(response, "2\\sqrt{3}", "expression"))
    timed(lambda: scoring.score_free_form(response, "[1, 2]", "list"))
    timed(lambda: scoring.score_mmstar({"question": response, "answer": "A"}, response))
    timed(
        lambda: scoring.score_dynamath(
            {"answer_type": "multiple choice", "ground_truth": "A", "question": response}, response
        )
    )
