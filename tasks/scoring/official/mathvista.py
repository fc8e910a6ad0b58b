"""MathVista as officially evaluated (lupantech/MathVista `evaluation/`).

The official pipeline asks GPT-4 to extract a short answer from the response (`extract_answer.py`,
after quick paths for responses that already are the answer), then `calculate_score.py` normalises
it by the question's type and compares it with the gold answer as strings:

- multi_choice: "(B) text" becomes "B"; a letter indexes the choices; anything else becomes the
  choice nearest to it in Levenshtein distance (so every response lands on some option);
- integer: str(int(float(x))) (truncation: "2.7" reads 2); float: str(round(float(x), precision));
  list: str(x); anything that does not convert reads None (wrong).

Here rules stand in for the GPT extractor (or the optional judge, when MERGED_VLM_JUDGE_URL is set);
the normalisation and the comparison are the official ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import Levenshtein

from .. import judge
from ..verdict import Verdict
from .mathvista_extraction import extract_by_rules

_PAREN_LETTER = re.compile(r"\(([a-zA-Z])\)")


def nearest_choice(text: str, choices: Sequence[str]) -> str:
    """The choice with the smallest Levenshtein distance to text (the first one on ties)."""
    distances = [Levenshtein.distance(text, choice) for choice in choices]
    return choices[distances.index(min(distances))]


def normalize_extracted_answer(extraction: Any, choices: Sequence[str] | None, question_type: str,
                               answer_type: str, precision: Any) -> str | None:
    """`calculate_score.py`'s normalisation of an extracted answer (None: unreadable, scored wrong)."""
    if question_type == "multi_choice":
        text = extraction.strip() if isinstance(extraction, str) else str(extraction)
        letters = _PAREN_LETTER.findall(text)
        if letters:
            text = letters[0].upper()
        choices = list(choices or [])
        labels = [chr(ord("A") + i) for i in range(len(choices))]
        return choices[labels.index(text)] if text in labels else nearest_choice(text, choices)
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), int(precision)))
        if answer_type == "list":
            return str(extraction)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def extraction_verdict(doc: Mapping[str, Any], extraction: Any, rule: str) -> Verdict:
    """The verdict on an extracted answer: normalised with `doc`'s choices, question and answer types
    and precision, correct when that prediction equals `doc`'s answer; `rule` is recorded as is."""
    prediction = normalize_extracted_answer(extraction, doc.get("choices"), doc.get("question_type", ""),
                                            doc.get("answer_type", ""), doc.get("precision"))
    return Verdict(prediction, prediction is not None and prediction == doc.get("answer"), rule)


def score(doc: Mapping[str, Any], response: str) -> Verdict:
    """Official MathVista verdict; `extracted` is the normalised prediction (an option's text for
    multiple choice)."""
    text = "" if response is None else str(response)
    by_rules = extraction_verdict(doc, *extract_by_rules(doc, text))

    def rescore(answer: str) -> Verdict:
        return extraction_verdict(doc, answer.strip(), "judge")

    if doc.get("question_type") == "multi_choice":
        instruction = judge.choice_instruction(list(doc.get("choices") or []))
    else:
        instruction = judge.free_form_instruction(doc.get("answer_type", "text"))
    return judge.refine(by_rules, text, instruction, rescore)
