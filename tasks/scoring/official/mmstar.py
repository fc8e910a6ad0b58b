"""MMStar as officially evaluated (MMStar-Benchmark/MMStar `eval/vlmeval/evaluate/mmstar.py`).

The response, lowercased, stripped and with newlines as spaces, is right when its first character is
the gold letter, or it starts "(x", "option x" or "the answer is x" with x the gold letter. Nothing
else is read: a response that reasons first is wrong. The final score is the share right over all
1500 items (each capability has 250, so this is also the mean over capabilities).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..verdict import Verdict

_PREFIXES = ("", "(", "option ", "the answer is ")


def score(doc: Mapping[str, Any], response: str) -> Verdict:
    """Official MMStar verdict; `extracted` is the letter read at the start of the response."""
    predict = str("" if response is None else response).lower().strip().replace("\n", " ")
    answer = str(doc.get("answer", "")).lower().strip().replace("\n", " ")
    for prefix in _PREFIXES:
        if predict.startswith(prefix) and len(predict) > len(prefix):
            letter = predict[len(prefix)]
            if letter == answer:
                return Verdict(letter.upper(), True, "prefix")
    first = predict[:1].upper() or None
    return Verdict(first, False, "prefix")
