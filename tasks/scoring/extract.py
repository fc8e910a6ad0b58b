"""Pull a free-form final answer (number, short text, list) out of a model response.

What the response states as its answer wins (``\\boxed{}``, ``<answer>`` tags,
"the answer is ...", "Final answer: ..."), the last such statement first, so
self-corrections count. Without one, the last number (outside a trailing
"since ..." / "because ..." clause) or the last line is used.
"""

from __future__ import annotations

import re

from .numeric import number_from_words, numbers_in_words, parse_number
from .text import (
    SENTENCE_END,
    Span,
    answer_spans,
    clean_response,
    declines_to_answer,
    first_clause,
    safe_plain,
    strip_reasoning,
)

TAIL_CHARS = 3000
MAX_SPANS = 64  # only the last stated answers matter; bounds work on pathological text

_CLOSED_FORM = (  # 2sqrt(3), (sqrt(3))/2, 3pi/4, (2pi)/3 as written by to_plain
    r"-?\(?(?:\d+(?:\.\d+)?\s*\*?\s*)?\(?(?:sqrt\(\s*\d+(?:\.\d+)?\s*\)|sqrt\s*\d+|pi)\)?\)?"
    r"(?:\s*/\s*\(?\d+(?:\.\d+)?\)?)?"
)
_NUMBER_TOKEN = re.compile(
    rf"(?<![\w.^])(?:{_CLOSED_FORM}|-?\d+\s+\d+\s*/\s*\d+(?![\d.])"
    r"|-?(?:\d+(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+(?:\.\d+)?)?"
    r"(?:[eE][-+]?\d+|\s*[*x]\s*10\s*\^\s*\(?[-+]?\d+\)?)?(?:\s*(?:%|percent\b))?)"
)
_NOT_ANSWER_NUMBER = re.compile(r"\s*(?:decimal|significant|d\.p\.|s\.f\.)", re.IGNORECASE)
_SUBORDINATE = re.compile(
    r",?\s+(?:(?:since|because|as|which|where|given\s+that|so\s+that|that\s+is)\b|i\.e\.)|\s+\((?=[A-Za-z])",
    re.IGNORECASE,
)
_LEAD_PUNCT = re.compile(r"^[\s:=>*\"']+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _number_in(text: str) -> str | None:
    """The numeric answer in a short answer text: the whole text if it is one, else its first number."""
    text = safe_plain(text).strip().rstrip(".").strip()
    if not text:
        return None
    for sep in ("=", "≈"):
        if sep in text:
            text = text.rsplit(sep, 1)[1].strip()
    number = parse_number(text)
    if number is not None:
        return number.text
    for m in _NUMBER_TOKEN.finditer(text):
        number = parse_number(m.group(0))
        if number is not None:
            return number.text
    return number_from_words(text)


def _span_number(span: Span) -> str | None:
    if span.rule == "boxed":
        return _number_in(span.text)
    return _number_in(first_clause(span.text))


def _last_number(plain: str) -> str | None:
    """The last number, except that in a sentence like "x is 30, since it is half of 60"
    the number of the main clause wins over those in the trailing clause."""
    tokens = []
    for m in _NUMBER_TOKEN.finditer(plain):
        number = parse_number(m.group(0))
        if number is not None and not _NOT_ANSWER_NUMBER.match(plain, m.end()):
            tokens.append((m.start(), number.text))
    if not tokens:
        return number_from_words(plain)
    last_start = tokens[-1][0]
    sentence_start = max((m.end() for m in SENTENCE_END.finditer(plain, 0, last_start)), default=0)
    sentence = plain[sentence_start:]
    cut = _SUBORDINATE.search(sentence)
    if cut:
        head_end = sentence_start + cut.start()
        head = [text for start, text in tokens if sentence_start <= start < head_end]
        if head:
            return head[-1]
    return tokens[-1][1]


def extract_number(response: str) -> tuple[str | None, str]:
    """Extract the final numeric answer as text (e.g. "12", "3/4", "-2.5", "25%") and the rule used."""
    text = clean_response(response)
    if not text.strip():
        return None, "none"
    spans = answer_spans(text)
    if declines_to_answer(text, spans):
        return None, "refusal"
    for span in reversed(spans[-MAX_SPANS:]):
        number = _span_number(span)
        if number is not None:
            return number, span.rule
    number = _last_number(_THOUSANDS.sub("", safe_plain(text[-TAIL_CHARS:])))
    return (number, "last_number") if number is not None else (None, "none")


_BOLD = re.compile(r"\*\*([^*\n]{1,40})\*\*")


def _numbers(plain: str, words: bool = False) -> list[tuple[str, float]]:
    """The numbers of a text in order, as (text, value); with `words`, also those written in words."""
    found = []
    for m in _NUMBER_TOKEN.finditer(plain):
        number = parse_number(m.group(0))
        if number is not None:
            found.append((m.start(), number.text, number.value))
    if words:
        found += [(at, digits, float(digits)) for at, digits in numbers_in_words(plain)]
    return [(text, value) for _, text, value in sorted(found)]


def unstated_number(response: str, question: str) -> str | None:
    """For a response that states no answer: the number a reader would take as its answer, given the
    question. The last number set in bold, else the last number (in digits or words) the question
    does not itself contain ("three algorithms with accuracy lower than 8" -> 3), else the last one."""
    bold = [n for m in _BOLD.finditer(strip_reasoning(response)) for n in _numbers(safe_plain(m.group(1)))]
    if bold:
        return bold[-1][0]
    plain = _THOUSANDS.sub("", safe_plain(clean_response(response)[-TAIL_CHARS:]))
    asked = {value for _, value in _numbers(safe_plain(question), words=True)}
    numbers = _numbers(plain, words=True)
    fresh = [text for text, value in numbers if value not in asked]
    if fresh:
        return fresh[-1]
    return numbers[-1][0] if numbers else None


def extract_answer_text(response: str) -> tuple[str | None, str]:
    """Extract a short final answer as text: the last stated answer, else the last line."""
    text = clean_response(response)
    if not text.strip():
        return None, "none"
    spans = answer_spans(text)
    if declines_to_answer(text, spans):
        return None, "refusal"
    for span in reversed(spans[-MAX_SPANS:]):
        answer = span.text.strip() if span.rule == "boxed" else first_clause(span.text)
        answer = _LEAD_PUNCT.sub("", answer).strip().rstrip(".").strip()
        if answer:
            return answer, span.rule
    lines = [line.strip() for line in text.strip().split("\n") if line.strip()]
    last = lines[-1] if lines else ""
    if len(last) > 200:
        last = SENTENCE_END.split(last.rstrip(".").rstrip())[-1].strip()
    return (last.rstrip(".").strip() or None), "last_line"


def extract_list(response: str) -> tuple[list[str] | None, str]:
    """Extract a list answer such as "[2007, 2008]" as its items, and the rule used."""
    answer, rule = extract_answer_text(response)
    if answer is None:
        return None, "none"
    plain = safe_plain(answer)
    bracketed = re.findall(r"[\[(]([^\[\]()]*,[^\[\]()]*)[\])]", plain)
    if bracketed:
        return [item.strip() for item in bracketed[-1].split(",") if item.strip()], rule
    tokens = [m.group(0).strip() for m in _NUMBER_TOKEN.finditer(plain)]
    return (tokens or None), rule
