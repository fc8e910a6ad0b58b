"""DynaMath (reasoning): 501 seed questions x 10 variants, one published split per variant.

The task reads all ten splits, tags each row with its variant number and orders the rows seed by
seed (so `--limit` keeps whole seeds where it can). Primary score: average-case accuracy (the mean
over seeds of the accuracy over their variants: the paper's number); `mvlm_worst_acc`: worst-case
accuracy, the share of seeds whose every variant is answered correctly (the DynaMath leaderboard's).

Official prompt: DynaMath's evaluation template: "## Question\\n", the question, "Please answer in a
floating-point number." for float answers, then its answer instruction asking for JSON with
"solution" and "short answer" keys and the JSON example. The `_cot` variant uses the project's
prompt instead.
"""

from __future__ import annotations

import json
from typing import Any

import datasets
from mvlm_tasks.scoring import score_protocols
from mvlm_tasks.sources import SOURCES, load_split

from .common import (
    COT_PROMPT,
    STANDARD_METRICS,
    WORST,
    cot_instruction,
    prompt_style,
    record,
    results,
    visuals,
)

ANSWER_KINDS = {"multiple choice": "choice", "float": "float"}  # anything else: free form
FLOAT_DECIMALS = 3  # DynaMath asks for floats with three decimals
FLOAT_HINT = "Please answer in a floating-point number."
GUIDE = (  # DynaMath's text, line breaks and trailing spaces included
    "\n## Answer Instruction Please provide an answer to the question outlined above. Your response should adhere "
    "\nto the following JSON format, which includes two keys: 'solution' and 'short answer'. The 'solution' key can "
    "contain \ndetailed steps needed to solve the question, and the 'short answer' key should provide a concise "
    "response. If the problem is a multiple choice problem, just provide the corresponing choice option, \nsuch as "
    "'A', 'B', 'C', or 'D'. If the answer is a numerical value, format it as a three-digit floating-point number."
    "\n\nExample of expected JSON response format:\n\n"
)
JSON_EXAMPLE = json.dumps({"solution": "[Detailed step-by-step explanation]", "short answer": "[Concise Answer]"},
                          indent=4)


def docs(_placeholder: datasets.Dataset) -> datasets.Dataset:
    """process_docs of mvlm_dynamath (and its _cot variant): every variant split, with a `variant`
    column, seed-major."""
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


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """Official: DynaMath's template. `_cot`: the question (choices inline) and the chain-of-thought
    instruction."""
    if prompt_style(lmms_eval_specific_kwargs) == COT_PROMPT:
        kind = ANSWER_KINDS.get(doc["answer_type"], "free")
        precision = FLOAT_DECIMALS if kind == "float" else None
        return f"{doc['question'].strip()}\n{cot_instruction(kind, precision)}"
    hint = FLOAT_HINT if doc["answer_type"] == "float" else ""
    return f"## Question\n{doc['question']}{hint}{GUIDE}{JSON_EXAMPLE}"


def process_results(doc: dict[str, Any], responses: list[str]) -> dict[str, dict[str, Any]]:
    """Score the response; category is the subject; `seed` and `variant` feed the seed-level scores."""
    verdicts = score_protocols("dynamath", doc, responses[0])
    sample = record(f"{doc['id']}-v{doc['variant']}", "reasoning", doc["subject"], verdicts,
                    seed=doc["id"], variant=doc["variant"])
    return results(sample, (*STANDARD_METRICS, WORST))
