"""lm-eval hooks for the text-only probe: the image's content in words, scored like the probe."""

from __future__ import annotations

from typing import Any

from mvlm_tasks.scoring import score_free_form, score_multiple_choice
from mvlm_tasks.suite.common import short_instruction

_KINDS = {"multiple_choice": "choice", "integer": "integer", "text": "text"}


def doc_to_text(doc: dict[str, Any]) -> str:
    """The text version of the probe question, with the probe's short-answer instruction."""
    return f"{doc['text_question']}\n{short_instruction(_KINDS[doc['answer_type']])}\nAnswer:"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, float]:
    """1.0 when the rule-based scorer accepts the answer."""
    if doc["answer_type"] == "multiple_choice":
        verdict = score_multiple_choice(responses[0], doc["choices"], doc["answer"])
    else:
        verdict = score_free_form(responses[0], doc["answer"], doc["answer_type"])
    return {"mvlm_acc": float(verdict.correct)}


def load_probe(split: str, **_: Any):
    """The shipped probe parquet of `split` as a DatasetDict with one `test` split."""
    import datasets

    from mvlm_tasks.probe import shipped_data_files

    return datasets.load_dataset("parquet", data_files={"test": str(shipped_data_files()[split])})
