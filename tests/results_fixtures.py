"""Real evaluation outputs for the results-layer tests (tests/test_results_*.py), made once per session.

Three lmms-eval runs start together at the first test that needs them (each pays ~15 s of imports):
- "merged": `--model merged_vlm` on a tiny random Qwen2-VL family (linear, VLM 0.9, reasoning LLM 0.1),
  mvlm_probe, 6 documents per task (random weights: answers are wrong);
- "scripted": lmms-eval's `from_log` backend replaying answers right where doc_id % 3 != 1, with
  `--limit 20` (13 of 20);
- "scripted_full": the same backend and logs on all 200 documents of each task (133 of 200), a
  complete run of the same variant.
Derived from them by editing the per-sample logs and recomputing the scores with the suite's own
aggregations (`doctor`):
- "wrong": the scripted run with wrong answers injected where doc_id % 3 == 0 (6 of 20 right), as a
  run of another from_log variant;
- "doctored": the merged run with verdicts set by `doctored_right` and lambda 0.5 (another recipe hash),
  so a merged variant has non-trivial scores;
- "scripted_6": the scripted run cut to its first 6 documents (`--limit 6`, 4 of 6), a later run of the
  same variant on the documents the merged runs answered.
"lm_eval": an lm-eval 0.4.13 `--model merged_lm` output captured from a real run (tests/results_data).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import fmean

import pyarrow.parquet as pq
import pytest
import yaml
from tiny_checkpoints import linear_recipe

ROOT = Path(__file__).resolve().parents[1]
PROBE = {"mvlm_probe_perception": ROOT / "tasks/probe/perception.parquet",
         "mvlm_probe_reasoning": ROOT / "tasks/probe/reasoning.parquet"}
LM_EVAL_OUTPUT = Path(__file__).resolve().parent / "results_data" / "lm_eval"
SCRIPTED_LIMIT, MERGED_LIMIT = 20, 6
DOCTORED_HASH = "d0c7012ed0c7012e"
SAMPLE_METRICS = ("mvlm_acc", "mvlm_micro_acc", "mvlm_macro_acc", "mvlm_by_category")  # each sample's records


def scripted_right(doc_id: int) -> bool:
    return doc_id % 3 != 1


def wrong_right(doc_id: int) -> bool:
    return scripted_right(doc_id) and doc_id % 3 != 0


def doctored_right(task: str, doc_id: int) -> bool:
    """Perception: the first 3 of 6 right (50%); reasoning: all but the first (5 of 6)."""
    return doc_id < 3 if task.endswith("perception") else doc_id != 0


def _write_logs(folder: Path, right: Callable[[int], bool]) -> Path:
    """from_log input: per probe task, an answer to every document (right or a wrong word)."""
    folder.mkdir()
    for task, parquet in PROBE.items():
        answers = pq.read_table(parquet, columns=["answer"]).column("answer").to_pylist()
        logs = [{"doc_id": i, "resps": [[answer if right(i) else "ZEBRA"]]} for i, answer in enumerate(answers)]
        payload = {"args": {"model": "scripted", "model_args": "", "limit": None},
                   "model_configs": {"task": task}, "time": "0101_0000", "logs": logs}
        (folder / f"{task}.json").write_text(json.dumps(payload))
    return folder


def _start(root: Path, name: str, model: str, model_args: str, limit: int | None, *extra: str) -> subprocess.Popen:
    out = root / name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(root / "hf"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MERGED_VLM_CACHE": str(root / "cache")}
    command = [sys.executable, "-m", "lmms_eval", "--model", model, "--model_args", model_args, "--tasks",
               "mvlm_probe", "--include_path", str(ROOT / "tasks"), "--output_path", str(out), "--log_samples",
               *(["--limit", str(limit)] if limit is not None else []), *extra]
    log = (root / f"{name}.log").open("w")
    return subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def edit_samples(folder: Path, edit: Callable[[str, dict], None],
                 limit: int | None = None) -> dict[str, list[dict]]:
    """Rewrite every per-sample log under `folder`: cut to its first `limit` samples, each edited in place by
    `edit(task, sample)`; returns the samples written, by task."""
    written = {}
    for samples_file in folder.rglob("*_samples_*.jsonl"):
        task = samples_file.stem.split("_samples_", 1)[1]
        lines = [json.loads(line) for line in samples_file.read_text().splitlines()][:limit]
        for line in lines:
            edit(task, line)
        samples_file.write_text("".join(json.dumps(line) + "\n" for line in lines))
        written[task] = lines
    return written


def doctor(source: Path, target: Path, right: Callable[[str, int], bool] | None, date: str,
           recipe_changes: dict | None = None, recipe_hash: str | None = None, model_args: str | None = None,
           limit: int | None = None) -> Path:
    """Copy a run's output with verdicts set by `right` (a wrong one answers ZEBRA, a right one the target;
    None keeps them), cut to its first `limit` documents, scores recomputed from them, and optionally another
    recipe or model arguments."""
    from mvlm_tasks.suite import metrics

    [results_file] = source.rglob("*_results.json")
    data = json.loads(results_file.read_text())
    folder = target / (f"{recipe_changes['name']}-{recipe_hash}" if recipe_changes else "")
    shutil.copytree(results_file.parent, folder)

    def set_verdict(task: str, line: dict) -> None:
        verdict = line["mvlm_acc"]["correct"] if right is None else right(task, line["doc_id"])
        if verdict != line["mvlm_acc"]["correct"]:
            line["filtered_resps"] = line["target"] if verdict else "ZEBRA"
        for metric in SAMPLE_METRICS:
            line[metric].update(correct=verdict, extracted=line["filtered_resps"])
            for protocol in line[metric].get("verdicts", {}).values():  # every protocol's, as scoring logs
                protocol.update(correct=verdict, extracted=line["filtered_resps"])

    for task, lines in edit_samples(folder, set_verdict, limit).items():
        records = [line["mvlm_acc"] for line in lines]
        data["results"][task].update({"mvlm_acc,none": metrics.micro_accuracy(records),
                                      "mvlm_micro_acc,none": metrics.micro_accuracy(records),
                                      "mvlm_macro_acc,none": metrics.macro_accuracy(records),
                                      "mvlm_by_category,none": metrics.category_accuracy(records)})
        if limit is not None:
            data["n-samples"][task]["effective"] = len(lines)
    if limit is not None:
        data["config"]["limit"] = limit
    data["results"]["mvlm_probe"]["mvlm_acc,none"] = fmean(data["results"][t]["mvlm_acc,none"] for t in PROBE)
    if recipe_changes:
        data["merged_vlm"]["recipe"].update(recipe_changes)
        data["merged_vlm"]["recipe_hash"] = recipe_hash
    if model_args:
        data["config"]["model_args"] = model_args
    data["date"] = date
    (folder / results_file.name).write_text(json.dumps(data, indent=2))
    return target


_made: dict[str, Path] = {}  # test modules each import the fixture; the runs are made once per session


@pytest.fixture(scope="session")
def outputs(tmp_path_factory: pytest.TempPathFactory, tiny_family) -> dict[str, Path]:
    """Output folders of the runs described in the module docstring, by name."""
    if _made:
        return _made
    root = tmp_path_factory.mktemp("results_runs")
    family = tiny_family("qwen2_vl")
    recipe = root / "tinymerge.yaml"
    recipe.write_text(yaml.safe_dump(linear_recipe(family.vlm, family.reasoning, name="tinymerge")))
    processes = {
        "merged": _start(root, "merged", "merged_vlm", f"recipe={recipe},quiet=true", MERGED_LIMIT,
                         "--gen_kwargs", "max_new_tokens=4"),
        "scripted": _start(root, "scripted", "from_log", f"logs={_write_logs(root / 'scripted_logs', scripted_right)}",
                           SCRIPTED_LIMIT),
        "scripted_full": _start(root, "scripted_full", "from_log", f"logs={root / 'scripted_logs'}", None),
    }
    try:
        for name, process in processes.items():
            assert process.wait(timeout=600) == 0, (root / f"{name}.log").read_text()[-3000:]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    _made.update({name: root / name for name in processes})
    _made["wrong"] = doctor(_made["scripted"], root / "wrong", lambda task, doc_id: wrong_right(doc_id),
                            "20260102_120000", model_args=f"logs={root / 'wrong_logs'}")
    _made["doctored"] = doctor(_made["merged"], root / "doctored", doctored_right, "20260101_120000",
                               {"name": "tinymerge-doctored", "lambda": 0.5}, DOCTORED_HASH)
    _made["scripted_6"] = doctor(_made["scripted"], root / "scripted_6", None, "20260103_120000", limit=MERGED_LIMIT)
    _made["lm_eval"] = LM_EVAL_OUTPUT
    return _made
