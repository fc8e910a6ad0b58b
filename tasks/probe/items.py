"""Probe items: one builder per category turns random draws into a scene, a question and its answer.

Perception categories ask what is shown; reasoning categories need the same reading plus one step
(add, subtract, compare, multiply). The text that describes a scene in words lives here too, so the
image question and its text-only twin (`text_question`) are written by the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from PIL import Image

from .render import Scene, render
from .rng import Rng
from .scenes import (
    COUNT_RANGE,
    NUMBER_RANGE,
    SHAPE_COLOURS,
    WORDS,
    pair_scene,
    random_shape,
    shape_scene,
    shapes_scene,
    text_scene,
)

PERCEPTION_CATEGORIES = ("read_number", "read_word", "colour", "count")
REASONING_CATEGORIES = ("sum", "difference", "larger", "count_times")
SPLITS: dict[str, tuple[str, ...]] = {"perception": PERCEPTION_CATEGORIES, "reasoning": REASONING_CATEGORIES}
MULTIPLIER_RANGE = (2, 9)
N_COLOUR_CHOICES = 4

SUM_QUESTION = "What is the sum of the two numbers in the image?"
DIFFERENCE_QUESTION = "What is the larger number minus the smaller number in the image?"
LARGER_QUESTION = "Which of the two numbers in the image is larger?"


@dataclass(frozen=True)
class Item:
    """One probe question about one image; `text_question` states the image content in words instead."""

    id: str
    split: str
    category: str
    question: str
    answer: str
    answer_type: str  # "integer" | "text" | "multiple_choice" (then `answer` is the option letter)
    choices: tuple[str, ...]
    text_question: str
    scene: Scene
    operands: tuple[int, ...]  # reasoning items: the numbers the answer is computed from; else ()

    @cached_property
    def image(self) -> Image.Image:
        """The rendered scene (computed once per item)."""
        return render(self.scene)

    def as_row(self) -> dict[str, object]:
        """The item as a flat record, image included as a PIL image."""
        return {
            "id": self.id,
            "split": self.split,
            "category": self.category,
            "question": self.question,
            "answer": self.answer,
            "answer_type": self.answer_type,
            "choices": list(self.choices),
            "image": self.image,
            "text_question": self.text_question,
        }


@dataclass(frozen=True)
class Content:
    """What a category builder draws: everything about an item except its identity."""

    scene: Scene
    description: str
    question: str
    answer: str
    answer_type: str
    choices: tuple[str, ...] = ()
    operands: tuple[int, ...] = ()


def describe_pair(left: int, right: int) -> str:
    """Words for a two-number scene."""
    return f"The image shows two numbers: {left} on the left and {right} on the right."


def describe_shapes(count: int, colour: str, kind: str) -> str:
    """Words for a scene of `count` shapes of one colour and kind."""
    return f"The image shows {count} {colour} {kind}{'' if count == 1 else 's'}."


def count_times_question(multiplier: int) -> str:
    """The count-then-multiply question."""
    return f"Count the shapes in the image and multiply the count by {multiplier}. What is the result?"


def solve(category: str, operands: tuple[int, ...]) -> int:
    """The answer of a reasoning category for its operands."""
    a, b = operands
    if category == "sum":
        return a + b
    if category == "difference":
        return abs(a - b)
    if category == "larger":
        return max(a, b)
    if category == "count_times":
        return a * b
    raise ValueError(f"{category!r} is not a reasoning category; expected one of {REASONING_CATEGORIES}")


def _number(rng: Rng) -> int:
    return rng.randint(*NUMBER_RANGE)


def _two_numbers(rng: Rng, distinct: bool) -> tuple[int, int]:
    a, b = _number(rng), _number(rng)
    while distinct and a == b:
        b = _number(rng)
    return a, b


def _read_number(rng: Rng) -> Content:
    if rng.randint(0, 1) == 0:
        value = _number(rng)
        return Content(
            scene=text_scene(rng, str(value)),
            description=f"The image shows the number {value}.",
            question="What number is shown in the image?",
            answer=str(value),
            answer_type="integer",
        )
    left, right = _two_numbers(rng, distinct=False)
    side = rng.choice(("left", "right"))
    return Content(
        scene=pair_scene(rng, left, right),
        description=describe_pair(left, right),
        question=f"What is the number on the {side} in the image?",
        answer=str(left if side == "left" else right),
        answer_type="integer",
    )


def _read_word(rng: Rng) -> Content:
    word = rng.choice(WORDS)
    return Content(
        scene=text_scene(rng, word),
        description=f"The image shows the word {word}.",
        question="What word is written in the image?",
        answer=word,
        answer_type="text",
    )


def _colour(rng: Rng) -> Content:
    colour, kind = random_shape(rng)
    others = [name for name in SHAPE_COLOURS if name != colour]
    choices = tuple(rng.sample([colour, *rng.sample(others, N_COLOUR_CHOICES - 1)], N_COLOUR_CHOICES))
    letters = "ABCDEFGH"[: len(choices)]
    options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(letters, choices))
    return Content(
        scene=shape_scene(rng, colour, kind),
        description=f"The image shows a {colour} {kind}.",
        question=f"What colour is the shape in the image?\n{options}",
        answer=letters[choices.index(colour)],
        answer_type="multiple_choice",
        choices=choices,
    )


def _count(rng: Rng) -> Content:
    count = rng.randint(*COUNT_RANGE)
    colour, kind = random_shape(rng)
    return Content(
        scene=shapes_scene(rng, count, colour, kind),
        description=describe_shapes(count, colour, kind),
        question="How many shapes are in the image?",
        answer=str(count),
        answer_type="integer",
    )


def _pair_reasoning(category: str, question: str, distinct: bool) -> Callable[[Rng], Content]:
    def build(rng: Rng) -> Content:
        left, right = _two_numbers(rng, distinct)
        return Content(
            scene=pair_scene(rng, left, right),
            description=describe_pair(left, right),
            question=question,
            answer=str(solve(category, (left, right))),
            answer_type="integer",
            operands=(left, right),
        )

    return build


def _count_times(rng: Rng) -> Content:
    count, multiplier = rng.randint(*COUNT_RANGE), rng.randint(*MULTIPLIER_RANGE)
    colour, kind = random_shape(rng)
    return Content(
        scene=shapes_scene(rng, count, colour, kind),
        description=describe_shapes(count, colour, kind),
        question=count_times_question(multiplier),
        answer=str(solve("count_times", (count, multiplier))),
        answer_type="integer",
        operands=(count, multiplier),
    )


BUILDERS: dict[str, Callable[[Rng], Content]] = {
    "read_number": _read_number,
    "read_word": _read_word,
    "colour": _colour,
    "count": _count,
    "sum": _pair_reasoning("sum", SUM_QUESTION, distinct=False),
    "difference": _pair_reasoning("difference", DIFFERENCE_QUESTION, distinct=True),
    "larger": _pair_reasoning("larger", LARGER_QUESTION, distinct=True),
    "count_times": _count_times,
}


def split_of(category: str) -> str:
    """The split ("perception" or "reasoning") a category belongs to."""
    for split, categories in SPLITS.items():
        if category in categories:
            return split
    raise ValueError(f"unknown category {category!r}; expected one of {tuple(BUILDERS)}")


def make_item(item_id: str, category: str, content: Content) -> Item:
    """Give drawn content its identity and its text-only twin."""
    return Item(
        id=item_id,
        split=split_of(category),
        category=category,
        question=content.question,
        answer=content.answer,
        answer_type=content.answer_type,
        choices=content.choices,
        text_question=f"{content.description} {content.question}",
        scene=content.scene,
        operands=content.operands,
    )
