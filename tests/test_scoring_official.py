"""The official protocol reproduces each benchmark's published evaluation rule for rule; one test per
rule, with the official code's behaviour as the expectation (worked out by reading that code)."""

from __future__ import annotations

import json

import pytest
from mvlm_tasks.scoring import OFFICIAL, STRICT, score_protocols
from mvlm_tasks.scoring.official import (
    dynamath,
    mathverse,
    mathvision,
    mathvista,
    mathvista_extraction,
    mmstar,
    ocrbench,
)


def normalize(extraction: str, choices=None, answer_type: str = "text", precision=None) -> str | None:
    question_type = "multi_choice" if choices else "free_form"
    return mathvista.normalize_extracted_answer(extraction, choices, question_type, answer_type, precision)


# ---------------------------------------------------------------- MathVista (calculate_score.py)


def test_mathvista_letter_in_parentheses_indexes_the_choices():
    assert normalize("(B) Moon", ["Sun", "Moon"]) == "Moon"
    assert normalize("B", ["Sun", "Moon"]) == "Moon"


def test_mathvista_unmatched_extraction_takes_the_nearest_option():
    assert normalize("Sunn", ["Sun", "Moon"]) == "Sun"  # Levenshtein distance 1
    assert normalize("N/A", ["Yes", "No"]) == "No"  # a refusal still lands on an option
    assert normalize("E", ["Sun", "Moon"]) == "Sun"  # out-of-range letter: a tie, the first option
    assert normalize("b", ["Sun", "Moon"]) == "Sun"  # letters are case-sensitive there


def test_mathvista_integer_answers_truncate():
    assert normalize("2.7", answer_type="integer") == "2"
    assert normalize("13.00", answer_type="integer") == "13"
    assert normalize("twelve", answer_type="integer") is None


def test_mathvista_float_answers_round_to_the_precision():
    assert normalize("1.25", answer_type="float", precision=1) == "1.2"
    assert normalize("3.14159", answer_type="float", precision=2) == "3.14"
    assert normalize("5", answer_type="float", precision=1) == "5.0"


def test_mathvista_list_answers_compare_as_written():
    assert normalize("[2014, 2016]", answer_type="list") == "[2014, 2016]"
    assert normalize("[2014,2016]", answer_type="list") == "[2014,2016]"  # != the gold "[2014, 2016]"


MATHVISTA_YES_NO = {"pid": "8", "question": "Is the number of tiny gray bicycles greater than the number of cars?",
                    "choices": ["Yes", "No"], "question_type": "multi_choice", "answer_type": "text",
                    "answer": "No", "precision": None, "unit": None}
MATHVISTA_INTEGER = {"pid": "2", "question": "what is the total volume of the measuring cup?", "choices": None,
                     "question_type": "free_form", "answer_type": "integer", "answer": "1000", "precision": None,
                     "unit": "g"}


def test_mathvista_refusal_lands_on_an_option_officially_and_is_wrong_strictly():
    response = "Sorry, I can't see the image, so I cannot answer."
    verdicts = score_protocols("mathvista", MATHVISTA_YES_NO, response)
    assert verdicts[OFFICIAL].correct and verdicts[OFFICIAL].rule == "nearest_refusal"
    assert not verdicts[STRICT].correct


def test_mathvista_statement_answers_a_yes_no_question():
    verdicts = score_protocols("mathvista", MATHVISTA_YES_NO, "The gray bicycles are not more numerous.")
    assert verdicts[OFFICIAL].correct and verdicts[STRICT].correct


def test_mathvista_truncation_makes_a_decimal_right_officially_only():
    verdicts = score_protocols("mathvista", MATHVISTA_INTEGER, "The cup holds about 1000.4 g.")
    assert verdicts[OFFICIAL].correct and not verdicts[STRICT].correct


def test_mathvista_number_the_question_states_is_not_the_answer():
    doc = {**MATHVISTA_INTEGER, "question": "How many items sold less than 5 units in at least one store?",
           "answer": "2"}
    assert mathvista.score(doc, "There are two items sold less than 5 units in at least one store.").correct


# ------------------------------------ MathVista answer extraction (GPT-4's habits, extract_answer.py)
# Each response below is, or is cut from, a real response of the development runs in
# benchmarks/official_evidence; the expectation is what the official pipeline made of it.


def official_prediction(doc: dict, response: str) -> str | None:
    """The extraction our rules predict for GPT-4, normalised as calculate_score.py does."""
    extraction, _ = mathvista_extraction.extract_by_rules(doc, response)
    return mathvista.normalize_extracted_answer(extraction, doc["choices"], doc["question_type"],
                                                doc["answer_type"], doc["precision"])


def test_mathvista_response_that_already_is_the_answer_skips_gpt():
    assert mathvista_extraction.quick_extraction("", MATHVISTA_YES_NO) == ""
    assert mathvista_extraction.quick_extraction("No", MATHVISTA_YES_NO) == "No"
    assert mathvista_extraction.quick_extraction("no", MATHVISTA_YES_NO) is None  # not an option's exact text
    assert mathvista_extraction.quick_extraction("1000", MATHVISTA_INTEGER) == "1000"
    assert mathvista_extraction.quick_extraction("1000 g", MATHVISTA_INTEGER) is None


def test_mathvista_stated_label_is_copied_even_beyond_the_options():
    """chatgpt_2shot_solution: GPT-4 extracted "C", which lands on "No" (nearest to "C")."""
    response = ("Without any additional information or context, it is impossible to determine the answer to this "
                "question. Therefore, the correct option letter is (C) Cannot be determined.")
    assert official_prediction(MATHVISTA_YES_NO, response) == "No"


def test_mathvista_lower_case_label_is_read_as_its_letter():
    """bard: "The answer is (b)." was extracted as "(b)", which calculate_score.py reads as B."""
    doc = {**MATHVISTA_YES_NO, "question": "Which image has the most non-zero AC coefficients?",
           "choices": ["(c)", "(d)", "(a)", "(b)", "(e)"], "answer": "(b)"}
    assert official_prediction(doc, "The answer is (b).\n\nImage B is a checkerboard image.") == "(d)"


def test_mathvista_bare_label_before_another_option_names_that_option():
    """mplugowl: "A: No" was extracted as "B" (GPT-4 reads "A:" as "Answer:")."""
    assert official_prediction(MATHVISTA_YES_NO, "A: No") == "No"


def test_mathvista_supposed_answers_before_a_refusal_are_no_answer():
    """chatgpt_2shot_solution: extracted as "Cannot determine", not as the supposed (B) No."""
    response = ("If there are more brown tandem bikes, then the answer is (A) Yes. Otherwise, the answer is (B) No."
                "\n\nWithout the image, we cannot determine the correct answer.")
    assert official_prediction(MATHVISTA_YES_NO, response) == "Yes"  # "Cannot determine" is nearest to "Yes"


def test_mathvista_no_matching_option_is_extracted_as_none():
    """chatgpt_2shot_solution: "The correct option is not provided." lands on the nearest option to
    the extraction, not on the option whose number the reasoning mentions (7)."""
    doc = {**MATHVISTA_YES_NO, "question": "If CB = 4.0, DB = 7.0, and D is the midpoint of AC, then AC is ()",
           "choices": ["6cm", "7cm", "4cm", "5cm"], "answer": "6cm"}
    response = ("Since D is the midpoint of AC, DB = 0.5 * AC. Therefore, 7.0 = 0.5 * AC, so AC = 14.0 cm.\n\n"
                "The correct option is not provided.")
    assert official_prediction(doc, response) == "6cm"


def test_mathvista_nothing_left_reads_zero():
    """minigpt4: "leaves no objects" was extracted as 0."""
    doc = {**MATHVISTA_INTEGER, "question": "Subtract all big red rubber cylinders and blue objects. "
           "How many objects are left?", "answer": "0"}
    assert official_prediction(doc, "Subtracting all big red rubber cylinders and blue objects leaves no objects.") == "0"


def test_mathvista_fraction_answer_is_unreadable_as_a_number():
    """chatgpt: "Final value: 4/3" was extracted as "4/3", which int(float(...)) cannot read."""
    doc = {**MATHVISTA_INTEGER, "question": "What is the ratio of the number of procedures in 2004 to that in 2007?",
           "answer": "1"}
    assert official_prediction(doc, "The ratio is 20/15, which simplifies to 4/3.\n\nFinal value: 4/3") is None


# ---------------------------------------------------------------- MATH-V (evaluate.py, utils.py)


def test_mathvision_reads_the_last_boxed_answer_after_equals():
    assert mathvision.model_answer("so x = \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert mathvision.model_answer("First \\boxed{3}, then \\boxed{x = 4}") == "4"
    assert mathvision.model_answer("... so the answer is C.") == "c"


def test_mathvision_values_are_equal_to_two_decimals():
    assert mathvision.is_equal("0.333", "\\frac{1}{3}")
    assert not mathvision.is_equal("0.3", "\\frac{1}{3}")
    assert mathvision.is_equal("(1,2)", "(1.0,2)")


def test_mathvision_letters_match_case_insensitively_or_by_option_text():
    options = ["KNAO", "KNGO", "KNR", "AGRO", "KAO"]
    assert mathvision.score({"options": options, "answer": "A"}, "\\boxed{a}").correct
    assert mathvision.score({"options": options, "answer": "A"}, "The word is \\boxed{KNAO}").correct


def test_mathvision_option_letter_with_its_text_is_missed_officially():
    doc = {"options": ["A", "B", "C", "D", "E"], "answer": "D"}
    verdicts = score_protocols("mathvision", doc, "The answer is (D) $2: 3$.")
    assert not verdicts[OFFICIAL].correct and verdicts[STRICT].correct


def test_mathvision_factorial_is_evaluated():
    assert mathvision.score({"options": [], "answer": "24"}, "\\boxed{4!}").correct
    assert not mathvision.score({"options": [], "answer": "4"}, "\\boxed{4!}").correct


# ---------------------------------------------------------------- MathVerse (GPT extraction and judge)


def test_mathverse_reads_only_the_last_30_words():
    doc = {"question_type": "free-form", "answer": "14"}
    late = "The straw is \\boxed{14} cm. " + "word " * 40
    verdicts = score_protocols("mathverse", doc, late)
    assert not verdicts[OFFICIAL].correct and verdicts[STRICT].correct
    assert mathverse.truncated("a b c") == "a b c"


def test_mathverse_multi_letter_answers_need_every_letter():
    doc = {"question_type": "multi-choice", "answer": "C\nD", "question": "Which?\nChoices:\nA:1\nB:2\nC:3\nD:4"}
    for protocol_verdicts in (score_protocols("mathverse", doc, "The answer is C and D."),):
        assert protocol_verdicts[OFFICIAL].correct and protocol_verdicts[STRICT].correct
    assert not any(v.correct for v in score_protocols("mathverse", doc, "The answer is C.").values())


def test_mathverse_choice_must_match_exactly():
    doc = {"question_type": "multi-choice", "answer": "B", "question": "Which?\nChoices:\nA:1\nB:2\nC:3"}
    assert mathverse.score(doc, "The answer is B.").correct
    assert not mathverse.score(doc, "The answer is B and C.").correct


# ---------------------------------------------------------------- DynaMath (*_json_eval.py)


def _json(short: str) -> str:
    return json.dumps({"solution": "...", "short answer": short}, ensure_ascii=False)


def test_dynamath_float_within_a_thousandth():
    doc = {"answer_type": "float", "ground_truth": "2.0944"}
    assert dynamath.score(doc, _json("2.094")).correct
    assert not dynamath.score(doc, _json("2.09")).correct
    assert dynamath.score(doc, _json("0.6667π")).correct  # a multiple of pi


def test_dynamath_choice_reads_the_first_characters():
    doc = {"answer_type": "multiple choice", "ground_truth": "B"}
    assert dynamath.score(doc, _json("B")).correct
    assert dynamath.score(doc, _json("(B) no")).correct
    assert not dynamath.score(doc, _json("The answer is B")).correct


def test_dynamath_text_is_contained_case_sensitively():
    doc = {"answer_type": "text", "ground_truth": "Sep"}
    assert dynamath.score(doc, _json("September")).correct
    assert not dynamath.score(doc, _json("september")).correct


def test_dynamath_without_json_the_last_line_less_its_last_character():
    assert dynamath.short_answer("Reasoning...\nB.") == ("B", "last_line")
    assert dynamath.score({"answer_type": "multiple choice", "ground_truth": "B"}, "Reasoning...\nB.").correct


# ---------------------------------------------------------------- OCRBench (example.py)


def test_ocrbench_contains_match_lowercased_with_newlines_as_spaces():
    doc = {"dataset": "STVQA", "answer": ["Chatswood Epping", "Chatswood, Epping"]}
    assert ocrbench.score(doc, "It says CHATSWOOD\nEPPING.").correct
    assert not ocrbench.score(doc, "It says Chatswood.").correct


def test_ocrbench_hme_removes_spaces_and_keeps_case():
    doc = {"dataset": "HME100k", "answer": ["y _ { 2 } = - 1\n"]}
    assert ocrbench.score(doc, "$y_{2}=-1$").correct
    assert not ocrbench.score(doc, "$Y_{2}=-1$").correct


def test_ocrbench_scores_the_whole_response():
    doc = {"dataset": "IIIT5K", "question_type": "Regular Text Recognition", "answer": ["CENTRE"]}
    verdicts = score_protocols("ocrbench", doc, "<think>It reads CENTRE.</think>I am not sure.")
    assert verdicts[OFFICIAL].correct and not verdicts[STRICT].correct


# ---------------------------------------------------------------- MMStar (eval/vlmeval/evaluate/mmstar.py)


@pytest.mark.parametrize(("response", "right"), [
    ("B", True), ("b. The red one", True), ("(B) red", True), ("Option B", True), ("The answer is B", True),
    ("So the answer is B", False), ("", False), ("A", False),
])
def test_mmstar_reads_the_letter_at_the_start(response: str, right: bool):
    assert mmstar.score({"answer": "B"}, response).correct is right
