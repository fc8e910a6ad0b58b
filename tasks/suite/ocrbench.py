"""OCRBench test (perception): short answers, scored by containment as OCRBench does. The
dataset has no item id (the record's id is null; the samples file's doc_id identifies items)."""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_ocrbench
from mvlm_tasks.sources import load_split

from .common import record, results, short_instruction, visuals


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_ocrbench."""
    return load_split("ocrbench", "test", "mvlm_ocrbench")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image."""
    return visuals(doc["image"])


def doc_to_text(doc: dict[str, Any]) -> str:
    """The question and a short-answer instruction."""
    return f"{doc['question'].strip()}\n{short_instruction('text')}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is OCRBench's question type."""
    verdict = score_ocrbench(doc, responses[0])
    return results(record(None, "perception", doc["question_type"], verdict, source=doc["dataset"]))
