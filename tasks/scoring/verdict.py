"""The result of scoring one response."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """Outcome of scoring one model response against its gold answer.

    `extracted` is the normalised answer read from the response (an option letter
    for multiple choice), None when nothing was found; `rule` names the rule that
    produced it ("boxed", "answer_is", "leading_letter", "option_text",
    "last_letter", "last_number", "last_line", "contains", "judge", "none");
    `flagged` is set when the optional LLM judge failed and this rule-based
    verdict was used instead; `reason` says why a sample was scored wrong without
    being compared (rule "over_budget" or "scorer_error"), None otherwise.
    """

    extracted: str | None
    correct: bool
    rule: str
    flagged: bool = False
    reason: str | None = None
