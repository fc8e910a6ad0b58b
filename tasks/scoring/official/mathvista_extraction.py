"""Rules standing in for MathVista's GPT-4 answer extractor (`evaluation/extract_answer.py`).

The official pipeline returns a response unchanged when it already is the answer (empty, an option's
exact text, a bare number: `quick_extraction`); otherwise it shows GPT-4 the question and the
response after five worked examples and keeps whatever short answer GPT-4 writes back, which
`calculate_score.py` then normalises (see `mathvista`). `extract_by_rules` predicts that short
answer: what the response states as its answer, with GPT-4's habits as the published extractions
show them on the development runs of benchmarks/official_evidence:

- an option label is copied as written: "(C) Cannot be determined" for a yes/no question gives "C"
  (the normalisation then takes the nearest option to "C"), and "(D) 3.5" gives "D" even when 3.5
  is option C's text; a bare label before another option's words ("A: No") names that option;
- a refusal gives "N/A", or the wording the response used ("Cannot be determined");
- "none of the options match" gives "None"; "leaves no objects" gives 0 for a number question;
- a fraction stays a fraction ("4/3", which the normalisation cannot read as a number);
- a response that goes on to pose and answer questions of its own is read at its last answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..choice import LETTERS, extract_choice, other_option_named
from ..extract import extract_answer_text, extract_list, extract_number, unstated_number
from ..numeric import parse_number
from ..text import SENTENCE_END, Span, answer_spans, clean_response, closes_declining, first_clause

NO_ANSWER = "N/A"  # what the official GPT extractor most often returns for a response without an answer
# ... unless the response words its refusal in one of these ways, which the extractor then echoes
_ECHOED_REFUSALS = (
    (re.compile(r"\bcannot\s+be\s+determined\b", re.IGNORECASE), "Cannot be determined"),
    (re.compile(r"\b(?:cannot|impossible\s+to|not\s+possible\s+to)\s+determine\b", re.IGNORECASE),
     "Cannot determine"),
)


# "none of the options match": the extractor then most often answers "None"
_NO_OPTION = re.compile(
    r"none of the (?:given |answer |provided )?(?:options|choices)"
    r"|(?:options|choices) (?:do not|don't) (?:include|match|contain)"
    r"|not (?:available|provided|listed|included|present|among|in|one\s+of) (?:in )?the "
    r"(?:given |provided |answer )?(?:options|choices)"
    r"|no (?:correct )?(?:option|choice) (?:matches|is correct)"
    r"|(?:option|answer|choice)s?(?:\s+letter)?\s+(?:is|are)\s+not\s+"
    r"(?:provided|given|listed|available|among|in|one\s+of)\b",
    re.IGNORECASE,
)
NO_OPTION = "None"


def _no_answer(response: str) -> str:
    """The extraction the official GPT extractor gives a response that declines to answer."""
    for pattern, echoed in _ECHOED_REFUSALS:
        if pattern.search(response):
            return echoed
    return NO_ANSWER


_FRACTION = re.compile(r"-?\d+\s*/\s*\d+")


def _decimal(number: str | None) -> str | None:
    """A number as the extractor writes it for `float()`: "25%" -> "25", "1,000" -> "1000"; a
    fraction stays a fraction ("3/4"), which `float()` cannot read."""
    if number is None:
        return None
    try:
        float(number)
        return number
    except ValueError:
        pass
    if _FRACTION.fullmatch(number.strip()):
        return number.strip()
    parsed = parse_number(number.rstrip("%"))
    if parsed is None or not math.isfinite(parsed.value):
        return None
    return repr(parsed.value) if parsed.value != int(parsed.value) else str(int(parsed.value))


def quick_extraction(response: str, doc: Mapping[str, Any]) -> str | None:
    """`extract_answer.py`'s quick paths: the response already is the answer."""
    if response == "":
        return ""
    if doc.get("question_type") == "multi_choice" and response in (doc.get("choices") or []):
        return response
    answer_type = doc.get("answer_type")
    try:
        if answer_type == "integer":
            return str(int(response))
        if answer_type == "float":
            return str(float(response))
    except ValueError:
        pass
    return None


# a line "Question:"; the blanks before it exclude "\n", so that a run of blank lines is scanned once (linear)
_NEW_QUESTION = re.compile(r"\n[^\S\n]*Question\s*:\s*")


def _continuation(response: str, question: str) -> str | None:
    """The last part of a response that goes on to pose and answer a new question of its own (a line
    "Question: ..." that is not the question asked): the official extractor reads its answer there."""
    starts = [m.end() for m in _NEW_QUESTION.finditer(response)]
    if not starts:
        return None
    tail = response[starts[-1] :]
    return None if tail.strip()[:30] == question.strip()[:30] else tail


def _from_continuation(tail: str, doc: Mapping[str, Any]) -> str:
    if doc.get("question_type") == "multi_choice":
        letter, _ = extract_choice(tail, [])
        if letter is not None:
            return letter
    number, _ = extract_number(tail)
    if number is not None or doc.get("question_type") != "multi_choice":
        return _decimal(number) or ""
    text, _ = extract_answer_text(tail)
    return text or NO_ANSWER


_STATED = ("boxed", "answer_is")
# an option label as GPT copies it: "(C)", "C)", "C:", "C." or a lone "C", not "A triangle ..."; and
# "(b)", which the official normalisation reads as B
_LABEL = re.compile(r"\(([A-Za-z])\)|([A-Z])\)?(?![\w'])(?![ \t]+[a-z])")
_LABEL_NOISE = re.compile(
    r"^[\s:=>*\"'\u200b]*(?:(?:the\s+)?(?:option\s+)?letter\b(?:\s+(?:for|to)\s+(?:the|this)\s+question)?"
    r"(?:\s+(?:is|would\s+be))?[\s:]*)?"
)
_AFTER_LABEL = re.compile(r"^[\s).:\-–—]+")


def _label_at(text: str, choices: Sequence[str]) -> str | None:
    """The label a text starts with. A bare label followed by another option's words ("A: No" for a
    yes/no question) names that option, as the extractor reads "A:" as "Answer:"; so does "(D) yes"
    for a question with two options; "(B) sample B" is B."""
    text = _LABEL_NOISE.sub("", text)
    m = _LABEL.match(text)
    if not m:
        return None
    letter, letters = (m.group(1) or m.group(2)).upper(), LETTERS[: len(choices)]
    if m.group(1) and letter in letters:
        return letter
    return other_option_named(_AFTER_LABEL.sub("", text[m.end() :]), choices, letters, letter) or letter


_CONDITIONAL = re.compile(r"\b(?:if|otherwise|whether)\b", re.IGNORECASE)


def _hypothetical(text: str, span: Span) -> bool:
    """True when a stated answer is a condition's consequence ("If it is greater, the answer is (A)")."""
    sentence_start = max((m.end() for m in SENTENCE_END.finditer(text, 0, span.start)), default=0)
    return _CONDITIONAL.search(text, sentence_start, span.start) is not None


def _last_statement(text: str) -> Span | None:
    """The last stated answer with something in it ("the correct answer." states none)."""
    for span in reversed(answer_spans(text)):
        if re.search(r"\w", first_clause(span.text)):
            return span
    return None


def _stated_label(text: str, choices: Sequence[str], last: Span | None) -> str | None:
    """The option letter a (cleaned) response states as its answer, copied as written (even a letter
    beyond the options, or one whose number differs from the option it labels): the official
    extractor returns such a letter unchanged ("(C) Cannot be determined" for a yes/no question: "C").
    `last`: the text's _last_statement."""
    if last is None:
        return _label_at(text, choices)
    return _label_at(last.text, choices) if last.rule != "boxed" else None


def _only_supposes(text: str, last: Span | None) -> bool:
    """True when a response closes by declining and any answer it states before is hypothetical
    ("If ..., the answer is (A) Yes. ... Without the image, we cannot determine the answer.");
    `last`: the text's _last_statement."""
    return last is not None and _hypothetical(text, last) and closes_declining(text)


def _choice_extraction(doc: Mapping[str, Any], response: str) -> tuple[str, str]:
    """What the extractor returns for a multiple-choice response: the option label it states, as
    written; "N/A" or the refusal's words when it declines (also after answers it only supposes); the
    chosen letter read by the project's rules; "None" when it says no option matches; a stated answer
    that is no option (then the nearest option counts); else a weaker reading, or its last line."""
    choices = [str(c) for c in doc.get("choices") or []]
    text = clean_response(response)
    last = _last_statement(text)
    if _only_supposes(text, last):
        return _no_answer(response), "nearest_refusal"
    stated = _stated_label(text, choices, last)
    if stated is not None:
        return stated, "stated_label"
    letter, rule = extract_choice(response, choices, str(doc.get("question") or ""))
    if rule == "refusal":
        return _no_answer(response), "nearest_refusal"
    if letter is not None and rule in _STATED:
        return letter, rule
    if _NO_OPTION.search(response[-400:]):
        return NO_OPTION, "nearest_no_option"
    answer, answer_rule = extract_answer_text(response)
    if answer_rule in _STATED and answer:
        return (letter, rule) if letter is not None else (answer, "nearest_" + answer_rule)
    if letter is not None:
        return letter, rule
    return (answer or NO_ANSWER), "nearest_" + answer_rule


# "leaves no objects", "the function has no zeros", "none": the extractor reads these as 0
_NOTHING = re.compile(
    r"\b(?:none|zero|nothing)\b|\bno\s+(?!(?:more\s+)?(?:information|data|context|way|specific|clear|indication|"
    r"details|image|picture|visual|further|additional|mention|explicit|direct|numerical|exact|such|answer|question|"
    r"need|one|longer)\b)[a-z]+",
    re.IGNORECASE,
)


def extract_by_rules(doc: Mapping[str, Any], response: str) -> tuple[str, str]:
    """The short answer a GPT extractor would return, read by rules; and the rule that read it."""
    quick = quick_extraction(response, doc)
    if quick is not None:
        return quick, "quick"
    tail = _continuation(response, str(doc.get("question") or ""))
    if tail is not None:
        return _from_continuation(tail, doc), "continuation"
    if doc.get("question_type") == "multi_choice":
        return _choice_extraction(doc, response)
    answer_type = doc.get("answer_type")
    if answer_type == "list":
        items, rule = extract_list(response)
        return ("" if items is None else "[" + ", ".join(items) + "]"), rule
    number, rule = extract_number(response)
    if rule == "last_number":
        number, rule = unstated_number(response, str(doc.get("question") or "")), "unstated_number"
    if rule == "none" and _NOTHING.search(response):
        return "0", "nothing"
    return (_decimal(number) or ""), rule
