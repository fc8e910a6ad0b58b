"""Answer extraction rules: multiple-choice letters and final numbers."""

from __future__ import annotations

import pytest
from mvlm_tasks.scoring import extract_choice, extract_number

COLORS = ["red", "green", "blue", "yellow"]


@pytest.mark.parametrize(
    "response",
    [
        "B",
        "(B)",
        "B.",
        "B)",
        "Answer: B",
        "the answer is (B)",
        "The correct answer is B.",
        "**B**",
        "\\boxed{B}",
        "$\\boxed{\\text{(B)}}$",
        "<answer>B</answer>",
        "Answer: b",
        "I'd go with B.",
        "Option B is correct.",
        '{"solution": "...", "short answer": "B"}',
        "**Final Answer**\n\nB",
    ],
)
def test_letter_formats(response: str) -> None:
    assert extract_choice(response, COLORS)[0] == "B"


def test_option_text_instead_of_letter() -> None:
    assert extract_choice("green", COLORS) == ("B", "option_text")
    assert extract_choice("The car in the photo is green.", COLORS)[0] == "B"
    assert extract_choice("The answer is green.", COLORS) == ("B", "answer_is")
    assert extract_choice("Answer: 12 cm", ["10 cm", "12 cm", "14 cm"])[0] == "B"


def test_numeric_option_matched_by_value() -> None:
    assert extract_choice("Counting gives 4.0 birds in total.", ["2", "4", "6", "8"])[0] == "B"
    assert extract_choice("The answer is 1/3.", ["$\\frac{1}{2}$", "$\\frac{1}{3}$"])[0] == "B"


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("A is wrong because the car is not red... so the answer is C.", "C"),
        ("The answer is A. Wait, let me look again. Actually, the answer is C.", "C"),
        ("First I got \\boxed{B}, but re-checking, the final answer is \\boxed{D}.", "D"),
        (
            "The correct option is B.\n\nWait, that is wrong: the car is yellow. So the correct option is D.",
            "D",
        ),
        ("The answer is not B. It's D.", "D"),
    ],
)
def test_last_stated_choice_wins(response: str, letter: str) -> None:
    assert extract_choice(response, COLORS)[0] == letter


def test_article_pronoun_and_letters_in_words_are_not_choices() -> None:
    assert extract_choice("A car is parked outside. It is blue.", COLORS)[0] == "C"
    assert extract_choice("I think it is blue.", COLORS)[0] == "C"
    assert extract_choice("A large red barn.", COLORS)[0] == "A"  # "red" is option A, the article is not
    assert extract_choice("ABC and BCD are congruent triangles.", COLORS) == (None, "none")
    assert extract_choice("In triangle ABC, point B lies on the circle.", COLORS) == (None, "none")


def test_leading_letter_beats_later_mentions() -> None:
    response = "B\n\nThe car is green; red (A) and blue (C) do not match."
    assert extract_choice(response, COLORS) == ("B", "leading_letter")


def test_no_choice_found() -> None:
    assert extract_choice("", COLORS) == (None, "none")
    assert extract_choice("I'm sorry, I cannot tell from the image.", COLORS) == (None, "refusal")
    assert extract_choice(None, COLORS) == (None, "none")  # type: ignore[arg-type]
    assert extract_choice("The answer is E.", COLORS)[0] is None  # only A-D exist


def test_without_choices_letters_a_to_e_are_read() -> None:
    assert extract_choice("The answer is E.", []) == ("E", "answer_is")
    assert extract_choice("Therefore \\boxed{F}", [])[0] is None


def test_reasoning_before_think_end_is_ignored() -> None:
    assert extract_choice("<think>maybe A? no...</think>\nThe answer is C.", COLORS)[0] == "C"
    assert extract_number("<think>I get 5, or 6</think>Final answer: 7")[0] == "7"


@pytest.mark.parametrize(
    ("response", "number"),
    [
        ("It costs $1,234.50 in total.", "1234.50"),
        ("The side is 12 cm.", "12"),
        ("The angle is 45°.", "45"),
        ("The angle is $45^\\circ$.", "45"),
        ("About 25% of the people.", "25%"),
        ("The ratio is 3/4.", "3/4"),
        ("The ratio is $\\frac{3}{4}$.", "3/4"),
        ("The final answer is -7.", "-7"),
        ("The final answer is −7.", "-7"),
        ("Final answer: 1.5e-3", "1.5e-3"),
        ("The answer is $1.5 \\times 10^{-3}$ m", "1.5*10^-3"),
        ("$$\\boxed{2\\sqrt{3}}$$", "2sqrt(3)"),
        ("The answer is 2 1/2.", "5/2"),
        ("There are three people.", "3"),
        ("Answer: 3 × 4 = 12", "12"),
        ("x = -2", "-2"),
    ],
)
def test_number_formats(response: str, number: str) -> None:
    assert extract_number(response)[0] == number


def test_final_stated_number_wins_over_intermediate_numbers() -> None:
    cot = (
        "Step 1: The rectangle is 4 by 6.\nStep 2: Area = 4 × 6 = 24.\nStep 3: Check: 6 × 4 = 24.\n"
        "Final answer: 24\n\nNote: the perimeter is 20."
    )
    assert extract_number(cot) == ("24", "answer_is")
    assert extract_number("The answer is 5. Wait, I made an error: the answer is 7.") == ("7", "answer_is")
    assert extract_number("So 3 + 4 = 7 fruits in total.") == ("7", "last_number")


def test_trailing_clauses_and_precision_notes_do_not_supply_the_answer() -> None:
    assert extract_number("The angle is 30 degrees, since it is half of 60 degrees.")[0] == "30"
    assert extract_number("The value is approximately 3.14 (rounded to 2 decimal places).")[0] == "3.14"
    assert extract_number("The time is 2.5 hours, i.e. 150 minutes.")[0] == "2.5"


def test_no_number() -> None:
    assert extract_number("") == (None, "none")
    assert extract_number("I cannot see the image clearly.") == (None, "refusal")


# ------------------------------------------------ reading answers that real model responses state


def test_refusals_state_no_answer_even_with_numbers_in_them():
    assert extract_number("Without the chart I cannot determine the 3 values.") == (None, "refusal")
    assert extract_choice("The correct option letter is: Cannot be determined.", COLORS) == (None, "refusal")
    # a refusal followed by an answer anyway is not one
    assert extract_number("I cannot see the image. However, such cups usually hold 500 g.")[0] == "500"


def test_yes_no_questions_answered_by_a_statement():
    yes_no = ["Yes", "No"]
    assert extract_choice("Dark Orchid is not the maximum.", yes_no) == ("B", "yes_no")
    assert extract_choice("Dark Orchid has the largest area.", yes_no) == ("A", "yes_no")
    assert extract_choice("A: No, Periwinkle is not the maximum.", yes_no)[0] == "B"  # "A:" labels the answer
    question = "Are there fewer big motorbikes than rubber choppers?"
    assert extract_choice("There are more rubber choppers than big motorbikes.", yes_no, question)[0] == "A"
    assert extract_choice("There are more big motorbikes than rubber choppers.", yes_no, question)[0] == "B"


def test_options_named_by_their_words():
    assert extract_choice("The letter has been flipped.", ["slide", "flip", "turn"]) == ("B", "option_words")
    assert extract_choice("If caterpillars decrease, plants may increase.",
                          ["plants decrease", "plants increase", "nothing happens"]) == ("B", "option_words")
    assert extract_choice("The organisms most affected are (C) Snake and raccoon, since grass feeds insects.",
                          ["Insects", "Hawk and snake", "Snake and raccoon"]) == ("C", "labelled_option")


def test_stated_letter_wins_over_the_value_after_it():
    assert extract_choice("The answer is (B) 5.", ["3", "4", "5", "6"])[0] == "B"
    assert extract_choice("The answer to the question is (B) It varies.", ["Sun", "It varies", "Moon"])[0] == "B"
    assert extract_choice("因此，选项为C。", ["1", "2", "3", "4"])[0] == "C"


def test_letters_only_as_whole_tokens():
    five = ["red", "white", "green", "brown", "purple"]
    assert extract_choice("The cube is red. \\boxed{R}", five) == (None, "boxed")
    assert extract_choice("\\boxed{R}", ["P", "R", "I", "S", "M"])[0] == "B"  # the option's text is R
    assert extract_choice("b", COLORS)[0] == "B" and extract_choice("(c)", COLORS)[0] == "C"


def test_number_words_and_operators_are_read():
    assert extract_number("There are three people.")[0] == "3"
    assert extract_number("So the count is \\boxed{4!}")[0] == "4!"  # not 4: the factorial is kept
