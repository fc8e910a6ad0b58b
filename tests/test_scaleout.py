"""Sweeps and layer analyses on Ray workers (harness_ext/scaleout.py): the same numbers as in one process, a
killed worker's variant retried elsewhere and recorded once, an interrupted driver resumed on another worker
count, and a one-line refusal when a worker cannot see a shared folder. One loopback Ray runtime per module."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

import psutil
import pytest

from harness_ext.cli.analysis import _ingester
from harness_ext.layers import SplitEvaluator, knockout_analysis, knockout_analysis_scaled
from harness_ext.results.record import RunRecord
from harness_ext.scaleout import ScaleOut, ScaleOutError, pool
from harness_ext.sweep import SweepFailed, SweepResult, run_sweep
from merge_models.recipe import parse_recipe

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[1]
TASK = "mvlm_probe_reasoning"


@pytest.fixture(scope="module")
def ray_runtime():
    """Two CPUs on loopback, shared by this module's tests; shut down after them."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _recipe(family) -> dict:
    return {"name": "tiny-ta", "vlm": {"model": str(family.vlm), "weight": 1.0}, "base": str(family.base),
            "sources": [{"model": str(family.reasoning), "weight": 0.5}], "method": "task_arithmetic"}


def _outcome(result: SweepResult) -> tuple:
    """What must not depend on where a variant ran: its hash, scores and every document's verdict and answer."""
    tasks = result.record.tasks
    return (result.recipe_hash, [(s.name, s.kind, s.score, s.n) for s in result.scores],
            {name: (task.score, [(s.doc_id, s.correct, s.value, s.extracted, s.response) for s in task.samples])
             for name, task in tasks.items()})


def _variant_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _recorder(into: list[RunRecord]):
    return into.append


def test_sweep_on_two_workers_writes_the_single_process_numbers(tiny_family, write_recipe, tmp_path, ray_runtime):
    recipe = write_recipe(_recipe(tiny_family("qwen2_vl")))
    grid = {"lambda": [0.2, 0.4, 0.6, 0.8]}
    alone = run_sweep(recipe, grid, [TASK], tmp_path / "one", limit=2, log=lambda _: None)
    recorded: list[RunRecord] = []
    spread = run_sweep(recipe, grid, [TASK], tmp_path / "two", limit=2, on_done=_recorder(recorded),
                       log=lambda _: None, scale=ScaleOut(workers=2), quiet=True)
    assert [r.overrides for r in spread] == [r.overrides for r in alone], "results come back in grid order"
    assert [_outcome(r) for r in spread] == [_outcome(r) for r in alone]
    assert len(_variant_folders(tmp_path / "two")) == 4 and len(recorded) == 4


class Killer(threading.Thread):
    """SIGKILLs the first `times` Ray worker processes seen running a job (their title is `ray::Worker.run`):
    mid-variant by construction."""

    def __init__(self, times: int) -> None:
        super().__init__(daemon=True)
        self.times, self.killed, self.stop = times, 0, threading.Event()

    def run(self) -> None:
        while self.killed < self.times and not self.stop.wait(0.05):
            for process in psutil.Process().children(recursive=True):
                try:
                    if process.cmdline()[:1] == ["ray::Worker.run"]:
                        process.send_signal(signal.SIGKILL)
                        self.killed += 1
                        break
                except psutil.Error:
                    continue

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join()


def test_a_worker_killed_mid_variant_is_retried_on_the_other_and_recorded_once(tiny_family, write_recipe, tmp_path,
                                                                              ray_runtime):
    recipe = write_recipe(_recipe(tiny_family("qwen2_vl")))
    lines: list[str] = []
    recorded: list[RunRecord] = []
    with Killer(times=1) as killer:
        results = run_sweep(recipe, {"lambda": [0.3, 0.7]}, [TASK], tmp_path / "sweep", limit=1,
                            on_done=_recorder(recorded), log=lines.append, scale=ScaleOut(workers=2), quiet=True)
    assert killer.killed == 1
    died = [line for line in lines if " died (" in line]
    assert len(died) == 1, lines
    victim, worker = died[0].split(": worker ")[0], died[0].split(": worker ")[1].split()[0]
    other = "1" if worker == "2" else "2"
    assert lines.index(f"{victim}: on worker {other}") > lines.index(died[0]), "the retry runs on the other worker"
    assert len(results) == 2 and len(_variant_folders(tmp_path / "sweep")) == 2
    assert sorted(r.variant.name for r in recorded) == sorted({r.variant.name for r in recorded}), \
        "each variant is recorded once"
    assert len(recorded) == 2


def test_a_variant_whose_worker_dies_twice_fails_and_the_rest_finish(tiny_family, write_recipe, tmp_path,
                                                                    ray_runtime):
    recipe = write_recipe(_recipe(tiny_family("qwen2_vl")))
    lines: list[str] = []
    with Killer(times=2), pytest.raises(SweepFailed) as failed:
        run_sweep(recipe, {"lambda": [0.3, 0.7]}, [TASK], tmp_path / "sweep", limit=1, log=lines.append,
                  scale=ScaleOut(workers=1), quiet=True)
    assert failed.value.exit_code == 1 and "\n" not in str(failed.value)
    assert "lambda=0.3 (worker died twice" in str(failed.value), "the first variant is the one killed twice"
    assert [r.overrides for r in failed.value.results] == [{"lambda": 0.7}], (str(failed.value), lines)
    assert [p.name.split("@")[1].split("-")[0] for p in _variant_folders(tmp_path / "sweep")] == ["lambda=0.7"]


def test_an_interrupted_sweep_resumes_on_another_worker_count(tiny_family, write_recipe, tmp_path, ray_runtime,
                                                              monkeypatch):
    recipe = write_recipe(_recipe(tiny_family("qwen2_vl")))
    out, store = tmp_path / "sweep", tmp_path / "results"
    # six variants of two documents each, so the interrupt lands while some are still to run however fast
    # the first ones finish (with four short ones, a loaded machine let the sweep end before it landed)
    grid, lambdas = "lambda=0.2:1.2:0.2", [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", MERGED_VLM_RESULTS=str(store))
    command = [sys.executable, "-m", "harness_ext.cli", "sweep", str(recipe), "--grid", grid, "--tasks", TASK,
               "--limit", "2", "--out", str(out), "--workers", "2", "--quiet"]
    # Ctrl-C as in a terminal: a suite started in the background (`.ci/run &`) ignores SIGINT, and its children
    # would inherit that and finish the sweep untouched
    driver = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline, started = time.time() + 600, set()
    while not (out.is_dir() and _variant_folders(out)):
        assert driver.poll() is None and time.time() < deadline, driver.communicate()[0][-3000:]
        started |= {p.pid for p in psutil.Process(driver.pid).children(recursive=True)}
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=120) != 0
    finished = _variant_folders(out)
    assert 1 <= len(finished) < len(lambdas)
    _, alive = psutil.wait_procs([psutil.Process(p) for p in started if psutil.pid_exists(p)], timeout=60)
    assert not alive, f"the driver's Ray processes outlive it: {[p.cmdline()[:2] for p in alive]}"

    lines: list[str] = []
    monkeypatch.setenv("MERGED_VLM_RESULTS", str(store))
    results = run_sweep(recipe, {"lambda": lambdas}, [TASK], out, limit=2, on_done=_ingester(False),
                        log=lines.append, scale=ScaleOut(workers=1), quiet=True)
    assert sum("already done" in line for line in lines) == len(finished), "finished variants are not re-run"
    assert sum(line.endswith(": on worker 1") for line in lines) == len(lambdas) - len(finished)
    assert len(results) == len(lambdas) and len(_variant_folders(out)) == len(lambdas)
    assert len(list((store / "local/runs").glob("*.json"))) == len(lambdas), "every variant recorded once"


def test_layers_on_two_workers_give_the_single_process_knockouts(tiny_family, ray_runtime):
    recipe = parse_recipe(_recipe(tiny_family("qwen2_vl")))
    evaluate = SplitEvaluator([TASK], limit=1)
    alone = knockout_analysis(recipe, evaluate, ["attn"], "zero-delta", log=lambda _: None)
    spread = knockout_analysis_scaled(recipe, evaluate, ["attn"], "zero-delta", ScaleOut(workers=2),
                                      log=lambda _: None, quiet=True)
    assert spread.as_dict() == alone.as_dict()


def test_a_worker_that_cannot_see_the_sweep_folder_refuses_at_start(tiny_family, tmp_path, ray_runtime):
    recipe = parse_recipe(_recipe(tiny_family("qwen2_vl")))
    missing = str(tmp_path / "elsewhere")
    with pytest.raises(ScaleOutError) as refused, pool(ScaleOut(workers=1), recipe, {"sweep folder": missing},
                                                       log=lambda _: None):
        pytest.fail("no worker starts")
    message = str(refused.value)
    assert "\n" not in message and f"cannot see the sweep folder {missing}" in message, message
    assert "storage every node sees" in message
    deadline = time.time() + 60
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.time() < deadline, "a refused start leaves no worker holding its CPU"
        time.sleep(0.2)


def test_worker_resources_without_workers_are_refused(run_cli, tmp_path):
    code, _, err = run_cli("sweep", "tiny-world", "--grid", "lambda=0.5", "--cpus-per-worker", "2",
                             "--out", tmp_path / "sweep")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--workers N" in err, err
    assert not (tmp_path / "sweep").exists(), "nothing is written"
