"""The two scoring protocols, both applied to every response.

- `official`: the benchmark's own evaluation (see `official`), the default: leaderboard and paper
  comparisons use it.
- `strict`: the project's rules alone (see `datasets`): the answer the response states, compared by
  value; no guessing fallbacks (an unreadable answer is wrong).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import datasets, official
from .verdict import Verdict

OFFICIAL = "official"
STRICT = "strict"
PROTOCOLS = (OFFICIAL, STRICT)
DEFAULT_PROTOCOL = OFFICIAL

Scorer = Callable[[Mapping[str, Any], str], Verdict]
SCORERS: dict[str, dict[str, Scorer]] = {
    "mathvista": {OFFICIAL: official.mathvista.score, STRICT: datasets.score_mathvista},
    "mathvision": {OFFICIAL: official.mathvision.score, STRICT: datasets.score_mathvision},
    "mathverse": {OFFICIAL: official.mathverse.score, STRICT: datasets.score_mathverse},
    "dynamath": {OFFICIAL: official.dynamath.score, STRICT: datasets.score_dynamath},
    "ocrbench": {OFFICIAL: official.ocrbench.score, STRICT: datasets.score_ocrbench},
    "mmstar": {OFFICIAL: official.mmstar.score, STRICT: datasets.score_mmstar},
}


def score_protocols(benchmark: str, doc: Mapping[str, Any], response: str) -> dict[str, Verdict]:
    """The verdict of every protocol on one response (`benchmark`: a key of SCORERS)."""
    if benchmark not in SCORERS:
        raise KeyError(f"unknown benchmark {benchmark!r}; expected one of {sorted(SCORERS)}")
    return {protocol: scorer(doc, response) for protocol, scorer in SCORERS[benchmark].items()}


def one_rule_set(verdict: Verdict) -> dict[str, Verdict]:
    """The same verdict under every protocol, for tasks with a single rule set (the probe)."""
    return {protocol: verdict for protocol in PROTOCOLS}
