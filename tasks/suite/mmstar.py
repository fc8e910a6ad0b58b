"""MMStar val, split by core capability: coarse and fine-grained perception (perception) vs instance
reasoning, logical reasoning, math, science & technology (reasoning). Primary score: macro mean over
the capabilities, as MMStar reports it."""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_mmstar
from mvlm_tasks.sources import load_split

from .common import cot_instruction, record, results, visuals

PERCEPTION = ("coarse perception", "fine-grained perception")
REASONING = ("instance reasoning", "logical reasoning", "math", "science & technology")


def _docs(categories: tuple[str, ...], task: str) -> datasets.Dataset:
    val = load_split("mmstar", "val", task)
    return val.filter(lambda category: category in categories, input_columns=["category"])


def perception_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mmstar_perception."""
    return _docs(PERCEPTION, "mvlm_mmstar_perception")


def reasoning_docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mmstar_reasoning."""
    return _docs(REASONING, "mvlm_mmstar_reasoning")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image."""
    return visuals(doc["image"])


def doc_to_text(doc: dict[str, Any]) -> str:
    """The question (its options are part of it) and the answer-format instruction."""
    return f"{doc['question'].strip()}\n{cot_instruction('choice')}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the core capability, subcategory MMStar's l2 category."""
    split = "perception" if doc["category"] in PERCEPTION else "reasoning"
    verdict = score_mmstar(doc, responses[0])
    return results(record(str(doc["index"]), split, doc["category"], verdict, subcategory=doc["l2_category"]))
