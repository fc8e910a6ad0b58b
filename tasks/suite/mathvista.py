"""MathVista testmini, split by the dataset's own question category: general-vqa (perception,
460 items) vs math-targeted-vqa (reasoning, 540 items). Per-category scores use `metadata.task`.

Official prompt: the dataset's `query` field (MathVista's zero-shot query: hint, question with its
unit, choices). The `_cot` variants ask for step-by-step reasoning and a \\boxed{} answer instead.
"""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_protocols
from mvlm_tasks.sources import load_split

from .common import COT_PROMPT, cot_instruction, lettered, prompt_style, record, results, visuals

SPLITS = {"general-vqa": "perception", "math-targeted-vqa": "reasoning"}


def _docs(category: str, task: str) -> datasets.Dataset:
    testmini = load_split("mathvista", "testmini", task)
    return testmini.filter(lambda metadata: metadata["category"] == category, input_columns=["metadata"])


def general_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mathvista_general (and its _cot variant)."""
    return _docs("general-vqa", "mvlm_mathvista_general")


def math_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mathvista_math (and its _cot variant)."""
    return _docs("math-targeted-vqa", "mvlm_mathvista_math")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image."""
    return visuals(doc["decoded_image"])


def _cot_text(doc: dict[str, Any]) -> str:
    question = doc["question"].strip()
    if doc.get("unit"):
        question += f" (Unit: {doc['unit']})"
    if doc["question_type"] == "multi_choice":
        return f"{question}\n{lettered(doc['choices'])}\n{cot_instruction('choice')}"
    kind = doc["answer_type"] if doc["answer_type"] in ("integer", "float", "list") else "free"
    precision = int(doc["precision"]) if kind == "float" and doc["precision"] is not None else None
    return f"{question}\n{cot_instruction(kind, precision)}"


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """Official: the `query` field as published. `_cot`: question (with its unit), choices, and the
    chain-of-thought instruction."""
    if prompt_style(lmms_eval_specific_kwargs) == COT_PROMPT:
        return _cot_text(doc)
    return doc["query"]


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; the record's category is the MathVista task (figure QA, geometry, ...)."""
    metadata = doc["metadata"]
    verdicts = score_protocols("mathvista", doc, responses[0])
    return results(record(doc["pid"], SPLITS[metadata["category"]], metadata["task"], verdicts))
