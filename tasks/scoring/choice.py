"""Find which option of a multiple-choice question a response chose.

What the response states as its answer wins (``\\boxed{C}``, "the answer is (C)",
"Answer: C", "Option C is correct"), and among several such statements the last
one: models that correct themselves ("A is wrong ... so the answer is C") end
with the choice they settled on. Only without such a statement do weaker cues
count: a leading letter or option text, then the last option mentioned. The
article "A", the pronoun "I" and letters inside words or naming geometry points
are not read as choices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .comparison import comparison_answer
from .numeric import parse_number
from .text import SENTENCE_END, answer_spans, clean_response, declines_to_answer, first_clause, safe_plain

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_LETTER_COUNT = 5
TAIL_CHARS = 3000
MAX_SPANS = 64  # only the last stated answers matter; bounds work on pathological text

_LEAD_NOISE = re.compile(r"^[\s:=>*\"'\-–—]+")
_OPTION_WORD = re.compile(r"^(?:the\s+)?(?:option|choice|letter)\s*:?\s*", re.IGNORECASE)
_LETTER_IS_CORRECT = re.compile(
    r"(?:\b(?i:option|choice)\s*)?\(?\b([A-Z])\b\)?\s+(?:is|seems|appears)\s+(?:to\s+be\s+)?(?:the\s+)?"
    r"(?i:correct|right|best|most\s+(?:appropriate|accurate|likely|suitable|reasonable))\b"
)
_LETTER_MENTION = re.compile(
    r"\(([A-Z])\)"
    r"|\b(?i:option|choice)\s*\(?([A-Z])\b\)?"
    r"|(?m:^[ \t]*([A-Z])[.):](?=\s|$))"
    r"|\s\(?([A-Z])\)?(?=[ \t]*(?:[.;!?]|(?m:$)))"
)
_PLAIN_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:/\d+)?(?![\w/]|\.\d)")
_GEOMETRY_WORD = re.compile(
    r"(?:point|points|vertex|angle|side|line|segment|node|circle|and|to|from|of|at|between|plane)\s*$",
    re.IGNORECASE,
)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", safe_plain(text)).strip().strip(".").strip().lower()


def option_at_start(text: str, options: Sequence[str], letters: str) -> str | None:
    """Letter of the longest option whose text the (normalised) text starts with."""
    low = _norm(text)
    best, best_len = None, 0
    for letter, option in zip(letters, options):
        opt = _norm(option)
        if opt and low.startswith(opt) and len(opt) > best_len:
            rest = low[len(opt) :]
            if not rest or not (rest[0].isalnum() or (opt[-1].isdigit() and rest[0] == ".")):
                best, best_len = letter, len(opt)
    return best


def other_option_named(rest: str, options: Sequence[str], letters: str, letter: str) -> str | None:
    """The option `rest` (the text after a label `letter`) starts with, when that is another option
    than `letter` and not a number: a label followed by another option's words names that option
    ("A: No" for a yes/no question is No)."""
    named = option_at_start(rest, options, letters)
    if named and named != letter and parse_number(options[letters.index(named)]) is None:
        return named
    return None


def _option_values(options: Sequence[str], letters: str) -> list[tuple[str, float]]:
    return [(letter, n.value) for letter, option in zip(letters, options) if (n := parse_number(option))]


def _letter_for_value(text: str, values: list[tuple[str, float]]) -> str | None:
    """The one numeric option whose value the text states, if exactly one matches."""
    number = parse_number(text) if values else None
    if number is None:
        return None
    hits = [letter for letter, value in values if abs(number.value - value) <= 1e-9 * max(1.0, abs(value))]
    return hits[0] if len(hits) == 1 else None


def _option_mentions(text: str, options: Sequence[str], letters: str) -> list[tuple[int, str]]:
    """(end position, letter) of every whole-word occurrence of an option's text.

    A match lying inside a longer option's match ("cat" inside "black cat") is dropped.
    """
    low = text.lower()
    normed = {letter: _norm(option) for letter, option in zip(letters, options)}
    spans: dict[str, list[tuple[int, int]]] = {}
    for letter, opt in normed.items():
        if opt and len(opt) <= 200:
            pattern = rf"(?<![\w.]){re.escape(opt)}(?![\w]|\.\d)"
            spans[letter] = [m.span() for m in re.finditer(pattern, low)]
    found = []
    for letter, own in spans.items():
        longer = [
            span
            for other, other_spans in spans.items()
            if other != letter
            and normed[letter] in normed[other]
            and len(normed[other]) > len(normed[letter])
            for span in other_spans
        ]
        found += [(e, letter) for s, e in own if not any(ls <= s and e <= le for ls, le in longer)]
    return found


def _value_mentions(text: str, options: Sequence[str], letters: str) -> list[tuple[int, str]]:
    """(end position, letter) of numbers in text equal in value to a numeric option ("4.0" for "4")."""
    values = _option_values(options, letters)
    if not values:
        return []
    found = []
    for m in _PLAIN_NUMBER.finditer(text):
        letter = _letter_for_value(m.group(0), values)
        if letter:
            found.append((m.end(), letter))
    return found


def _choice_in_segment(segment: str, options: Sequence[str], letters: str) -> str | None:
    clause = safe_plain(segment.strip())
    for line in clause.split("\n"):
        if line.strip():
            clause = line.strip()[:200]
            break
    clause = _OPTION_WORD.sub("", _LEAD_NOISE.sub("", clause))
    if not clause or re.match(r"(?:not|neither|none)\b", clause, re.IGNORECASE):
        return None
    by_text = option_at_start(clause, options, letters)
    if by_text:
        return by_text
    m = re.match(r"(\()?([A-Za-z])\)?(?![A-Za-z0-9])", clause)
    if m:
        letter = m.group(2)
        if letter.isupper():
            return letter if letter in letters else None
        if m.group(1) or re.fullmatch(r"[a-z]\)?\s*[.)\]:;,]?\s*", clause[:4]):
            return letter.upper() if letter.upper() in letters else None
    first = first_clause(clause)
    by_value = _letter_for_value(first, _option_values(options, letters))
    if by_value:
        return by_value
    mentioned = {letter for _, letter in _option_mentions(_norm(first), options, letters)}
    return mentioned.pop() if len(mentioned) == 1 else None


_LOWER_LABEL = re.compile(r"\(([a-z])\)[.:]?|([a-z])(?:[.):]|(?=\s*$))")


def _leading_choice(text: str, options: Sequence[str], letters: str) -> tuple[str, str] | None:
    s = _OPTION_WORD.sub("", text.strip())
    m = re.match(r"\(([A-Z])\)|([A-Z])(?=[ \t]*(?:$|[\n.:),;]|[ \t]+[-–—][ \t]))", s)
    if m:
        letter = m.group(1) or m.group(2)
        # "A: No, it is not" / "A) no": a label followed by another option's words names that option
        named = other_option_named(_LEAD_NOISE.sub("", s[m.end() :].lstrip(").:")), options, letters, letter)
        if named:
            return named, "option_text"
        if letter in letters:
            return letter, "leading_letter"
    lower = _LOWER_LABEL.match(s)
    if lower:  # "b", "(b)", "b) blue": a lower-case letter alone, or labelling its own option's text
        letter = (lower.group(1) or lower.group(2)).upper()
        rest = s[lower.end() :].strip()
        if letter in letters and (not rest or option_at_start(rest, options, letters) == letter):
            return letter, "leading_letter"
    if options:
        short = len(s) <= 40
        letter = option_at_start(s, options, letters)
        if letter and (short or parse_number(options[letters.index(letter)]) is None):
            return letter, "option_text"
    return None


def _letter_mentions(plain: str, letters: str) -> list[tuple[int, str]]:
    found = []
    for m in _LETTER_MENTION.finditer(plain):
        letter = next(g for g in m.groups() if g)
        if letter not in letters:
            continue
        if m.group(4) and _GEOMETRY_WORD.search(plain[max(0, m.start() - 12) : m.start() + 1]):
            continue
        found.append((m.end(), letter))
    return found


_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = {"the", "a", "an", "and", "or", "of", "to", "in", "on", "is", "are", "will", "be", "it", "its"}
MAX_GAP = 2  # words allowed between two words of an option paraphrased in a response


def _stems(text: str) -> list[str]:
    return [w[:4] for w in _WORD.findall(text.lower())]


def _paraphrase_score(words: list[str], stems: list[str]) -> int:
    """How many of an option's word stems a response has in order, each within MAX_GAP words of the
    previous one (best over all starting points)."""
    best = 0
    for start, word in enumerate(words):
        if word != stems[0]:
            continue
        count, at = 1, start
        for stem in stems[1:]:
            window = words[at + 1 : at + 2 + MAX_GAP]
            if stem in window:
                at += 1 + window.index(stem)
                count += 1
        best = max(best, count)
    return best


def _paraphrased_option(plain: str, options: Sequence[str], letters: str) -> str | None:
    """The one text option whose distinctive words the response uses, in order and close together
    ("the letter has been flipped" -> "flip"; "plants may increase" -> "plants increase"); needs at
    least half of them, and strictly more than any other option."""
    if not options or any(parse_number(option) is not None for option in options):
        return None
    words = _stems(plain)
    stem_lists = [_stems(option) for option in options]
    shared = set.intersection(*(set(stems) for stems in stem_lists))
    scores = []
    for letter, stems in zip(letters, stem_lists):
        distinctive = [s for s in stems if s not in shared and s not in _STOP_WORDS]
        if not distinctive:
            return None
        kept = [s for s in stems if s not in _STOP_WORDS]
        hits = min(len(distinctive), max(_paraphrase_score(words, kept[i:]) for i in range(len(kept))))
        scores.append((hits / len(distinctive) if _has_any(words, distinctive) else 0.0, letter))
    scores.sort(reverse=True)
    best, runner_up = scores[0], scores[1] if len(scores) > 1 else (0.0, "")
    return best[1] if best[0] >= 0.5 and best[0] > runner_up[0] else None


def _has_any(words: list[str], stems: list[str]) -> bool:
    return any(stem in words for stem in stems)


_LABEL = re.compile(r"\(([A-Z])\)\s*")


def _labelled_option(plain: str, options: Sequence[str], letters: str) -> str | None:
    """The one option named by its letter and its text together ("are (C) Snake and raccoon"); None
    when there is none, or several (a response going through the options one by one)."""
    named = set()
    for m in _LABEL.finditer(plain):
        letter = m.group(1)
        if letter in letters and option_at_start(plain[m.end() : m.end() + 200], options, letters) == letter:
            named.add(letter)
    return named.pop() if len(named) == 1 else None


_NEGATION = re.compile(r"\b(?:not|no|never|neither|nor|none)\b|n't\b", re.IGNORECASE)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def _yes_or_no(plain: str, options: Sequence[str], letters: str, question: str) -> str | None:
    """For a yes/no question answered by a statement: its own yes or no; for a comparison question,
    what the statement's comparison says ("there are more Y than X" to "are there fewer X than Y?");
    else "no" when its first sentence is negated ("Dark Orchid is not the maximum"), "yes" if not."""
    normed = [_norm(option) for option in options]
    if sorted(normed) != ["no", "yes"]:
        return None
    sentences = [s.strip() for s in SENTENCE_END.split(plain) if s.strip()]
    if not sentences:
        return None
    first = sentences[0]
    stated = _YES_NO.match(first)
    compared = comparison_answer(question, first) if question and not stated else None
    if stated:
        word = stated.group(1).lower()
    elif compared is not None:
        word = "yes" if compared else "no"
    else:
        word = "no" if _NEGATION.search(first) else "yes"
    return letters[normed.index(word)]


def extract_choice(response: str, choices: Sequence[str], question: str = "") -> tuple[str | None, str]:
    """Extract the chosen option letter ("A", "B", ...) and the rule that found it.

    `choices` are the option texts in order (A first); with no choices the letters
    A-E are accepted and option text cannot be matched. Returns (None, "none")
    when the response states no choice.
    """
    text = clean_response(response)
    if not text.strip():
        return None, "none"
    all_spans = answer_spans(text)
    if declines_to_answer(text, all_spans):
        return None, "refusal"
    options = [str(c) for c in choices] if choices else []
    letters = LETTERS[: len(options)] if options else LETTERS[:DEFAULT_LETTER_COUNT]
    stated = [
        (m.start(), "answer_is", m.group(1))
        for m in _LETTER_IS_CORRECT.finditer(text)
        if m.group(1) in letters
    ]
    spans = all_spans[-MAX_SPANS:]
    for span in reversed(spans):
        letter = _choice_in_segment(span.text, options, letters)
        if letter:
            stated.append((span.start, span.rule, letter))
            break
    if stated:
        _, rule, letter = max(stated, key=lambda s: s[0])
        return letter, rule
    if spans and spans[-1].rule == "boxed" and spans[-1].text.strip():
        return None, "boxed"  # the boxed final answer names no option (\boxed{R} of five): no guessing
    leading = _leading_choice(safe_plain(text), options, letters)
    if leading:
        return leading
    labelled = _labelled_option(safe_plain(text), options, letters)
    if labelled:
        return labelled, "labelled_option"
    plain = safe_plain(text[-TAIL_CHARS:])
    weak = [(pos, "last_letter", letter) for pos, letter in _letter_mentions(plain, letters)]
    weak += [(pos, "option_text", letter) for pos, letter in _option_mentions(plain, options, letters)]
    weak += [(pos, "option_text", letter) for pos, letter in _value_mentions(plain, options, letters)]
    if weak:
        _, rule, letter = max(weak, key=lambda w: w[0])
        return letter, rule
    paraphrased = _paraphrased_option(plain, options, letters)
    if paraphrased:
        return paraphrased, "option_words"
    yes_no = _yes_or_no(plain, options, letters, question)
    if yes_no:
        return yes_no, "yes_no"
    return None, "none"


_LETTER_LIST = re.compile(r"\(?([A-Z])\)?(?:\s*(?:,|;|&|/|and|or)?\s*\(?[A-Z]\)?)*(?![A-Za-z0-9])")


def extract_choice_set(response: str, choices: Sequence[str]) -> tuple[tuple[str, ...] | None, str]:
    """The option letters a response states as its answer, for questions with several right options
    ("\\boxed{C, D}", "The answer is C and D."): the list of letters its last stated answer starts
    with; without one, the single choice `extract_choice` reads. Sorted, without repeats."""
    text = clean_response(response)
    options = [str(c) for c in choices] if choices else []
    letters = LETTERS[: len(options)] if options else LETTERS[:DEFAULT_LETTER_COUNT]
    spans = answer_spans(text)[-MAX_SPANS:] if text.strip() else []
    if spans:
        last = spans[-1]
        stated = safe_plain(last.text).strip() if last.rule == "boxed" else first_clause(safe_plain(last.text))
        stated = _OPTION_WORD.sub("", _LEAD_NOISE.sub("", stated)).replace("options", "").strip()
        listed = _LETTER_LIST.match(stated)
        found = sorted(set(re.findall(r"[A-Z]", listed.group(0)))) if listed else []
        if len(found) > 1 and all(letter in letters for letter in found):
            return tuple(found), last.rule
    letter, rule = extract_choice(response, choices)
    return ((letter,) if letter else None), rule
