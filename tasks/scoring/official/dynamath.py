"""DynaMath as officially evaluated (DynaMath/DynaMath `evaluation/*_json_eval.py`).

The response is expected as JSON with a "short answer" key (the official prompt asks for it). The
official code cuts the text from its first "{" to its last "}", removes every backslash and parses
it; when that fails, the short answer is the last line less its last character. Then:

- float: the first space-separated token (a value times π when it ends in "π") within 0.001 of the
  ground truth (an all-digit answer is read whole);
- multiple choice: a one-character answer equal to the gold letter, or the gold letter among the
  first three characters of a longer one;
- anything else: the ground truth contained in the answer (case-sensitive).

Anything that raises is wrong. Average-case accuracy is over all 5010 questions; worst-case counts a
seed question only when all ten of its variants are right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..verdict import Verdict

ABS_TOL = 0.001


def _json_part(text: str) -> str:
    """The official `preprocess`: from the first "{" to the last "}", backslashes removed; the text
    unchanged when it has no such part."""
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end == -1 or end <= start or len(text) - start < 2:
        return text
    return text[start : end + 1].replace("\\", "")


def short_answer(response: str) -> tuple[str | None, str]:
    """The "short answer" the official code reads, and how ("json" or "last_line")."""
    text = _json_part(response) if response else response
    try:
        parsed = json.loads(text, strict=False)
    except ValueError:
        return text.split("\n")[-1][:-1], "last_line"
    if not isinstance(parsed, dict):
        return None, "json"
    return str(parsed.get("short answer")), "json"


def _float_value(answer: str) -> float:
    if not answer.isdigit():
        answer = answer.split(" ")[0]
        if "π" in answer:
            return float(answer.split("π")[0]) * math.pi
    return float(answer)


def score(doc: Mapping[str, Any], response: str) -> Verdict:
    """Official DynaMath verdict for one variant."""
    answer, rule = short_answer("" if response is None else str(response))
    gold = str(doc.get("ground_truth", ""))
    answer_type = doc.get("answer_type")
    if answer is None:
        return Verdict(None, False, rule)
    try:
        if answer_type == "float":
            correct = abs(_float_value(answer) - float(gold)) <= ABS_TOL
        elif answer_type == "multiple choice":
            correct = answer == gold if len(answer) == 1 else gold in answer[0:3]
        else:
            correct = gold in answer
    except (ValueError, OverflowError):
        correct = False
    return Verdict(answer, correct, rule)
