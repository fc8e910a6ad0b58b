"""Pieces every task shares: prompt instructions, images for the model, and the per-sample record.

Every task's `process_results` returns the same record under each of its metric names, so that
lmms-eval's `--log_samples` files carry, for every sample, its split, category, extracted answer and
verdict, and each metric's aggregation (see `metrics`) reads what it needs from those records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mvlm_tasks.scoring import Verdict
from PIL import Image

# Metric names, shared by all tasks so results tooling can read them uniformly.
ACC = "mvlm_acc"  # the benchmark's primary score (what group split averages use)
MICRO = "mvlm_micro_acc"  # mean over samples
MACRO = "mvlm_macro_acc"  # mean over categories of the per-category accuracy
BY_CATEGORY = "mvlm_by_category"  # {category: accuracy}
WORST = "mvlm_worst_acc"  # DynaMath: share of seed questions answered right in every variant
STANDARD_METRICS = (ACC, MICRO, MACRO, BY_CATEGORY)

_COT = "Think step by step, then write {what} in \\boxed{{}}."


def cot_instruction(kind: str, precision: int | None = None) -> str:
    """The answer-format instruction appended to a chain-of-thought question.

    kind: "choice" (an option letter), "integer", "float" (with `precision` decimals when known),
    "list", or "free" (any final answer).
    """
    what = {
        "choice": "the letter of the correct option",
        "integer": "the final answer as an integer",
        "float": "the final answer as a number" + (
            "" if precision is None else f" with {precision} decimal place{'' if precision == 1 else 's'}"),
        "list": "the final answer as a list such as [1, 2, 3]",
        "free": "the final answer",
    }
    if kind not in what:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {tuple(what)}")
    return _COT.format(what=what[kind])


def short_instruction(kind: str) -> str:
    """The answer-format instruction for a question answered directly: "choice", "integer" or "text"."""
    instructions = {
        "choice": "Answer with the option letter only.",
        "integer": "Answer with a single integer.",
        "text": "Answer with a single word or phrase.",
    }
    if kind not in instructions:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {tuple(instructions)}")
    return instructions[kind]


def lettered(options: Sequence[str]) -> str:
    """Options as lines "(A) first", "(B) second", ..."""
    return "\n".join(f"({chr(65 + i)}) {option}" for i, option in enumerate(options))


def visuals(image: Image.Image) -> list[Image.Image]:
    """The visual list lmms-eval passes to models: one RGB image."""
    return [image.convert("RGB")]


def record(item_id: str | None, split: str, category: str, verdict: Verdict, **extra: Any) -> dict[str, Any]:
    """The per-sample record: ids, split, category, the extracted answer and the verdict."""
    return {
        "id": item_id,
        "split": split,
        "category": category,
        "extracted": verdict.extracted,
        "correct": bool(verdict.correct),
        "rule": verdict.rule,
        "flagged": bool(verdict.flagged),
        **extra,
    }


def results(sample: dict[str, Any], metrics: Sequence[str] = STANDARD_METRICS) -> dict[str, dict[str, Any]]:
    """`process_results` output: the record under every metric name the task declares."""
    return {metric: sample for metric in metrics}
