"""The task hooks as lmms-eval calls them, resolved from the task YAMLs: docs, prompts, images,
per-sample records, and the aggregations over hand-written right and wrong responses."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from mvlm_tasks.fixtures import FIXTURE_DIR
from mvlm_tasks.sources import DATA_ENV, PROBE_TASKS, REAL_TASKS
from mvlm_tasks.sources.catalog import COT
from mvlm_tasks.suite import metrics
from PIL import Image

SUITE = Path(__file__).resolve().parents[1] / "tasks" / "suite"
ALL_TASKS = [*REAL_TASKS, *PROBE_TASKS]
OFFICIAL_TASKS = [task for task in REAL_TASKS if not task.endswith(COT)]
RECORD_FIELDS = {"id", "split", "category", "extracted", "correct", "rule", "flagged", "verdicts"}
_SIZES = {"mvlm_ocrbench": 6, "mvlm_mmstar_perception": 4, "mvlm_mathvista_general": 4, "mvlm_mathvista_math": 4,
          "mvlm_mathvision": 6, "mvlm_mathvision_test": 3, "mvlm_mathverse": 10, "mvlm_dynamath": 30,
          "mvlm_mmstar_reasoning": 8}
FIXTURE_SIZES = {**_SIZES, **{task + COT: size for task, size in _SIZES.items()},
                 "mvlm_probe_perception": 200, "mvlm_probe_reasoning": 200}
SPLIT_OF = {"mvlm_ocrbench": "perception", "mvlm_mmstar_perception": "perception",
            "mvlm_mathvista_general": "perception", "mvlm_probe_perception": "perception"}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: _resolve(loader.construct_scalar(node)))


def _resolve(target: str) -> Callable:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _load(name: str) -> dict[str, Any]:
    """A YAML with its includes merged in, as lmms-eval merges them (the including file wins)."""
    config = yaml.load((SUITE / name).read_text(), Loader=_Loader)
    include = config.pop("include", None)
    return {**_load(include), **config} if include else config


def _config(task: str) -> dict[str, Any]:
    """A task's configuration as lmms-eval builds it, its `default` specific kwargs picked."""
    config = _load(f"{task}.yaml")
    if "lmms_eval_specific_kwargs" in config:
        config["lmms_eval_specific_kwargs"] = config["lmms_eval_specific_kwargs"]["default"]
    return config


def base_task(task: str) -> str:
    """The official task a `_cot` variant derives from (the task itself otherwise)."""
    return task.removesuffix(COT)


def docs_of(task: str) -> datasets.Dataset:
    """A task's documents from the shipped fixtures, in lmms-eval's order (process_docs applied to the
    YAML's data files, with MERGED_VLM_DATA pointing at the fixtures)."""
    config = _config(task)
    path = SUITE / config["dataset_kwargs"]["data_files"]["test"]
    placeholder = datasets.Dataset.from_parquet(str(path))
    process_docs = config.get("process_docs")
    if not process_docs:
        return placeholder
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_ENV, str(FIXTURE_DIR))
        return process_docs(placeholder)


def prompt_of(task: str, doc: dict) -> str:
    """The prompt lmms-eval builds for a document (doc_to_text with the task's specific kwargs)."""
    config = _config(task)
    kwargs = config.get("lmms_eval_specific_kwargs")
    return config["doc_to_text"](doc, kwargs) if kwargs is not None else config["doc_to_text"](doc)


def is_choice(task: str, doc: dict) -> bool:
    """Whether the document is answered with an option letter."""
    task = base_task(task)
    if task.startswith("mvlm_mathvista"):
        return doc["question_type"] == "multi_choice"
    if task.startswith("mvlm_mathvision"):
        return bool(doc["options"])
    if task == "mvlm_mathverse":
        return doc["question_type"] == "multi-choice"
    if task == "mvlm_dynamath":
        return doc["answer_type"] == "multiple choice"
    if task.startswith("mvlm_probe"):
        return doc["answer_type"] == "multiple_choice"
    return task.startswith("mvlm_mmstar")


def right_answer(task: str, doc: dict) -> str:
    """The answer a model should give (option letter for multiple choice)."""
    if base_task(task).startswith("mvlm_mathvista") and is_choice(task, doc):
        return chr(65 + doc["choices"].index(doc["answer"]))
    if base_task(task) == "mvlm_ocrbench":
        return doc["answer"][0]
    return doc["ground_truth"] if base_task(task) == "mvlm_dynamath" else doc["answer"]


def wrong_answer(task: str, doc: dict) -> str:
    """A plausible wrong answer: another letter, another number, or a wrong word."""
    gold = right_answer(task, doc)
    if is_choice(task, doc):
        return "B" if gold == "A" else "A"
    try:
        return str(float(gold) + 1)
    except ValueError:
        return "ZEBRA"


def response_with(task: str, answer: str) -> str:
    """A response giving `answer` in the form the task's prompt asks for: the letter first (MMStar),
    DynaMath's JSON, the bare answer (OCRBench), else reasoning ending in \\boxed{}."""
    if task == "mvlm_mmstar_perception" or task == "mvlm_mmstar_reasoning":
        return f"{answer}. That is the answer."
    if task == "mvlm_dynamath":
        return json.dumps({"solution": "Reading the figure step by step.", "short answer": answer}, indent=4)
    if task == "mvlm_ocrbench":
        return answer
    return f"Looking at the image step by step.\nSo the final answer is \\boxed{{{answer}}}."


def _records(task: str, right: Callable[[int, dict], bool]) -> list[dict[str, dict]]:
    config = _config(task)
    out = []
    for index, doc in enumerate(docs_of(task)):
        answer = right_answer(task, doc) if right(index, doc) else wrong_answer(task, doc)
        out.append(config["process_results"](doc, [response_with(task, answer)]))
    return out


def _aggregate(task: str, outputs: list[dict[str, dict]]) -> dict[str, Any]:
    metric_list = _config(task)["metric_list"]
    return {m["metric"]: m["aggregation"]([o[m["metric"]] for o in outputs]) for m in metric_list}


def test_process_docs_select_each_split():
    assert {task: len(docs_of(task)) for task in ALL_TASKS} == FIXTURE_SIZES
    assert {m["category"] for m in docs_of("mvlm_mathvista_general")["metadata"]} == {"general-vqa"}
    assert set(docs_of("mvlm_mmstar_reasoning")["category"]) == {
        "instance reasoning", "logical reasoning", "math", "science & technology"}
    assert docs_of("mvlm_mathvision_test")["id"] == ["1", "2", "3"]


def test_every_real_task_has_a_cot_variant_reading_the_same_documents():
    for task in OFFICIAL_TASKS:
        official, cot = _config(task), _config(task + COT)
        assert official["lmms_eval_specific_kwargs"] == {"prompt": "official"}
        assert cot["lmms_eval_specific_kwargs"] == {"prompt": "cot"} and cot["task"] == task + COT
        assert cot["process_docs"] is official["process_docs"] and cot["metric_list"] == official["metric_list"]


def test_dynamath_docs_hold_every_variant_seed_by_seed():
    dynamath = docs_of("mvlm_dynamath")
    assert dynamath["id"] == ["1"] * 10 + ["2"] * 10 + ["5"] * 10
    assert dynamath["variant"] == list(range(1, 11)) * 3


@pytest.mark.parametrize("task", ALL_TASKS)
def test_prompts_and_images(task: str):
    config = _config(task)
    doc = docs_of(task)[0]
    visuals = config["doc_to_visual"](doc)
    assert len(visuals) == 1 and isinstance(visuals[0], Image.Image) and visuals[0].mode == "RGB"
    text = prompt_of(task, doc)
    if task.startswith("mvlm_probe") or task == "mvlm_ocrbench_cot":
        assert text.endswith(("only.", "integer.", "phrase.")) and "boxed" not in text
    elif task.endswith(COT):
        assert text.endswith("in \\boxed{}.") and "step by step" in text and "<image" not in text
    else:
        assert "step by step" not in text  # official prompts: the benchmark's own


def test_cot_prompts_list_the_options_and_keep_the_unit():
    mathvista = next(d for d in docs_of("mvlm_mathvista_math") if d["question_type"] == "multi_choice")
    assert "\n(A) 97\n(B) 102\n(C) 107\n(D) 122\n" in prompt_of("mvlm_mathvista_math_cot", mathvista)
    with_unit = next(d for d in docs_of("mvlm_mathvista_general") if d["unit"])
    assert "measuring cup? (Unit: g)\n" in prompt_of("mvlm_mathvista_general_cot", with_unit)
    mathvision = next(d for d in docs_of("mvlm_mathvision") if d["id"] == "55")
    text = prompt_of("mvlm_mathvision_cot", mathvision)
    assert text.startswith("Gerda walks along the road") and "\n(A) KNAO\n(B) KNGO\n" in text
    vision_only = next(d for d in docs_of("mvlm_mathverse") if d["problem_version"] == "Vision Only")
    assert prompt_of("mvlm_mathverse_cot", vision_only).startswith("Answer the question shown in the image.\n")


def test_generation_settings_follow_each_prompt():
    official_tokens = {"mvlm_ocrbench": 128, "mvlm_mmstar_perception": 32, "mvlm_mmstar_reasoning": 32,
                       "mvlm_mathvista_general": 512, "mvlm_mathvista_math": 512, "mvlm_mathvision": 4096,
                       "mvlm_mathvision_test": 4096, "mvlm_mathverse": 1024, "mvlm_dynamath": 1024}
    for task in ALL_TASKS:
        kwargs = _config(task)["generation_kwargs"]
        assert kwargs["until"] == [] and kwargs["do_sample"] is False and kwargs["temperature"] == 0
        expected = 32 if task in PROBE_TASKS else official_tokens.get(task, 1024)
        assert kwargs["max_new_tokens"] == expected, task


@pytest.mark.parametrize("task", ALL_TASKS)
def test_right_and_wrong_responses_are_scored_into_records(task: str):
    declared = [m["metric"] for m in _config(task)["metric_list"]]
    right = _records(task, lambda index, doc: True)
    wrong = _records(task, lambda index, doc: False)
    # responses in the official answer format are right under both protocols; the chain-of-thought
    # variants' \\boxed{} responses are right under strict (MMStar's and DynaMath's official parsers
    # expect their own answer formats)
    protocols = ("strict",) if task.endswith(COT) else ("official", "strict")
    for output in right + wrong:
        assert sorted(output) == sorted(declared)
        sample = output["mvlm_acc"]
        assert RECORD_FIELDS <= set(sample) and sample["split"] == SPLIT_OF.get(base_task(task), "reasoning")
        assert set(sample["verdicts"]) == {"official", "strict"}
        assert (sample["correct"], sample["extracted"], sample["rule"]) == tuple(
            sample["verdicts"]["official"][key] for key in ("correct", "extracted", "rule"))
        assert all(output[name] is sample for name in declared)
    for protocol in protocols:
        assert all(o["mvlm_acc"]["verdicts"][protocol]["correct"] for o in right), protocol
        assert all(o["mvlm_acc"]["verdicts"][protocol]["extracted"] is not None for o in right), protocol
    assert not any(o["mvlm_acc"]["verdicts"][p]["correct"] for o in wrong for p in ("official", "strict"))


def test_probe_records_the_same_verdict_under_both_protocols():
    for output in _records("mvlm_probe_reasoning", lambda index, doc: index % 2 == 0)[:20]:
        verdicts = output["mvlm_acc"]["verdicts"]
        assert verdicts["official"] == verdicts["strict"]


def test_mathvista_math_reports_micro_primary_and_macro_over_tasks():
    outputs = _records("mvlm_mathvista_math", lambda index, doc: doc["pid"] == "5")
    scores = _aggregate("mvlm_mathvista_math", outputs)
    assert scores["mvlm_acc"] == scores["mvlm_micro_acc"] == scores["mvlm_strict_acc"] == 0.25
    assert scores["mvlm_by_category"] == {"geometry problem solving": 1.0, "textbook question answering": 0.0}
    assert math.isclose(scores["mvlm_macro_acc"], 0.5)


def test_strict_score_reads_the_strict_verdicts():
    """A \\boxed{} letter after reasoning: MMStar's official rule (the letter first) says wrong,
    the strict rules read it; mvlm_acc and mvlm_strict_acc report the two."""
    config = _config("mvlm_mmstar_reasoning_cot")
    outputs = [config["process_results"](doc, [response_with("mvlm_mmstar_reasoning_cot", right_answer("x", doc))])
               for doc in docs_of("mvlm_mmstar_reasoning_cot")]
    scores = _aggregate("mvlm_mmstar_reasoning_cot", outputs)
    assert scores["mvlm_acc"] == 0.0 and scores["mvlm_strict_acc"] == 1.0


def test_mmstar_primary_score_is_the_macro_mean_over_capabilities():
    outputs = _records("mvlm_mmstar_perception", lambda i, doc: doc["index"] in (0, 1, 2))
    scores = _aggregate("mvlm_mmstar_perception", outputs)
    assert scores["mvlm_by_category"] == {"coarse perception": 1.0, "fine-grained perception": 0.5}
    assert scores["mvlm_acc"] == scores["mvlm_macro_acc"] == 0.75 == scores["mvlm_micro_acc"]
    assert outputs[2]["mvlm_acc"]["subcategory"] == "object counting"


def test_dynamath_reports_average_and_worst_case_over_seeds():
    def right(index: int, doc: dict) -> bool:
        return doc["id"] == "1" or (doc["id"] == "5" and doc["variant"] <= 5)

    outputs = _records("mvlm_dynamath", right)
    scores = _aggregate("mvlm_dynamath", outputs)
    assert scores["mvlm_acc"] == 0.5 == scores["mvlm_micro_acc"] == scores["mvlm_strict_acc"]
    assert math.isclose(scores["mvlm_worst_acc"], 1 / 3)
    assert scores["mvlm_by_category"] == {"analytic geometry": 1.0, "statistics": 0.25}
    record = outputs[22]["mvlm_acc"]
    assert {key: record[key] for key in ("id", "split", "category", "correct", "seed", "variant")} == {
        "id": "5-v3", "split": "reasoning", "category": "statistics", "correct": True, "seed": "5", "variant": 3}
    assert record["verdicts"]["official"] == {"correct": True, "extracted": "A", "rule": "json"}


def test_aggregations_on_hand_written_records():
    def verdicts(official: bool, strict: bool) -> dict:
        return {"official": {"correct": official}, "strict": {"correct": strict}}

    records = [
        {"category": "a", "seed": "1", "correct": True, "verdicts": verdicts(True, False)},
        {"category": "a", "seed": "1", "correct": False, "verdicts": verdicts(False, False)},
        {"category": "a", "seed": "2", "correct": True, "verdicts": verdicts(True, True)},
        {"category": "b", "seed": "3", "correct": True, "verdicts": verdicts(True, True)},
    ]
    assert metrics.micro_accuracy(records) == 0.75
    assert metrics.strict_micro_accuracy(records) == 0.5
    assert metrics.category_accuracy(records) == {"a": 2 / 3, "b": 1.0}
    assert math.isclose(metrics.macro_accuracy(records), (2 / 3 + 1) / 2)
    assert math.isclose(metrics.strict_macro_accuracy(records), (1 / 3 + 1) / 2)
    assert metrics.seed_average_accuracy(records) == (0.5 + 1 + 1) / 3
    assert metrics.strict_seed_average_accuracy(records) == (0 + 1 + 1) / 3
    assert metrics.seed_worst_accuracy(records) == 2 / 3


def test_worst_case_counts_a_seed_only_when_every_variant_is_right():
    """DynaMath's worst case (the leaderboard's number) against its average case (the paper's)."""
    records = [{"seed": seed, "correct": hit} for seed, hits in (("1", [True] * 10), ("2", [True] * 9 + [False]))
               for hit in hits]
    assert metrics.seed_worst_accuracy(records) == 0.5
    assert metrics.seed_average_accuracy(records) == 0.95
