"""OCRBench test (perception): scored by containment as OCRBench does. The dataset has no item id
(the record's id is null; the samples file's doc_id identifies items).

Official prompt: the bare question (OCRBench's example.py), 128 new tokens (lmms-eval's cap). The
`_cot` variant keeps the project's earlier prompt: the question and "Answer with a single word or
phrase."
"""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_protocols
from mvlm_tasks.sources import load_split

from .common import COT_PROMPT, prompt_style, record, results, short_instruction, visuals


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_ocrbench (and its _cot variant)."""
    return load_split("ocrbench", "test", "mvlm_ocrbench")


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The question's image."""
    return visuals(doc["image"])


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """Official: the question as published. `_cot`: the question and a short-answer instruction."""
    if prompt_style(lmms_eval_specific_kwargs) == COT_PROMPT:
        return f"{doc['question'].strip()}\n{short_instruction('text')}"
    return doc["question"]


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is OCRBench's question type."""
    verdicts = score_protocols("ocrbench", doc, responses[0])
    return results(record(None, "perception", doc["question_type"], verdicts, source=doc["dataset"]))
