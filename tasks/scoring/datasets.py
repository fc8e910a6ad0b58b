"""The `strict` protocol: one scorer per benchmark, each taking a document in the dataset's
published Hugging Face schema and the model response. The answer is read by the project's rules
(see `choice`, `extract`) and compared by value; nothing is guessed: a response whose answer cannot
be read is wrong. (`official` holds each benchmark's own evaluation.)"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping
from typing import Any

from . import judge
from .choice import LETTERS
from .extract import extract_number
from .numeric import parse_number
from .score import gold_letters, score_choice_set, score_free_form, score_multiple_choice
from .text import fold_fullwidth, strip_reasoning
from .verdict import Verdict

DYNAMATH_ABS_TOL = 1e-3
HME_TYPE = "Handwritten Mathematical Expression Recognition"

_LABEL = re.compile(r"(?:^|(?<=[\s,;:]))(?:\(([A-H])\)|([A-H])\s*[:.)])")


def lettered_options(text: str) -> list[str]:
    """Option texts embedded in a question: "A: x, B: y", "A:x\\nB:y", "(A) x (B) y", "A. x".

    Uses the last "A" label followed by a "B" label, then the next C, D, ... in order;
    [] when there is no such run.
    """
    if not isinstance(text, str):
        return []
    positions: dict[str, list[tuple[int, int]]] = {}
    for m in _LABEL.finditer(text):
        positions.setdefault(m.group(1) or m.group(2), []).append((m.start(), m.end()))

    def next_label(letter: str, after: int) -> tuple[int, int] | None:
        spans = positions.get(letter, [])
        i = bisect.bisect_left(spans, (after, -1))
        return spans[i] if i < len(spans) else None

    for a_label in reversed(positions.get("A", [])):
        chain = [a_label]
        while len(chain) < len(LETTERS) and (label := next_label(LETTERS[len(chain)], chain[-1][1])):
            chain.append(label)
        if len(chain) >= 2:
            ends = [label[0] for label in chain[1:]] + [len(text)]
            return [text[label[1] : end].strip().rstrip(",;").strip() for label, end in zip(chain, ends)]
    return []


def _field(doc: Mapping[str, Any], name: str, default: Any = None) -> Any:
    value = doc.get(name, default) if isinstance(doc, Mapping) else default
    return default if value is None else value


def _precision(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else int(number)


def score_mathvista(doc: Mapping[str, Any], response: str) -> Verdict:
    """AI4Math/MathVista: multi_choice answers are option texts; free_form answers are
    integer / float (rounded to `precision` decimals) / list."""
    answer = str(_field(doc, "answer", ""))
    if _field(doc, "question_type") == "multi_choice":
        return score_multiple_choice(response, list(_field(doc, "choices", [])), answer)
    answer_type = _field(doc, "answer_type", "text")
    if answer_type not in ("integer", "float", "list", "text"):
        answer_type = "text"
    precision = _precision(_field(doc, "precision")) if answer_type == "float" else None
    return score_free_form(response, answer, answer_type, precision)


def score_mmstar(doc: Mapping[str, Any], response: str) -> Verdict:
    """Lin-Chen/MMStar: options are embedded in the question text, the answer is a letter."""
    options = lettered_options(_field(doc, "question", ""))
    return score_multiple_choice(response, options, str(_field(doc, "answer", "")))


def score_ocrbench(doc: Mapping[str, Any], response: str) -> Verdict:
    """echo840/OCRBench: correct when any acceptable answer is contained in the response,
    case-insensitively (ignoring all whitespace for handwritten math expressions).

    This is OCRBench's own rule, so the optional judge is never consulted here.
    """
    answers = _field(doc, "answer", [])
    answers = [answers] if isinstance(answers, str) else [str(a) for a in answers]
    hme = _field(doc, "question_type") == HME_TYPE or _field(doc, "dataset") == "HME100k"
    text = fold_fullwidth(strip_reasoning(response))
    if hme:
        pred = re.sub(r"\s+", "", text)
    else:
        pred = text.lower().replace("\n", " ")
    for answer in answers:
        gold = (
            re.sub(r"\s+", "", answer) if hme else fold_fullwidth(answer).lower().strip().replace("\n", " ")
        )
        if gold and gold in pred:
            return Verdict(answer, True, "contains")
    return Verdict(None, False, "contains")


def score_mathvision(doc: Mapping[str, Any], response: str) -> Verdict:
    """MathLLMs/MathVision: a letter answer when `options` is non-empty, else a free-form value."""
    options = list(_field(doc, "options", []))
    answer = str(_field(doc, "answer", ""))
    if options:
        return score_multiple_choice(response, options, answer)
    return score_free_form(response, answer, "expression")


def mathverse_options(doc: Mapping[str, Any]) -> list[str]:
    """A MathVerse problem's option texts, read from its question (absent in vision-only versions)."""
    return lettered_options(_field(doc, "question", "") or _field(doc, "query_wo", ""))


def score_mathverse(doc: Mapping[str, Any], response: str) -> Verdict:
    """AI4Math/MathVerse: "multi-choice" answers are letters (options inside the question,
    absent in vision-only versions), some several ("C\\nD": all of them must be stated);
    "free-form" answers are values or expressions."""
    answer = str(_field(doc, "answer", ""))
    if _field(doc, "question_type") == "multi-choice":
        options = mathverse_options(doc)
        golds = gold_letters(answer, options)
        if golds is not None and len(golds) > 1:
            return score_choice_set(response, options, golds)
        return score_multiple_choice(response, options, answer)
    return score_free_form(response, answer, "expression")


def _dynamath_float(number: str | None, gold: str) -> bool:
    pred, target = parse_number(number), parse_number(gold)
    if pred is None or target is None:
        return False
    return abs(pred.value - target.value) <= DYNAMATH_ABS_TOL


def _dynamath_text(pred: str | None, gold: str) -> bool:
    """DynaMath's containment rule, times ("5:0" == "5:00") and tuples within the float tolerance."""
    if pred is None:
        return False
    if re.search(rf"(?<!\w){re.escape(gold.strip().lower())}(?!\w)", pred.lower()) and gold.strip():
        return True  # DynaMath's own rule: the ground truth appears in the answer
    if re.fullmatch(r"\d{1,2}:\d{1,2}", gold.strip()):
        times = re.findall(r"\b(\d{1,2}):(\d{1,2})\b", pred)
        return bool(times) and tuple(map(int, times[-1])) == tuple(map(int, gold.strip().split(":")))
    gold_nums = re.findall(r"-?\d+(?:\.\d+)?", gold)
    pred_nums = re.findall(r"-?\d+(?:\.\d+)?", pred)
    if gold_nums and "(" in gold and len(pred_nums) == len(gold_nums):
        return all(abs(float(p) - float(g)) <= DYNAMATH_ABS_TOL for p, g in zip(pred_nums, gold_nums))
    return False


def score_dynamath(doc: Mapping[str, Any], response: str) -> Verdict:
    """DynaMath: "multiple choice" (letter, options inside the question), "float" (absolute
    tolerance 1e-3, as in DynaMath's own evaluation) or "text" ground truth."""
    answer_type = _field(doc, "answer_type", "text")
    gold = str(_field(doc, "ground_truth", ""))
    if answer_type == "multiple choice":
        return score_multiple_choice(response, lettered_options(_field(doc, "question", "")), gold)
    if answer_type == "float":

        def by_rules(text: str) -> Verdict:
            number, rule = extract_number(text)
            return Verdict(number, _dynamath_float(number, gold), rule)

        return judge.refine(by_rules(response), response, judge.free_form_instruction("float"), by_rules)
    verdict = score_free_form(response, gold, "text")
    if not verdict.correct and _dynamath_text(verdict.extracted, gold):
        return Verdict(verdict.extracted, True, verdict.rule, verdict.flagged)
    return verdict
