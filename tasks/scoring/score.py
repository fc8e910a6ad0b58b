"""Score a response against a gold answer: multiple choice or free form."""

from __future__ import annotations

import re
from collections.abc import Sequence

from . import judge
from .choice import LETTERS, extract_choice, extract_choice_set
from .equivalence import expressions_equivalent
from .extract import extract_answer_text, extract_list, extract_number
from .latex import LatexError, to_plain
from .numeric import numbers_equal, parse_number
from .verdict import Verdict

ANSWER_TYPES = ("integer", "float", "text", "expression", "list")
_COPULA = re.compile(r"\b(?:is|are|was|were|equals|be)\s+|:\s*", re.IGNORECASE)
_CONNECTIVE = re.compile(r"^\s*(?:and\s+)?(?:so|thus|therefore|hence|then)\b\s*,?", re.IGNORECASE)


def _norm_text(text: str) -> str:
    try:
        text = to_plain(text)
    except LatexError:
        pass
    text = re.sub(r"\s+", " ", text).strip().lower()
    text = text.strip(" .,;:\"'()[]*")
    return re.sub(r"(?<=[a-z])!+$", "", text).strip(" .,;:\"'()[]*")  # "yes!" is "yes"; "4!" stays


def gold_letter(gold: object, choices: Sequence[str]) -> str | None:
    """The gold option letter, given as a letter ("B", "(B)") or as the option's text."""
    gold_text = str(gold).strip() if gold is not None else ""
    if not gold_text:
        return None
    normed = _norm_text(gold_text)
    for letter, option in zip(LETTERS, choices or []):
        if _norm_text(str(option)) == normed:
            return letter
    m = re.fullmatch(r"\(?([A-Za-z])\)?\.?", gold_text)
    if m and (not choices or m.group(1).upper() in LETTERS[: len(choices)]):
        return m.group(1).upper()
    return None


_LETTER_LIST = re.compile(r"\s*\(?[A-Z]\)?(?:\s*(?:,|;|and|\n)?\s*\(?[A-Z]\)?)*\s*")


def gold_letters(gold: object, choices: Sequence[str]) -> tuple[str, ...] | None:
    """The gold option letters: one or several ("C\\nD", "(A), (C)"), or the letter of the option
    whose text the gold is; None when the gold names no option."""
    text = "" if gold is None else str(gold)
    if text.strip() and _LETTER_LIST.fullmatch(text):
        found = sorted(set(re.findall(r"[A-Z]", text)))
        if not choices or all(letter in LETTERS[: len(choices)] for letter in found):
            return tuple(found)
    letter = gold_letter(gold, choices)
    return (letter,) if letter else None


def score_choice_set(response: str, choices: Sequence[str], golds: Sequence[str]) -> Verdict:
    """Score a question with one or several right options: right when the response states exactly
    the gold set of letters."""
    target = tuple(sorted(set(golds)))

    def by_rules(text: str) -> Verdict:
        letters, rule = extract_choice_set(text, choices)
        return Verdict(None if letters is None else ", ".join(letters), letters == target, rule)

    return judge.refine(by_rules(response), response, judge.choice_instruction(choices), by_rules)


def score_multiple_choice(response: str, choices: Sequence[str], gold: str) -> Verdict:
    """Score a multiple-choice response; `gold` is the option letter or the option's text."""
    target = gold_letter(gold, choices)

    def by_rules(text: str) -> Verdict:
        letter, rule = extract_choice(text, choices)
        return Verdict(letter, letter is not None and letter == target, rule)

    return judge.refine(by_rules(response), response, judge.choice_instruction(choices), by_rules)


def _after_copula(text: str) -> str:
    """'The equation is y = 2x' -> 'y = 2x' (the part after the last 'is', 'are', ':')."""
    parts = _COPULA.split(text)
    return parts[-1].strip() if parts and parts[-1].strip() else text


def _last_clause(text: str) -> str:
    """'The vertex is (1, 0), so y = (x-1)^2' -> 'y = (x-1)^2' (commas inside brackets kept)."""
    depth, cut = 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            cut = i + 1
    return _CONNECTIVE.sub("", text[cut:]).strip()


def texts_match(pred: str | None, gold: str) -> bool:
    """Short text answers: equal after normalising, or equal as numbers / math expressions.

    The whole answer, its last clause and the part after its last "is"/":" are tried.
    """
    if pred is None:
        return False
    clause = _last_clause(pred)
    candidates = {pred, _after_copula(pred), clause, _after_copula(clause)}
    gold_norm = _norm_text(gold)
    for cand in candidates:
        if _norm_text(cand) == gold_norm and gold_norm:
            return True
        if parse_number(gold) is not None and numbers_equal(cand, gold):
            return True
        if expressions_equivalent(cand, gold):
            return True
    return False


def _list_items(gold: str) -> list[str]:
    inner = gold.strip().strip("[]()")
    return [item.strip().strip("'\"") for item in inner.split(",") if item.strip()]


def _items_equal(pred: str, gold: str) -> bool:
    if parse_number(gold) is not None:
        return numbers_equal(pred, gold)
    return _norm_text(pred) == _norm_text(gold) or expressions_equivalent(pred, gold)


def _free_form_by_rules(response: str, gold: str, answer_type: str, precision: int | None) -> Verdict:
    if answer_type in ("integer", "float"):
        number, rule = extract_number(response)
        if answer_type == "integer":
            correct = number is not None and numbers_equal(number, gold, rel_tol=0.0)
        else:
            correct = number is not None and numbers_equal(number, gold, precision=precision)
        return Verdict(number, correct, rule)
    if answer_type == "list":
        items, rule = extract_list(response)
        if items is None:
            return Verdict(None, False, rule)
        gold_items = _list_items(gold)
        correct = len(items) == len(gold_items) and all(map(_items_equal, items, gold_items))
        return Verdict("[" + ", ".join(items) + "]", correct, rule)
    answer, rule = extract_answer_text(response)
    if answer_type == "text":
        return Verdict(answer, texts_match(answer, gold), rule)
    correct = texts_match(answer, gold)
    if not correct and parse_number(gold) is not None:
        number, number_rule = extract_number(response)
        if number is not None and numbers_equal(number, gold):
            return Verdict(number, True, number_rule)
    return Verdict(answer, correct, rule)


def score_free_form(response: str, gold: str, answer_type: str, precision: int | None = None) -> Verdict:
    """Score a free-form response.

    answer_type: "integer" (exact after normalising: "12.0" == "12"), "float"
    (rounded to `precision` decimals when given, else relative 1e-6), "text",
    "expression" (sympy equivalence) or "list" (item by item, in order).
    Raises ValueError for any other answer_type.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")
    gold = "" if gold is None else str(gold)

    def by_rules(text: str) -> Verdict:
        return _free_form_by_rules(text, gold, answer_type, precision)

    return judge.refine(by_rules(response), response, judge.free_form_instruction(answer_type), by_rules)
