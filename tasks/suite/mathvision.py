"""MATH-Vision (reasoning): `testmini` (304 items, 16 subjects x 19) and `test` (3040 items, the
leaderboard's set). Letter answers when options are given, else free form. Per-category scores use
the subject.

Official prompt: MATH-V's chain-of-thought template (its evaluation scripts): 'Please solve the
problem and put your answer in one "\\boxed{}". If it is a multiple choice question, only one
letter is allowed in the "\\boxed{}".', then the question as published (its <imageN> tags kept) and
the options as "(A) ..." lines. The `_cot` variants use the project's prompt instead.
"""

from __future__ import annotations

import re
from typing import Any

import datasets
from mvlm_tasks.scoring import score_protocols
from mvlm_tasks.sources import load_split

from .common import COT_PROMPT, cot_instruction, lettered, prompt_style, record, results, visuals

OFFICIAL_INSTRUCTION = ('Please solve the problem and put your answer in one "\\boxed{}". If it is a multiple '
                        'choice question, only one letter is allowed in the "\\boxed{}".')
_IMAGE_TAG = re.compile(r"\s*<image\d*>\s*")


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mathvision (testmini, and its _cot variant)."""
    return load_split("mathvision", "testmini", "mvlm_mathvision")


def test_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mathvision_test (the 3040-item test split, and its _cot variant)."""
    return load_split("mathvision_test", "test", "mvlm_mathvision_test")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image."""
    return visuals(doc["decoded_image"])


def _cot_text(doc: dict[str, Any]) -> str:
    question = _IMAGE_TAG.sub(" ", doc["question"]).strip()
    if doc["options"]:
        return f"{question}\n{lettered(doc['options'])}\n{cot_instruction('choice')}"
    return f"{question}\n{cot_instruction('free')}"


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """Official: the template, the question and its options. `_cot`: the question without its
    <imageN> tags (the image comes first), options, and the chain-of-thought instruction."""
    if prompt_style(lmms_eval_specific_kwargs) == COT_PROMPT:
        return _cot_text(doc)
    options = f"{lettered(doc['options'])}\n" if doc["options"] else ""
    return f"{OFFICIAL_INSTRUCTION}\n{doc['question']}\n{options}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the subject."""
    verdicts = score_protocols("mathvision", doc, responses[0])
    return results(record(doc["id"], "reasoning", doc["subject"], verdicts, level=doc["level"]))
