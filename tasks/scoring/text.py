"""Prepare a model response for extraction and find the places where it states an answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .latex import LatexError, braced_contents, to_plain

SEGMENT_CHARS = 300

_THINK_END = re.compile(r"</think\s*>", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>\s*([^<]{0,300}?)\s*</answer>", re.IGNORECASE)
_JSON_SHORT = re.compile(
    r"[\"']short[ _]answer[\"']\s*:\s*(?:\"([^\"\n]{0,200})\"|'([^'\n]{0,200})'|([^,}\n]{1,100}))",
    re.IGNORECASE,
)
_VERB = r"(?:\s*(?:is|are|was|were|would\s+be|should\s+be|will\s+be|must\s+be|=|:|-)(?![A-Za-z]))"
_MARKER = re.compile(
    rf"\b(?:final|correct|right|best)\s+(?:answer|option|choice)s?\b{_VERB}?"
    rf"|\banswer(?:\s+(?:to|for)\s+(?:the|this)\s+question)?{_VERB}"
    rf"|\b(?:correct\s+)?option\s+letter(?:\s+(?:to|for)\s+(?:the|this)\s+question)?{_VERB}"
    r"|\bans\s*[:.]"
    r"|(?:答案|选项)\s*(?:应该是|应为|为|是|[:：])\s*[:：]?|故选|应选"
    r"|\bthe\s+(?:option|choice)\s+(?:is|would\s+be|should\s+be)\b"
    r"|\bI\s*(?:would|will|'ll|'d)?\s*(?:choose|select|pick|go\s+with)\b"
    r"|\b(?:choose|select|pick|go\s+with)\s+(?=(?:option|choice)\b)",
    re.IGNORECASE,
)
SENTENCE_END = re.compile(r"(?<!approx)(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)|[;!?](?=\s|$)|\n")
# A response that declines to answer: what the official GPT extractors read as no answer ("N/A").
_REFUSAL = re.compile(
    r"\b(?:cannot|can\s*not|can't|unable\s+to|impossible\s+to|not\s+possible\s+to|no\s+way\s+to)\s+"
    r"(?:be\s+)?(?:definitively\s+|accurately\s+|confidently\s+|directly\s+)?"
    r"(?:determine|determined|answer|answered|provide|provided|tell|say|calculate|calculated|find|identify|see|"
    r"analy[sz]e|view|process|assist|help|give|given)\b"
    r"|\b(?:not|insufficient)\s+(?:enough\s+)?(?:information|data|context|details)\b"
    r"|\bdoes\s+not\s+(?:provide|give|specify|include|contain)\b"
    r"|\bwithout\s+(?:the|a|an|any|more|specific|additional|further)\s+(?:\w+\s+)?"
    r"(?:image|diagram|figure|picture|chart|graph|information|data|context|details|function|values?)\b"
    r"|\bplease\s+provide\b|\bI'?m\s+sorry\b|\bsorry,|\bas\s+an\s+AI\b",
    re.IGNORECASE,
)
_ANSWERS_ANYWAY = re.compile(
    r"(?:however|but|still|nevertheless|that\s+said|based\s+on|assuming|if\s+we|typically|usually|generally|"
    r"in\s+general|my\s+best\s+guess|a\s+(?:reasonable|likely)\s+(?:guess|answer|estimate))\b",
    re.IGNORECASE,
)
_NEGATED = re.compile(r"\s*(?:not\b|n't\b|neither\b|none\s+of\b|unclear\b|unknown\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """A place where the response states an answer: its position, kind and the text to read."""

    start: int
    rule: str  # "boxed" or "answer_is"
    text: str


def strip_reasoning(response: object) -> str:
    """Response as text (None becomes ""); when a model closed a ``<think>`` block
    and wrote something after it, only that part is kept."""
    if response is None:
        return ""
    text = response if isinstance(response, str) else str(response)
    parts = _THINK_END.split(text)
    return parts[-1] if len(parts) > 1 and parts[-1].strip() else text


def fold_fullwidth(text: str) -> str:
    """Map full-width ASCII (ＡＢＣ１２３) and the ideographic space to plain ASCII."""
    if not any("\uff01" <= ch <= "\uff5e" or ch == "\u3000" for ch in text):
        return text
    return "".join(
        chr(ord(ch) - 0xFEE0) if "\uff01" <= ch <= "\uff5e" else " " if ch == "\u3000" else ch for ch in text
    )


def clean_response(response: object) -> str:
    """Response text ready for extraction: reasoning dropped (see strip_reasoning),
    full-width ASCII folded, markdown emphasis and heading marks removed."""
    text = strip_reasoning(response)
    text = fold_fullwidth(text.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r"\*\*|__|`", "", text)
    return re.sub(r"(?m)^[ \t]*#{1,6}[ \t]*", "", text)


def answer_spans(text: str) -> list[Span]:
    """Every boxed answer, <answer> tag, JSON "short answer" and "the answer is ..." phrase, in order."""
    spans = [Span(start, "boxed", content) for start, content in braced_contents(text, "boxed")]
    spans += [Span(start, "boxed", content) for start, content in braced_contents(text, "fbox")]
    spans += [Span(m.start(), "answer_is", m.group(1)) for m in _ANSWER_TAG.finditer(text)]
    for m in _JSON_SHORT.finditer(text):
        value = next(g for g in m.groups() if g is not None)
        spans.append(Span(m.start(), "answer_is", value))
    for m in _MARKER.finditer(text):
        segment = text[m.end() : m.end() + SEGMENT_CHARS]
        if not _NEGATED.match(segment):
            spans.append(Span(m.start(), "answer_is", segment))
    spans.sort(key=lambda s: s.start)
    return spans


def declines_to_answer(text: str, spans: list[Span] | None = None) -> bool:
    """True when the response says it cannot answer: in its last stated answer ("the correct option
    is: cannot be determined"), or, stating none, in its last sentence, or in the one before unless
    the last goes on to answer anyway ("However, ...", "Based on ..."). `spans`: answer_spans(text),
    when the caller has them already."""
    if spans is None:
        spans = answer_spans(text)
    if spans:
        last = spans[-1]
        return last.rule != "boxed" and _REFUSAL.search(first_clause(last.text)) is not None
    return closes_declining(text)


def closes_declining(text: str) -> bool:
    """True when the last sentence says the question cannot be answered, or the one before does and
    the last does not go on to answer anyway ("However, ...", "Based on ...")."""
    sentences = [s.strip() for s in SENTENCE_END.split(text.strip()) if s.strip()]
    if not sentences:
        return False
    if _REFUSAL.search(sentences[-1]):
        return True
    # a refusal just before the end counts, unless the last sentence goes on to answer anyway
    return len(sentences) > 1 and bool(_REFUSAL.search(sentences[-2])) and not _ANSWERS_ANYWAY.match(sentences[-1])


def safe_plain(text: str) -> str:
    """to_plain(text), or text unchanged when its LaTeX nests too deeply."""
    try:
        return to_plain(text)
    except LatexError:
        return text


def first_clause(segment: str) -> str:
    """The first sentence of the first non-empty line of a segment."""
    for line in segment.split("\n"):
        if line.strip():
            return SENTENCE_END.split(line.strip(), maxsplit=1)[0].strip()
    return ""
