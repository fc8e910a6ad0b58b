"""The two scoring protocols, both applied to every response.

- `official`: the benchmark's own evaluation (see `official`), the default: leaderboard and paper
  comparisons use it.
- `strict`: the project's rules alone (see `datasets`): the answer the response states, compared by
  value; no guessing fallbacks (an unreadable answer is wrong).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from . import datasets, official
from .budget import BudgetExceeded
from .verdict import Verdict

OFFICIAL = "official"
STRICT = "strict"
PROTOCOLS = (OFFICIAL, STRICT)
DEFAULT_PROTOCOL = OFFICIAL

Scorer = Callable[[Mapping[str, Any], str], Verdict]
MAX_REASON_CHARS = 200


def guarded(scorer: Scorer) -> Scorer:
    """`scorer` that never raises: a response over the scoring budget, or one the scorer fails on,
    is scored wrong with the reason (rule "over_budget" or "scorer_error") instead of stopping the run."""

    def score(doc: Mapping[str, Any], response: str) -> Verdict:
        try:
            return scorer(doc, response)
        except BudgetExceeded as exc:
            return Verdict(None, False, "over_budget", reason=str(exc))
        except Exception as exc:  # noqa: BLE001 (a model's text must not stop an evaluation)
            return Verdict(None, False, "scorer_error", reason=f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS])

    return functools.wraps(scorer)(score)


SCORERS: dict[str, dict[str, Scorer]] = {
    name: {OFFICIAL: guarded(official_scorer), STRICT: guarded(strict_scorer)}
    for name, official_scorer, strict_scorer in (
        ("mathvista", official.mathvista.score, datasets.score_mathvista),
        ("mathvision", official.mathvision.score, datasets.score_mathvision),
        ("mathverse", official.mathverse.score, datasets.score_mathverse),
        ("dynamath", official.dynamath.score, datasets.score_dynamath),
        ("ocrbench", official.ocrbench.score, datasets.score_ocrbench),
        ("mmstar", official.mmstar.score, datasets.score_mmstar),
    )
}


def score_protocols(benchmark: str, doc: Mapping[str, Any], response: str) -> dict[str, Verdict]:
    """The verdict of every protocol on one response (`benchmark`: a key of SCORERS)."""
    if benchmark not in SCORERS:
        raise KeyError(f"unknown benchmark {benchmark!r}; expected one of {sorted(SCORERS)}")
    return {protocol: scorer(doc, response) for protocol, scorer in SCORERS[benchmark].items()}


def one_rule_set(verdict: Verdict) -> dict[str, Verdict]:
    """The same verdict under every protocol, for tasks with a single rule set (the probe)."""
    return {protocol: verdict for protocol in PROTOCOLS}
