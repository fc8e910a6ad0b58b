"""Dataset scorers read documents in each dataset's published Hugging Face schema."""

from __future__ import annotations

import pytest
from mvlm_tasks.scoring import (
    Verdict,
    score_dynamath,
    score_mathverse,
    score_mathvision,
    score_mathvista,
    score_mmstar,
    score_multiple_choice,
    score_ocrbench,
)
from mvlm_tasks.scoring.datasets import lettered_options

MATHVISTA_MC = {
    "pid": "1",
    "question": "What is the largest city in the nation where this plane is headquartered?",
    "question_type": "multi_choice",
    "answer_type": "text",
    "choices": ["hong kong", "osaka", "shanghai", "tokyo"],
    "precision": None,
    "unit": None,
    "answer": "tokyo",
}
MATHVISTA_FLOAT = {
    "pid": "2",
    "question": "How much money does Luca need?",
    "question_type": "free_form",
    "answer_type": "float",
    "choices": None,
    "precision": 2.0,
    "unit": "$",
    "answer": "1.45",
}


def test_mathvista_multi_choice_gold_is_option_text() -> None:
    assert score_mathvista(MATHVISTA_MC, "The answer is D.") == Verdict("D", True, "answer_is")
    assert score_mathvista(MATHVISTA_MC, "It is Tokyo, the largest Japanese city.").correct
    assert not score_mathvista(MATHVISTA_MC, "(B) osaka").correct


def test_mathvista_free_form_uses_precision_and_integer_rules() -> None:
    assert score_mathvista(MATHVISTA_FLOAT, "Luca needs $1.449.").correct
    assert not score_mathvista(MATHVISTA_FLOAT, "Luca needs $1.5.").correct
    integer = {**MATHVISTA_FLOAT, "answer_type": "integer", "precision": None, "answer": "7"}
    assert score_mathvista(integer, "3 + 4 = 7, so 7 objects remain.").correct
    assert not score_mathvista(integer, "7.5").correct
    as_list = {**MATHVISTA_FLOAT, "answer_type": "list", "precision": None, "answer": "[2007, 2008]"}
    assert score_mathvista(as_list, "The peak is between 2007 and 2008.").correct


MMSTAR_QUESTION = (
    "Which option describe the object relationship in the image correctly?\nOptions: A: The suitcase is on the "
    "book., B: The suitcase is beneath the cat., C: The suitcase is beneath the bed., D: The suitcase is beneath "
    "the book."
)


def test_mmstar_options_are_read_from_the_question() -> None:
    doc = {
        "index": 0,
        "question": MMSTAR_QUESTION,
        "answer": "A",
        "category": "instance reasoning",
        "l2_category": "cross-instance relation reasoning",
        "meta_info": {},
    }
    assert score_mmstar(doc, "A").correct
    assert score_mmstar(doc, "The suitcase is on the book.").correct
    assert not score_mmstar(doc, "The suitcase is beneath the cat.").correct


@pytest.mark.parametrize(
    ("question", "options"),
    [
        (
            MMSTAR_QUESTION,
            [
                "The suitcase is on the book.",
                "The suitcase is beneath the cat.",
                "The suitcase is beneath the bed.",
                "The suitcase is beneath the book.",
            ],
        ),
        (
            "What is shown?\nOptions: A: A cat, sitting, B: A dog., C: 3, D: none",
            ["A cat, sitting", "A dog.", "3", "none"],
        ),
        (
            "Hint: answer with A, B, C, D.\nQuestion: x?\nChoices:\n(A) 40.7\n(B) 74\n(C) 70.4",
            ["40.7", "74", "70.4"],
        ),
        ("angle 2 is equal to ()\nChoices:\nA:50°\nB:60°\nC:65°\nD:90°", ["50°", "60°", "65°", "90°"]),
        ("Is it periodic? choice: (A) Yes (B) No", ["Yes", "No"]),
        ("No options in this question.", []),
    ],
)
def test_lettered_options(question: str, options: list[str]) -> None:
    assert lettered_options(question) == options


def test_ocrbench_containment_rules() -> None:
    doc = {
        "dataset": "IIIT5K",
        "question": "what is written in the image?",
        "question_type": "Regular Text Recognition",
        "answer": ["CHELSEA"],
    }
    assert score_ocrbench(doc, 'The text reads "Chelsea".') == Verdict("CHELSEA", True, "contains")
    assert not score_ocrbench(doc, "CHELSA").correct
    assert not score_ocrbench({**doc, "answer": [""]}, "anything").correct  # an empty gold matches nothing
    hme = {
        "dataset": "HME100k",
        "question_type": "Handwritten Mathematical Expression Recognition",
        "answer": ["x^{2}+2x+1"],
    }
    assert score_ocrbench(hme, "x ^ { 2 } + 2 x + 1").correct
    assert not score_ocrbench(
        {**hme, "dataset": "IIIT5K", "question_type": "Regular Text Recognition"}, "x ^ { 2 } + 2 x + 1"
    ).correct


def test_mathvision_letter_or_free_form() -> None:
    doc = {
        "id": "1",
        "question": "How many?",
        "options": ["2", "3", "4", "5", "6"],
        "answer": "C",
        "level": 2,
        "subject": "counting",
    }
    assert score_mathvision(doc, "Therefore, the answer is $\\boxed{C}$.").correct
    assert score_mathvision(doc, "\\boxed{4}").correct
    free = {**doc, "options": [], "answer": "3\\sqrt{2}"}
    assert score_mathvision(free, "The diagonal is \\boxed{\\sqrt{18}}").correct
    assert not score_mathvision(free, "The diagonal is \\boxed{2\\sqrt{3}}").correct


def test_mathverse_multi_choice_and_free_form() -> None:
    question = "then angle 2 is equal to ()\nChoices:\nA:50°\nB:60°\nC:65°\nD:90°"
    doc = {
        "sample_index": "1",
        "problem_index": "1",
        "problem_version": "Text Dominant",
        "question": question,
        "answer": "C",
        "question_type": "multi-choice",
        "query_wo": "",
        "query_cot": "",
        "question_for_eval": question,
        "metadata": {},
    }
    assert score_mathverse(doc, "∠2 = 65°").correct
    assert not score_mathverse(doc, "Angle 2 = 50°. The answer is A.").correct
    vision_only = {**doc, "question": "", "problem_version": "Vision Only", "answer": "B"}
    assert score_mathverse(vision_only, "Answer: B").correct
    free = {**doc, "question_type": "free-form", "answer": "y=-2x+4"}
    assert score_mathverse(free, "The slope is -2 and the intercept is 4, so y = 4 - 2x.").correct


def test_dynamath_float_tolerance_is_absolute_one_thousandth() -> None:
    doc = {
        "id": "1",
        "question": "What is the period?",
        "ground_truth": "2.0944",
        "answer_type": "float",
        "subject": "analytic geometry",
        "knowledge_level": "high school",
    }
    assert score_dynamath(doc, '{"solution": "...", "short answer": "2.094"}').correct
    assert score_dynamath(doc, "The period is $\\frac{2\\pi}{3}$.").correct
    assert not score_dynamath(doc, "The period is about 2.09.").correct
    assert not score_dynamath({**doc, "ground_truth": "1000.5"}, "1000.502").correct


def test_dynamath_multiple_choice_and_text() -> None:
    mc = {
        "question": "Is Dark Magenta greater than Rosy Brown? Choices: (A) yes (B) no",
        "ground_truth": "B",
        "answer_type": "multiple choice",
    }
    assert score_dynamath(mc, "No, it is smaller.").correct
    assert not score_dynamath(mc, "<answer>A</answer>").correct
    text = {"question": "What time is shown?", "ground_truth": "5:0", "answer_type": "text"}
    assert score_dynamath(text, "The time shown is 5:00.").correct
    pair = {"question": "Cartesian coordinates?", "ground_truth": "(0.886, -0.465)", "answer_type": "text"}
    assert score_dynamath(pair, "They are (0.8855, -0.4646).").correct
    assert not score_dynamath(pair, "They are (0.465, -0.886).").correct


def test_gold_may_be_letter_or_option_text() -> None:
    choices = ["red", "green", "blue"]
    assert score_multiple_choice("Answer: C", choices, "blue").correct
    assert score_multiple_choice("Answer: C", choices, "(C)").correct
    assert not score_multiple_choice("Answer: C", choices, "Z").correct


@pytest.mark.parametrize("doc", [{}, {"answer": None}, {"question_type": "multi_choice", "choices": None}])
def test_missing_fields_score_wrong_without_raising(doc: dict) -> None:
    for scorer in (
        score_mathvista,
        score_mmstar,
        score_ocrbench,
        score_mathvision,
        score_mathverse,
        score_dynamath,
    ):
        assert scorer(doc, "The answer is 5.").correct is False
