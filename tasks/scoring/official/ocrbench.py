"""OCRBench as officially evaluated (Yuliang-Liu/MultimodalOCR `OCRBench/example.py`).

An item scores 1 when any gold string is contained in the raw response after lowercasing, stripping
and turning newlines into spaces; for the handwritten-math items (dataset "HME100k") all spaces are
removed instead and case is kept. The response is used whole: no reasoning block is dropped, no
full-width characters are folded. Score = the count of such items (out of 1000).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..verdict import Verdict

HME_DATASET = "HME100k"


def _plain(text: str) -> str:
    return text.lower().strip().replace("\n", " ")


def _spaceless(text: str) -> str:
    return text.strip().replace("\n", " ").replace(" ", "")


def score(doc: Mapping[str, Any], response: str) -> Verdict:
    """Official OCRBench verdict; `extracted` is the gold string found in the response."""
    answers = doc.get("answer") or []
    answers = [answers] if isinstance(answers, str) else [str(a) for a in answers]
    normalise = _spaceless if doc.get("dataset") == HME_DATASET else _plain
    predict = normalise("" if response is None else str(response))
    for answer in answers:
        if normalise(answer) in predict:
            return Verdict(answer, True, "contains")
    return Verdict(None, False, "contains")
