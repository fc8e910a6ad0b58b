"""The embedded probe benchmark (see mvlm_tasks.probe): short answers, read from the shipped parquet.
It has one rule set, so both protocols record the same verdict."""

from __future__ import annotations

from typing import Any

from mvlm_tasks.scoring import one_rule_set, score_free_form, score_multiple_choice

from .common import record, results, short_instruction, visuals

_KINDS = {"multiple_choice": "choice", "integer": "integer", "text": "text"}


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The item's image."""
    return visuals(doc["image"])


def doc_to_text(doc: dict[str, Any]) -> str:
    """The question (options listed in it for multiple choice) and a short-answer instruction."""
    return f"{doc['question']}\n{short_instruction(_KINDS[doc['answer_type']])}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response against the item's answer (an option letter for multiple choice)."""
    if doc["answer_type"] == "multiple_choice":
        verdict = score_multiple_choice(responses[0], doc["choices"], doc["answer"])
    else:
        verdict = score_free_form(responses[0], doc["answer"], doc["answer_type"])
    return results(record(doc["id"], doc["split"], doc["category"], one_rule_set(verdict)))
