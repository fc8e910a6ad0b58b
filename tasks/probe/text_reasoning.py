"""Text-only arithmetic and comparison problems for training a reasoning LLM.

Each problem is phrased either plainly ("What is 17 plus 25?") or the way the probe's `text_question`
phrases a reasoning item, so that a model trained on these can be evaluated on the text-only probe.
Multiplication uses multiplicands up to 99 (not only the probe's shape counts 1-9), so the eval's
operand pairs can be withheld while single-digit products still occur inside larger ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .generate import generate_probe
from .items import (
    DIFFERENCE_QUESTION,
    LARGER_QUESTION,
    MULTIPLIER_RANGE,
    REASONING_CATEGORIES,
    SUM_QUESTION,
    Item,
    count_times_question,
    describe_pair,
    describe_shapes,
    solve,
)
from .rng import Rng
from .scenes import NUMBER_RANGE, random_shape

MULTIPLICAND_RANGE = (1, 99)


@dataclass(frozen=True)
class TextProblem:
    """A question with its integer answer; `text` is the training string."""

    id: str
    category: str
    question: str
    answer: str
    operands: tuple[int, ...]

    @property
    def text(self) -> str:
        return f"{self.question} Answer: {self.answer}"


def operand_key(category: str, operands: tuple[int, ...]) -> tuple[object, ...]:
    """What makes two problems the same: sum, difference and larger do not depend on operand order."""
    if category == "count_times":
        return (category, *operands)
    return (category, *sorted(operands))


def _draw_operands(rng: Rng, category: str) -> tuple[int, int]:
    if category == "count_times":
        return rng.randint(*MULTIPLICAND_RANGE), rng.randint(*MULTIPLIER_RANGE)
    a, b = rng.randint(*NUMBER_RANGE), rng.randint(*NUMBER_RANGE)
    while category != "sum" and a == b:
        b = rng.randint(*NUMBER_RANGE)
    return a, b


def _plain(category: str, a: int, b: int) -> str:
    if category == "sum":
        return f"What is {a} plus {b}?"
    if category == "difference":
        return f"What is {max(a, b)} minus {min(a, b)}?"
    if category == "larger":
        return f"Which is larger, {a} or {b}?"
    return f"What is {a} times {b}?"


def _probe_style(rng: Rng, category: str, a: int, b: int) -> str:
    if category == "count_times":
        colour, kind = random_shape(rng)
        return f"{describe_shapes(a, colour, kind)} {count_times_question(b)}"
    question = {"sum": SUM_QUESTION, "difference": DIFFERENCE_QUESTION, "larger": LARGER_QUESTION}[category]
    return f"{describe_pair(a, b)} {question}"


def generate_text_reasoning(n: int, seed: int, exclude: Iterable[Item] | None = None) -> list[TextProblem]:
    """`n` problems, categories taking turns, half of them (at random) phrased like the probe.

    No problem has the category and operands (see `operand_key`) of a reasoning item in `exclude`,
    which defaults to the default evaluation set's reasoning split.
    """
    excluded = {
        operand_key(item.category, item.operands)
        for item in (generate_probe("reasoning") if exclude is None else exclude)
        if item.operands
    }
    problems = []
    for i in range(n):
        category = REASONING_CATEGORIES[i % len(REASONING_CATEGORIES)]
        attempt = 0
        rng = Rng(f"text/{seed}/{i}/{attempt}")
        a, b = _draw_operands(rng, category)
        while operand_key(category, (a, b)) in excluded:
            attempt += 1
            rng = Rng(f"text/{seed}/{i}/{attempt}")
            a, b = _draw_operands(rng, category)
        question = _probe_style(rng, category, a, b) if rng.randint(0, 1) else _plain(category, a, b)
        problems.append(
            TextProblem(f"text-{seed}-{i:06d}", category, question, str(solve(category, (a, b))), (a, b))
        )
    return problems
