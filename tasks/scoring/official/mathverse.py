"""MathVerse as officially evaluated (ZrrSkywalker/MathVerse `evaluation/`), rules standing in for GPT.

The official 'w/o' score: GPT extracts the answer from the last 30 words of the response
(`--trunk_response 30`), then a GPT judge decides whether it "completely matches" the standard answer
(for multiple choice the exact option or options; otherwise the same value or meaning, "0.5m and
50cm"). Here the response is cut to its last 30 words likewise; the project's rules (or the optional
judge) read the answer, a multiple-choice answer counts when its set of letters equals the gold set
("C\\nD" needs both), other answers when equal in value or as expressions. Overall = accuracy over
all 3940 rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..datasets import mathverse_options
from ..score import gold_letters, score_choice_set, score_free_form
from ..verdict import Verdict

TRUNK_WORDS = 30


def truncated(response: str) -> str:
    """The last 30 space-separated words, as the official extraction sees them."""
    return " ".join(response.split(" ")[-TRUNK_WORDS:])


def score(doc: Mapping[str, Any], response: str) -> Verdict:
    """Official MathVerse verdict."""
    text = truncated("" if response is None else str(response))
    answer = str(doc.get("answer", ""))
    if doc.get("question_type") == "multi-choice":
        options = mathverse_options(doc)
        golds = gold_letters(answer, options)
        if golds is not None:
            return score_choice_set(text, options, golds)
        return score_free_form(text, answer, "text")
    return score_free_form(text, answer, "expression")
