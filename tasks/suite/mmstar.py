"""MMStar val, split by core capability: coarse and fine-grained perception (perception) vs instance
reasoning, logical reasoning, math, science & technology (reasoning). Primary score: macro mean over
the capabilities, as MMStar reports it (equal to the accuracy, 250 items each).

Official prompt: the question (options inside it) and "Answer with the option's letter from the
given choices directly." (MMStar's own evaluation code; lmms-eval drops the final period).
"""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_protocols
from mvlm_tasks.sources import load_split

from .common import COT_PROMPT, cot_instruction, prompt_style, record, results, visuals

PERCEPTION = ("coarse perception", "fine-grained perception")
REASONING = ("instance reasoning", "logical reasoning", "math", "science & technology")
OFFICIAL_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def _docs(categories: tuple[str, ...], task: str) -> datasets.Dataset:
    val = load_split("mmstar", "val", task)
    return val.filter(lambda category: category in categories, input_columns=["category"])


def perception_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mmstar_perception (and its _cot variant)."""
    return _docs(PERCEPTION, "mvlm_mmstar_perception")


def reasoning_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mmstar_reasoning (and its _cot variant)."""
    return _docs(REASONING, "mvlm_mmstar_reasoning")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image."""
    return visuals(doc["image"])


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """The question (its options are part of it) and the answer instruction of the prompt style."""
    if prompt_style(lmms_eval_specific_kwargs) == COT_PROMPT:
        return f"{doc['question'].strip()}\n{cot_instruction('choice')}"
    return f"{doc['question']}\n{OFFICIAL_INSTRUCTION}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the core capability, subcategory MMStar's l2 category."""
    split = "perception" if doc["category"] in PERCEPTION else "reasoning"
    verdicts = score_protocols("mmstar", doc, responses[0])
    return results(record(str(doc["index"]), split, doc["category"], verdicts, subcategory=doc["l2_category"]))
