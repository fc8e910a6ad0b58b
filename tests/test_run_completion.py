"""Only finished evaluations are recorded: a results file without its sample logs and without a completion
marker (an interrupted run) is refused by name, a sweep's `.partial-*` folders are skipped, and a failed
run's files are removed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness_ext.results import completion

RUN = Path(__file__).resolve().parent / "results_data" / "lm_eval" / "tinymerge"


def _results(folder: Path) -> Path:
    return next(folder.glob("results_*.json"))


def test_ingest_refuses_a_results_file_without_sample_logs_or_marker(run_cli, tmp_path) -> None:
    interrupted = tmp_path / "out" / "model"
    interrupted.mkdir(parents=True)
    shutil.copy(_results(RUN), interrupted)  # killed after results.json, before the sample logs
    code, _, err = run_cli("track", "ingest", tmp_path / "out", "--store", tmp_path / "store")
    assert code == 2 and _results(interrupted).name in err and "interrupted" in err, err
    assert not (tmp_path / "store" / "runs").exists() or not list((tmp_path / "store" / "runs").iterdir())


def test_a_finished_run_without_sample_logs_is_recorded(run_cli, tmp_path) -> None:
    finished = tmp_path / "out"
    finished.mkdir()
    shutil.copy(_results(RUN), finished)
    completion.mark_complete(_results(finished))
    code, out, err = run_cli("track", "ingest", finished, "--store", tmp_path / "store")
    assert code == 0 and "recorded:" in out, err


def test_ingest_skips_a_sweeps_partial_folders(run_cli, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(RUN, sweep / "tiny-merge-done")
    partial = sweep / ".partial-0123abcd" / "tiny-merge"
    shutil.copytree(RUN, partial)
    results = _results(partial)
    data = json.loads(results.read_text())
    data["date"] = data["date"] + 1  # another run, half written
    results.write_text(json.dumps(data))
    code, out, err = run_cli("track", "ingest", sweep, "--store", tmp_path / "store")
    assert code == 0, err
    assert out.count("recorded:") == 1 and ".partial-" not in out
    assert len(list((tmp_path / "store" / "runs").glob("*.json"))) == 1


def test_a_failed_run_leaves_nothing_and_a_finished_one_is_marked(tmp_path) -> None:
    out = tmp_path / "out"
    earlier = out / "model" / "20260101_results.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("{}")
    before = completion.results_files(out)
    failed = out / "other-model" / "20260102_results.json"
    failed.parent.mkdir()
    failed.write_text("{}")
    (failed.parent / "20260102_samples_mvlm_probe.jsonl").write_text("{}\n")
    completion.remove_unfinished(out, before, existed=True)
    assert not failed.parent.exists() and earlier.exists()
    finished = out / "model" / "20260103_results.json"
    finished.write_text("{}")
    completion.mark_finished(out, before)
    assert completion.marker(finished).exists() and not completion.marker(earlier).exists()
    fresh = tmp_path / "fresh"
    (fresh / "m").mkdir(parents=True)
    (fresh / "m" / "x_results.json").write_text("{}")
    completion.remove_unfinished(fresh, set(), existed=False)
    assert not fresh.exists()


def _fake_lmms_eval(monkeypatch, fail: bool) -> None:
    """lmms-eval writing its results file and then (fail) hitting a full disk before the sample logs."""
    from lmms_eval import __main__ as lmms_main

    def cli_evaluate_single(args):
        folder = Path(args.output_path) / "tiny-world-0123"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "20261206_000000_results.json").write_text("{}")
        if fail:
            raise OSError(28, "No space left on device")
        (folder / "20261206_000000_samples_mvlm_probe_reasoning.jsonl").write_text("{}\n")

    monkeypatch.setattr(lmms_main, "cli_evaluate_single", cli_evaluate_single)
    monkeypatch.setattr(lmms_main, "cli_evaluate", lambda args: lmms_main.cli_evaluate_single(args))


def test_the_alias_removes_the_output_of_a_run_that_fails_after_its_results_file(monkeypatch, tmp_path) -> None:
    from harness_ext import lmms_eval_cli

    _fake_lmms_eval(monkeypatch, fail=True)
    out = tmp_path / "out"
    argv = ["--model", "merged_vlm", "--tasks", "mvlm_probe_reasoning", "--output_path", str(out)]
    with pytest.raises(SystemExit) as exited:
        lmms_eval_cli._evaluate(argv)
    assert exited.value.code == 1 and not out.exists()


def test_the_alias_marks_a_finished_run(monkeypatch, tmp_path) -> None:
    from harness_ext import lmms_eval_cli

    _fake_lmms_eval(monkeypatch, fail=False)
    out = tmp_path / "out"
    lmms_eval_cli._evaluate(["--model", "merged_vlm", "--tasks", "mvlm_probe_reasoning", "--output_path", str(out)])
    assert completion.marker(out / "tiny-world-0123" / "20261206_000000_results.json").exists()
