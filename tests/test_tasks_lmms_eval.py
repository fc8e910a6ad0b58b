"""The task suite under the real lmms-eval CLI (`python -m lmms_eval`), offline, on CPU.

Four runs start together at the first test that needs one (each pays ~10-20 s of imports):
- "tiny": every task and group (official prompts and _cot variants) on the fixtures with a tiny
  random Qwen2-VL, built-in simple backend `qwen2_vl` (doc_to_visual + doc_to_text);
- "chat": two tasks with a tiny Qwen2.5-VL through the built-in chat backend `qwen2_5_vl`
  (messages built by lmms-eval from doc_to_visual + doc_to_text);
- "scripted": every task and group with the built-in `from_log` backend replaying hand-written
  responses, right for some documents and wrong for the others, so scores are not all zero;
- "no_data": a real task with neither MERGED_VLM_DATA nor a reachable Hub.
Scores are recomputed here from the per-sample records of the samples files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
from mvlm_tasks.fixtures import FIXTURE_DIR
from mvlm_tasks.sources import DATA_ENV, GROUPS, PROBE_TASKS, REAL_TASKS, leaf_tasks
from test_tasks_hooks import FIXTURE_SIZES, docs_of, prompt_of, response_with, right_answer, wrong_answer

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"
ALL_TASKS = [*REAL_TASKS, *PROBE_TASKS]
LIMIT = 20  # scripted run: two whole DynaMath seeds
TINY_LIMIT = 8  # tiny-model run: enough documents per task to cover the plumbing
RECORD_FIELDS = {"id", "split", "category", "extracted", "correct", "rule", "flagged", "verdicts"}
EVERYTHING = "mvlm_all,mvlm_all_cot,mvlm_probe,mvlm_mathvision_test,mvlm_mathvision_test_cot"
UNGROUPED = {"mvlm_mathvision_test", "mvlm_mathvision_test_cot"}


def scripted_right(doc_id: int) -> bool:
    """Which documents the scripted run answers correctly."""
    return doc_id % 3 != 1


@dataclass
class Run:
    """One lmms-eval invocation, started in the background."""

    out: Path
    process: subprocess.Popen
    log: Path
    results: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[dict]] = field(default_factory=dict)
    output: str = ""

    def wait(self) -> Run:
        """Wait for the run to end, then read its log, results and samples (once)."""
        if self.process.returncode is None:
            self.process.wait(timeout=600)
            self.output = self.log.read_text(errors="replace")
            found = sorted(self.out.rglob("*_results.json"))
            if found:
                self.results = json.loads(found[-1].read_text())
                for path in self.out.rglob("*_samples_*.jsonl"):
                    task = path.stem.split("_samples_", 1)[1]
                    self.samples[task] = [json.loads(line) for line in path.read_text().splitlines()]
        return self


def _start(root: Path, name: str, model: str, model_args: str, tasks: str, data: Path | None,
           *extra: str) -> Run:
    out = root / name
    out.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(out / "hf"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(DATA_ENV, None)
    if data is not None:
        env[DATA_ENV] = str(data)
    command = [sys.executable, "-m", "lmms_eval", "--model", model, "--model_args", model_args,
               "--tasks", tasks, "--include_path", str(TASKS_DIR), "--output_path", str(out / "results"),
               "--log_samples", *extra]
    log = out / "lmms_eval.log"
    with log.open("w") as sink:
        process = subprocess.Popen(command, cwd=out, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return Run(out / "results", process, log)


def _write_scripted_logs(folder: Path) -> None:
    """from_log input: per task, the responses to its first LIMIT documents."""
    folder.mkdir()
    for task in ALL_TASKS:
        docs, logs = docs_of(task), []
        for doc_id, doc in enumerate(docs.select(range(min(LIMIT, len(docs))))):
            answer = right_answer(task, doc) if scripted_right(doc_id) else wrong_answer(task, doc)
            logs.append({"doc_id": doc_id, "resps": [[response_with(task, answer)]]})
        payload = {"args": {"model": "scripted", "model_args": "", "limit": None},
                   "model_configs": {"task": task}, "time": "0101_0000", "logs": logs}
        (folder / f"{task}.json").write_text(json.dumps(payload))


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_family) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("lmms_eval")
    everything = EVERYTHING
    cpu = "device=cpu,device_map=cpu"
    logs = root / "scripted_logs"
    _write_scripted_logs(logs)
    started = {
        "tiny": _start(root, "tiny", "qwen2_vl", f"pretrained={tiny_family('qwen2_vl').vlm},{cpu}",
                       everything, FIXTURE_DIR, "--limit", str(TINY_LIMIT),
                       "--gen_kwargs", "max_new_tokens=4"),
        "scripted": _start(root, "scripted", "from_log", f"logs={logs}", everything, FIXTURE_DIR,
                           "--limit", str(LIMIT)),
        "no_data": _start(root, "no_data", "from_log", f"logs={logs}", "mvlm_mathvision", None),
        "chat": _start(root, "chat", "qwen2_5_vl", f"pretrained={tiny_family('qwen2_5_vl').vlm},{cpu}",
                       "mvlm_probe_reasoning,mvlm_mathverse", FIXTURE_DIR, "--limit", "2", "--gen_kwargs",
                       "max_new_tokens=4"),
    }
    yield started
    for run in started.values():
        if run.process.poll() is None:
            run.process.kill()


def _primary(task: str, records: list[dict], protocol: str) -> float:
    """The task's primary score under a protocol, recomputed from the records' verdicts."""
    groups: dict[Any, list[bool]] = defaultdict(list)
    key = "seed" if task.startswith("mvlm_dynamath") else "category" if task.startswith("mvlm_mmstar") else None
    for r in records:
        groups[r[key] if key else None].append(r["verdicts"][protocol]["correct"])
    return fmean(fmean(hits) for hits in groups.values())


def _recompute(task: str, records: list[dict]) -> dict[str, Any]:
    """The task's scores, recomputed from its per-sample records."""
    hits = [r["correct"] for r in records]
    by_category: dict[str, list[bool]] = defaultdict(list)
    by_seed: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        by_category[r["category"]].append(r["correct"])
        by_seed[r.get("seed")].append(r["correct"])
    scores = {"mvlm_micro_acc": fmean(hits),
              "mvlm_by_category": {c: fmean(h) for c, h in by_category.items()},
              "mvlm_macro_acc": fmean(fmean(h) for h in by_category.values()),
              "mvlm_acc": _primary(task, records, "official"),
              "mvlm_strict_acc": _primary(task, records, "strict")}
    if task.startswith("mvlm_dynamath"):
        scores["mvlm_worst_acc"] = fmean(all(h) for h in by_seed.values())
    return scores


def _check_scores_follow_the_samples(run: Run) -> dict[str, float]:
    """Every task's and group's scores equal what the samples imply; returns the tasks' primary scores."""
    primary = {}
    for task in ALL_TASKS:
        records = [sample["mvlm_acc"] for sample in run.samples[task]]
        assert all(RECORD_FIELDS <= set(r) for r in records), task
        reported = run.results["results"][task]
        for metric, value in _recompute(task, records).items():
            assert reported[f"{metric},none"] == pytest.approx(value), (task, metric)
        primary[task] = reported["mvlm_acc,none"]
    for group in GROUPS:
        expected = fmean(primary[task] for task in leaf_tasks(group))
        assert run.results["results"][group]["mvlm_acc,none"] == pytest.approx(expected), group
    return primary


def _logged_prompts_match_the_hooks(run: Run) -> None:
    """lmms-eval built each document's prompt with the task's own prompt style."""
    for task in ("mvlm_mathvista_general", "mvlm_mathvista_general_cot", "mvlm_dynamath", "mvlm_ocrbench"):
        sample = run.samples[task][0]
        doc = docs_of(task)[sample["doc_id"]]
        assert sample["input"] == prompt_of(task, doc), task


def test_tiny_model_runs_every_task_and_group(runs: dict[str, Run]):
    run = runs["tiny"].wait()
    assert run.results, run.output[-3000:]
    assert set(run.results["group_subtasks"]) == set(GROUPS) | UNGROUPED
    _logged_prompts_match_the_hooks(run)
    for task in ALL_TASKS:
        samples = run.samples[task]
        assert len(samples) == min(TINY_LIMIT, FIXTURE_SIZES[task]), task
        assert all(isinstance(s["filtered_resps"], str) for s in samples)
    _check_scores_follow_the_samples(run)


def test_tiny_model_records_carry_split_category_answer_and_verdict(runs: dict[str, Run]):
    run = runs["tiny"].wait()
    dynamath = [s["mvlm_acc"] for s in run.samples["mvlm_dynamath"]]
    assert [(r["seed"], r["variant"]) for r in dynamath] == [("1", v) for v in range(1, TINY_LIMIT + 1)]
    assert {r["split"] for s in ("mvlm_mathvista_general", "mvlm_ocrbench") for r in
            (x["mvlm_acc"] for x in run.samples[s])} == {"perception"}
    assert {x["mvlm_acc"]["category"] for x in run.samples["mvlm_mathverse"]} == {
        "Text Dominant", "Text Lite", "Vision Intensive", "Vision Dominant", "Vision Only"}
    for task in ALL_TASKS:
        first = run.samples[task][0]
        assert set(first) >= {"doc_id", "target", "filtered_resps", "mvlm_acc", "mvlm_by_category"}


def test_scripted_responses_are_scored_and_aggregated(runs: dict[str, Run]):
    run = runs["scripted"].wait()
    assert run.results, run.output[-3000:]
    for task in ALL_TASKS:
        for sample in run.samples[task]:
            verdicts = sample["mvlm_acc"]["verdicts"]
            assert verdicts["strict"]["correct"] == scripted_right(sample["doc_id"]), (task, sample["doc_id"])
            if not task.endswith("_cot"):  # official-format responses: right under both protocols
                assert verdicts["official"]["correct"] == scripted_right(sample["doc_id"]), (task, sample["doc_id"])
    primary = _check_scores_follow_the_samples(run)
    assert primary["mvlm_ocrbench"] == pytest.approx(4 / 6)
    assert run.results["results"]["mvlm_dynamath"]["mvlm_worst_acc,none"] == 0.0
    assert 0.5 < run.results["results"]["mvlm_all"]["mvlm_acc,none"] < 0.8
    # \\boxed{} answers after reasoning: MMStar's official rule (the letter first) reads none of them
    mmstar = run.results["results"]["mvlm_mmstar_reasoning_cot"]
    assert mmstar["mvlm_acc,none"] == 0.0 and mmstar["mvlm_strict_acc,none"] > 0.5


def test_chat_backend_gets_messages_from_the_tasks(runs: dict[str, Run]):
    run = runs["chat"].wait()
    assert run.results, run.output[-3000:]
    assert run.results["config"]["model_backend"].endswith("(chat)")
    for task in ("mvlm_probe_reasoning", "mvlm_mathverse"):
        assert len(run.samples[task]) == 2
        assert RECORD_FIELDS <= set(run.samples[task][0]["mvlm_acc"])


def test_no_data_and_no_network_fails_with_the_prepare_command(runs: dict[str, Run]):
    run = runs["no_data"].wait()
    assert not run.results
    error = "mvlm_tasks.sources.errors.DataError: "
    lines = [line for line in run.output.splitlines() if line.startswith(error)]
    assert lines, run.output[-3000:]
    assert "run `merged-vlm data prepare --out DIR --tasks mvlm_mathvision`" in lines[0]
