"""Pieces every task shares: prompt styles and instructions, images for the model, the per-sample record.

Every task's `process_results` returns the same record under each of its metric names, so that
lmms-eval's `--log_samples` files carry, for every sample, its split, category, and the verdict of
each scoring protocol, and each metric's aggregation (see `metrics`) reads what it needs from those
records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mvlm_tasks.scoring import DEFAULT_PROTOCOL, PROTOCOLS, Verdict
from PIL import Image

# Metric names, shared by all tasks so results tooling can read them uniformly.
ACC = "mvlm_acc"  # the benchmark's primary score (what group split averages use)
MICRO = "mvlm_micro_acc"  # mean over samples
MACRO = "mvlm_macro_acc"  # mean over categories of the per-category accuracy
BY_CATEGORY = "mvlm_by_category"  # {category: accuracy}
STRICT_ACC = "mvlm_strict_acc"  # the primary score under the strict protocol
WORST = "mvlm_worst_acc"  # DynaMath: share of seed questions answered right in every variant
STANDARD_METRICS = (ACC, STRICT_ACC, MICRO, MACRO, BY_CATEGORY)

# Prompt styles, chosen by a task's `lmms_eval_specific_kwargs: {default: {prompt: ...}}`.
OFFICIAL_PROMPT = "official"  # the benchmark's own prompt (the mvlm_<task> default)
COT_PROMPT = "cot"  # the project's chain of thought + \boxed{} prompt (the mvlm_<task>_cot variants)
PROMPT_STYLES = (OFFICIAL_PROMPT, COT_PROMPT)


def prompt_style(lmms_eval_specific_kwargs: Mapping[str, Any] | None) -> str:
    """The prompt style a task asks for (official when it names none)."""
    style = (lmms_eval_specific_kwargs or {}).get("prompt", OFFICIAL_PROMPT)
    if style not in PROMPT_STYLES:
        raise ValueError(f"lmms_eval_specific_kwargs prompt {style!r} is not one of {PROMPT_STYLES}")
    return style

_COT = "Think step by step, then write {what} in \\boxed{{}}."


def cot_instruction(kind: str, precision: int | None = None) -> str:
    """The answer-format instruction appended to a chain-of-thought question.

    kind: "choice" (an option letter), "integer", "float" (with `precision` decimals when known),
    "list", or "free" (any final answer).
    """
    what = {
        "choice": "the letter of the correct option",
        "integer": "the final answer as an integer",
        "float": "the final answer as a number" + (
            "" if precision is None else f" with {precision} decimal place{'' if precision == 1 else 's'}"),
        "list": "the final answer as a list such as [1, 2, 3]",
        "free": "the final answer",
    }
    if kind not in what:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {tuple(what)}")
    return _COT.format(what=what[kind])


def short_instruction(kind: str) -> str:
    """The answer-format instruction for a question answered directly: "choice", "integer" or "text"."""
    instructions = {
        "choice": "Answer with the option letter only.",
        "integer": "Answer with a single integer.",
        "text": "Answer with a single word or phrase.",
    }
    if kind not in instructions:
        raise ValueError(f"unknown answer kind {kind!r}; expected one of {tuple(instructions)}")
    return instructions[kind]


def lettered(options: Sequence[str]) -> str:
    """Options as lines "(A) first", "(B) second", ..."""
    return "\n".join(f"({chr(65 + i)}) {option}" for i, option in enumerate(options))


def visuals(image: Image.Image) -> list[Image.Image]:
    """The visual list lmms-eval passes to models: one RGB image."""
    return [image.convert("RGB")]


def _verdict_fields(verdict: Verdict) -> dict[str, Any]:
    fields = {"correct": bool(verdict.correct), "extracted": verdict.extracted, "rule": verdict.rule}
    if verdict.reason is not None:
        fields["reason"] = verdict.reason  # why it was scored wrong unseen (over the scoring budget)
    return fields


def record(item_id: str | None, split: str, category: str, verdicts: Mapping[str, Verdict],
           **extra: Any) -> dict[str, Any]:
    """The per-sample record: ids, split, category; `correct`, `extracted`, `rule` and `flagged` of
    the default (official) protocol; and `verdicts`: {protocol: {correct, extracted, rule}} for both."""
    missing = [protocol for protocol in PROTOCOLS if protocol not in verdicts]
    if missing:
        raise ValueError(f"record needs a verdict for every protocol; missing {missing}")
    default = verdicts[DEFAULT_PROTOCOL]
    return {
        "id": item_id,
        "split": split,
        "category": category,
        **_verdict_fields(default),
        "flagged": any(bool(verdicts[protocol].flagged) for protocol in PROTOCOLS),
        "verdicts": {protocol: _verdict_fields(verdicts[protocol]) for protocol in PROTOCOLS},
        **extra,
    }


def results(sample: dict[str, Any], metrics: Sequence[str] = STANDARD_METRICS) -> dict[str, dict[str, Any]]:
    """`process_results` output: the record under every metric name the task declares."""
    return {metric: sample for metric in metrics}
