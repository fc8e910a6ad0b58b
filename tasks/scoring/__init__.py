"""Rule-based answer extraction and scoring (no API key).

Modules: ``choice`` (option letters), ``extract`` (numbers, short text, lists),
``numeric`` (reading and comparing numbers), ``latex`` and ``expr_parser``
(LaTeX to a guarded sympy tree), ``equivalence`` (bounded sympy comparison),
``score`` (generic scorers), ``datasets`` (one `strict` scorer per benchmark schema),
``official`` (each benchmark's own evaluation), ``protocols`` (both verdicts for a response) and
``judge`` (optional LLM judge, used only when ``MERGED_VLM_JUDGE_URL`` is set).
``golden_cases.jsonl`` holds human-labelled responses the rules are tested on.
"""

from .choice import extract_choice
from .datasets import (
    score_dynamath,
    score_mathverse,
    score_mathvision,
    score_mathvista,
    score_mmstar,
    score_ocrbench,
)
from .equivalence import expressions_equivalent
from .extract import extract_number
from .numeric import numbers_equal
from .protocols import DEFAULT_PROTOCOL, OFFICIAL, PROTOCOLS, STRICT, one_rule_set, score_protocols
from .score import score_choice_set, score_free_form, score_multiple_choice
from .verdict import Verdict

__all__ = [
    "DEFAULT_PROTOCOL",
    "OFFICIAL",
    "PROTOCOLS",
    "STRICT",
    "Verdict",
    "expressions_equivalent",
    "extract_choice",
    "extract_number",
    "numbers_equal",
    "one_rule_set",
    "score_choice_set",
    "score_dynamath",
    "score_free_form",
    "score_mathverse",
    "score_mathvision",
    "score_mathvista",
    "score_mmstar",
    "score_multiple_choice",
    "score_ocrbench",
    "score_protocols",
]
