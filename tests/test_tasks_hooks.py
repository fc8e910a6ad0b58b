"""The task hooks as lmms-eval calls them, resolved from the task YAMLs: docs, prompts, images,
per-sample records, and the aggregations over hand-written right and wrong responses."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from mvlm_tasks.fixtures import FIXTURE_DIR
from mvlm_tasks.sources import DATA_ENV, PROBE_TASKS, REAL_TASKS
from mvlm_tasks.suite import metrics
from PIL import Image

SUITE = Path(__file__).resolve().parents[1] / "tasks" / "suite"
ALL_TASKS = [*REAL_TASKS, *PROBE_TASKS]
RECORD_FIELDS = {"id", "split", "category", "extracted", "correct", "rule", "flagged"}
FIXTURE_SIZES = {"mvlm_ocrbench": 6, "mvlm_mmstar_perception": 4, "mvlm_mathvista_general": 4,
                 "mvlm_mathvista_math": 4, "mvlm_mathvision": 6, "mvlm_mathverse": 10, "mvlm_dynamath": 30,
                 "mvlm_mmstar_reasoning": 8, "mvlm_probe_perception": 200, "mvlm_probe_reasoning": 200}
SPLIT_OF = {"mvlm_ocrbench": "perception", "mvlm_mmstar_perception": "perception",
            "mvlm_mathvista_general": "perception", "mvlm_probe_perception": "perception"}


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: _resolve(loader.construct_scalar(node)))


def _resolve(target: str) -> Callable:
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _config(task: str) -> dict[str, Any]:
    """A task's YAML with its include merged in, as lmms-eval merges it."""
    config = yaml.load((SUITE / f"{task}.yaml").read_text(), Loader=_Loader)
    base = yaml.load((SUITE / config.pop("include")).read_text(), Loader=_Loader)
    return {**base, **config}


def docs_of(task: str) -> datasets.Dataset:
    """A task's documents, in lmms-eval's order (process_docs applied to the YAML's data files)."""
    config = _config(task)
    path = SUITE / config["dataset_kwargs"]["data_files"]["test"]
    placeholder = datasets.Dataset.from_parquet(str(path))
    process_docs = config.get("process_docs")
    return process_docs(placeholder) if process_docs else placeholder


def is_choice(task: str, doc: dict) -> bool:
    """Whether the document is answered with an option letter."""
    if task.startswith("mvlm_mathvista"):
        return doc["question_type"] == "multi_choice"
    if task == "mvlm_mathvision":
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
    if task.startswith("mvlm_mathvista") and is_choice(task, doc):
        return chr(65 + doc["choices"].index(doc["answer"]))
    if task == "mvlm_ocrbench":
        return doc["answer"][0]
    return doc["ground_truth"] if task == "mvlm_dynamath" else doc["answer"]


def wrong_answer(task: str, doc: dict) -> str:
    """A plausible wrong answer: another letter, another number, or a wrong word."""
    gold = right_answer(task, doc)
    if is_choice(task, doc):
        return "B" if gold == "A" else "A"
    try:
        return str(float(gold) + 1)
    except ValueError:
        return "ZEBRA"


def response_with(answer: str) -> str:
    """A chain-of-thought style response ending in `answer`."""
    return f"Looking at the image step by step.\nSo the final answer is \\boxed{{{answer}}}."


@pytest.fixture(autouse=True)
def fixture_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(FIXTURE_DIR))


def _records(task: str, right: Callable[[int, dict], bool]) -> list[dict[str, dict]]:
    config = _config(task)
    out = []
    for index, doc in enumerate(docs_of(task)):
        answer = right_answer(task, doc) if right(index, doc) else wrong_answer(task, doc)
        out.append(config["process_results"](doc, [response_with(answer)]))
    return out


def _aggregate(task: str, outputs: list[dict[str, dict]]) -> dict[str, Any]:
    metric_list = _config(task)["metric_list"]
    return {m["metric"]: m["aggregation"]([o[m["metric"]] for o in outputs]) for m in metric_list}


def test_process_docs_select_each_split():
    assert {task: len(docs_of(task)) for task in ALL_TASKS} == FIXTURE_SIZES
    assert {m["category"] for m in docs_of("mvlm_mathvista_general")["metadata"]} == {"general-vqa"}
    assert set(docs_of("mvlm_mmstar_reasoning")["category"]) == {
        "instance reasoning", "logical reasoning", "math", "science & technology"}


def test_dynamath_docs_hold_every_variant_seed_by_seed():
    dynamath = docs_of("mvlm_dynamath")
    assert dynamath["id"] == ["1"] * 10 + ["2"] * 10 + ["3"] * 10
    assert dynamath["variant"] == list(range(1, 11)) * 3


@pytest.mark.parametrize("task", ALL_TASKS)
def test_prompts_and_images(task: str):
    config = _config(task)
    doc = docs_of(task)[0]
    visuals = config["doc_to_visual"](doc)
    assert len(visuals) == 1 and isinstance(visuals[0], Image.Image) and visuals[0].mode == "RGB"
    text = config["doc_to_text"](doc)
    assert "<image" not in text
    if task.startswith("mvlm_probe") or task == "mvlm_ocrbench":
        assert text.endswith(("only.", "integer.", "phrase.")) and "boxed" not in text
    else:
        assert text.endswith("in \\boxed{}.") and "step by step" in text


def test_choice_prompts_list_the_options():
    mathvista = next(d for d in docs_of("mvlm_mathvista_math") if d["question_type"] == "multi_choice")
    assert "\n(A) 3\n(B) 4\n(C) 5\n(D) 6\n" in _config("mvlm_mathvista_math")["doc_to_text"](mathvista)
    mathvision = docs_of("mvlm_mathvision")[0]
    text = _config("mvlm_mathvision")["doc_to_text"](mathvision)
    assert text.startswith("How many squares are there?\n(A) 1\n")
    vision_only = next(d for d in docs_of("mvlm_mathverse") if d["problem_version"] == "Vision Only")
    text = _config("mvlm_mathverse")["doc_to_text"](vision_only)
    assert text.startswith("Answer the question shown in the image.\n")


def test_generation_settings_leave_room_for_chain_of_thought():
    for task in ALL_TASKS:
        kwargs = _config(task)["generation_kwargs"]
        assert kwargs["until"] == [] and kwargs["do_sample"] is False and kwargs["temperature"] == 0
        assert kwargs["max_new_tokens"] == (32 if task in PROBE_TASKS else 1024)


@pytest.mark.parametrize("task", ALL_TASKS)
def test_right_and_wrong_responses_are_scored_into_records(task: str):
    declared = [m["metric"] for m in _config(task)["metric_list"]]
    right = _records(task, lambda index, doc: True)
    wrong = _records(task, lambda index, doc: False)
    for output in right + wrong:
        assert sorted(output) == sorted(declared)
        sample = output["mvlm_acc"]
        assert RECORD_FIELDS <= set(sample) and sample["split"] == SPLIT_OF.get(task, "reasoning")
        assert all(output[name] is sample for name in declared)
    assert all(o["mvlm_acc"]["correct"] and o["mvlm_acc"]["extracted"] is not None for o in right)
    assert not any(o["mvlm_acc"]["correct"] for o in wrong)


def test_mathvista_math_reports_micro_primary_and_macro_over_tasks():
    outputs = _records("mvlm_mathvista_math", lambda index, doc: doc["pid"] == "5")
    scores = _aggregate("mvlm_mathvista_math", outputs)
    assert scores["mvlm_acc"] == scores["mvlm_micro_acc"] == 0.25
    assert scores["mvlm_by_category"] == {"figure question answering": 0.5, "geometry problem solving": 0.0,
                                          "math word problem": 0.0}
    assert math.isclose(scores["mvlm_macro_acc"], 0.5 / 3)


def test_mmstar_primary_score_is_the_macro_mean_over_capabilities():
    outputs = _records("mvlm_mmstar_perception", lambda i, doc: doc["index"] in (0, 1, 2))
    scores = _aggregate("mvlm_mmstar_perception", outputs)
    assert scores["mvlm_by_category"] == {"coarse perception": 1.0, "fine-grained perception": 0.5}
    assert scores["mvlm_acc"] == scores["mvlm_macro_acc"] == 0.75 == scores["mvlm_micro_acc"]
    assert outputs[2]["mvlm_acc"]["subcategory"] == "object counting"


def test_dynamath_reports_average_and_worst_case_over_seeds():
    def right(index: int, doc: dict) -> bool:
        return doc["id"] == "1" or (doc["id"] == "2" and doc["variant"] <= 5)

    outputs = _records("mvlm_dynamath", right)
    scores = _aggregate("mvlm_dynamath", outputs)
    assert scores["mvlm_acc"] == 0.5 and scores["mvlm_micro_acc"] == 0.5
    assert math.isclose(scores["mvlm_worst_acc"], 1 / 3)
    assert scores["mvlm_by_category"] == {"Analytic Geometry": 1.0, "Arithmetic": 0.0, "Statistics": 0.5}
    assert outputs[12]["mvlm_acc"] == {
        "id": "2-v3", "split": "reasoning", "category": "Statistics", "extracted": "B", "correct": True,
        "rule": "boxed", "flagged": False, "seed": "2", "variant": 3}


def test_aggregations_on_hand_written_records():
    records = [
        {"category": "a", "seed": "1", "correct": True},
        {"category": "a", "seed": "1", "correct": False},
        {"category": "a", "seed": "2", "correct": True},
        {"category": "b", "seed": "3", "correct": True},
    ]
    assert metrics.micro_accuracy(records) == 0.75
    assert metrics.category_accuracy(records) == {"a": 2 / 3, "b": 1.0}
    assert math.isclose(metrics.macro_accuracy(records), (2 / 3 + 1) / 2)
    assert metrics.seed_average_accuracy(records) == (0.5 + 1 + 1) / 3
    assert metrics.seed_worst_accuracy(records) == 2 / 3
