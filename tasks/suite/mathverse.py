"""MathVerse testmini (reasoning): the five visual versions of each problem (text dominant, text
lite, vision intensive, vision dominant, vision only). Per-category scores are per version.

Official prompt: the dataset's `query_wo` field, the prompt of MathVerse's primary 'w/o' score (a
direct answer; `query_cot` is its prompt for the separate chain-of-thought evaluation). The `_cot`
variant uses the project's prompt instead.
"""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_protocols
from mvlm_tasks.sources import load_split

from .common import COT_PROMPT, cot_instruction, prompt_style, record, results, visuals

VISION_ONLY_QUESTION = "Answer the question shown in the image."


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mathverse (and its _cot variant)."""
    return load_split("mathverse", "testmini", "mvlm_mathverse")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The problem's image (for vision-only items it holds the whole question)."""
    return visuals(doc["image"])


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """Official: `query_wo` as published. `_cot`: the question of this version (choices included) and
    the chain-of-thought instruction."""
    if prompt_style(lmms_eval_specific_kwargs) == COT_PROMPT:
        question = doc["question"].strip() or VISION_ONLY_QUESTION
        kind = "choice" if doc["question_type"] == "multi-choice" else "free"
        return f"{question}\n{cot_instruction(kind)}"
    return doc["query_wo"]


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the problem version."""
    verdicts = score_protocols("mathverse", doc, responses[0])
    return results(record(doc["sample_index"], "reasoning", doc["problem_version"], verdicts,
                          problem=doc["problem_index"]))
