"""MATH-Vision testmini (reasoning, 304 items): letter answers when options are given, else free form.
Per-category scores use the subject."""

from __future__ import annotations

import re
from typing import Any

import datasets
from mvlm_tasks.scoring import score_mathvision
from mvlm_tasks.sources import load_split

from .common import cot_instruction, lettered, record, results, visuals

_IMAGE_TAG = re.compile(r"\s*<image\d*>\s*")


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_mathvision."""
    return load_split("mathvision", "testmini", "mvlm_mathvision")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image."""
    return visuals(doc["decoded_image"])


def doc_to_text(doc: dict[str, Any]) -> str:
    """The question without its <imageN> placeholders (the image comes first), options, instruction."""
    question = _IMAGE_TAG.sub(" ", doc["question"]).strip()
    if doc["options"]:
        return f"{question}\n{lettered(doc['options'])}\n{cot_instruction('choice')}"
    return f"{question}\n{cot_instruction('free')}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the subject."""
    verdict = score_mathvision(doc, responses[0])
    return results(record(doc["id"], "reasoning", doc["subject"], verdict, level=doc["level"]))
