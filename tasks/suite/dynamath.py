"""DynaMath (reasoning): 501 seed questions x 10 variants, one published split per variant.

The task reads all ten splits, tags each row with its variant number and orders the rows seed by
seed (so `--limit` keeps whole seeds where it can). Primary score: average-case accuracy (mean over
seeds of the accuracy over their variants); `mvlm_worst_acc`: the share of seeds whose every
variant is answered correctly.
"""

from __future__ import annotations

from typing import Any

import datasets
from mvlm_tasks.scoring import score_dynamath
from mvlm_tasks.sources import SOURCES, load_split

from .common import STANDARD_METRICS, WORST, cot_instruction, record, results, visuals

ANSWER_KINDS = {"multiple choice": "choice", "float": "float"}  # anything else: free form
FLOAT_DECIMALS = 3  # DynaMath asks for floats with three decimals


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_dynamath: every variant split, with a `variant` column, seed-major."""
    parts = []
    for number, split in enumerate(SOURCES["dynamath"].splits, start=1):
        part = load_split("dynamath", split, "mvlm_dynamath")
        parts.append(part.add_column("variant", [number] * len(part)))
    combined = datasets.concatenate_datasets(parts)
    seeds, variants = list(combined["id"]), list(combined["variant"])
    return combined.select(sorted(range(len(combined)), key=lambda i: (seeds[i], variants[i])))


def doc_to_visual(doc: dict[str, Any]) -> list:
    """The variant's image."""
    return visuals(doc["decoded_image"])


def doc_to_text(doc: dict[str, Any]) -> str:
    """The question (choices inline for multiple choice) and the answer-format instruction."""
    kind = ANSWER_KINDS.get(doc["answer_type"], "free")
    precision = FLOAT_DECIMALS if kind == "float" else None
    return f"{doc['question'].strip()}\n{cot_instruction(kind, precision)}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the subject; `seed` and `variant` feed the seed-level scores."""
    verdict = score_dynamath(doc, responses[0])
    sample = record(f"{doc['id']}-v{doc['variant']}", "reasoning", doc["subject"], verdict,
                    seed=doc["id"], variant=doc["variant"])
    return results(sample, (*STANDARD_METRICS, WORST))
