"""MathVerse testmini (reasoning): the five visual versions of each problem (text dominant, text
lite, vision intensive, vision dominant, vision only). Per-category scores are per version."""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_mathverse
from mvlm_tasks.sources import load_split

from .common import cot_instruction, record, results, visuals

VISION_ONLY_QUESTION = "Answer the question shown in the image."


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mathverse."""
    return load_split("mathverse", "testmini", "mvlm_mathverse")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The problem's image (for vision-only items it holds the whole question)."""
    return visuals(doc["image"])


def doc_to_text(doc: dict[str, Any]) -> str:
    """The question as given in this version (choices included) and the answer-format instruction."""
    question = doc["question"].strip() or VISION_ONLY_QUESTION
    kind = "choice" if doc["question_type"] == "multi-choice" else "free"
    return f"{question}\n{cot_instruction(kind)}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the problem version."""
    verdict = score_mathverse(doc, responses[0])
    return results(record(doc["sample_index"], "reasoning", doc["problem_version"], verdict,
                          problem=doc["problem_index"]))
