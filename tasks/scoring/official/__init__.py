"""The `official` protocol: each benchmark's own published evaluation, reproduced rule for rule.

One module per benchmark, each with `score(doc, response) -> Verdict` on a document in the dataset's
published Hugging Face schema. Where the official pipeline asks GPT to extract (MathVista) or to
judge (MathVerse), the project's rules stand in for it, or the optional judge when
MERGED_VLM_JUDGE_URL is set; normalisation, fallbacks, tolerances and comparisons are the official
ones. MATH-V, DynaMath, OCRBench and MMStar are evaluated by rules officially and are reproduced as
such. `benchmarks/official_agreement.py` measures the agreement with official verdicts on real
model responses.
"""

from . import dynamath, mathverse, mathvision, mathvista, mathvista_extraction, mmstar, ocrbench

__all__ = ["dynamath", "mathverse", "mathvision", "mathvista", "mathvista_extraction", "mmstar", "ocrbench"]
