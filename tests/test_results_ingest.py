"""`merged-vlm track ingest`: real lmms-eval / lm-eval outputs to run records; the store's idempotence,
concurrency and refusal of damaged files; the index built from the record files."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
from results_fixtures import (
    DOCTORED_HASH,
    MERGED_LIMIT,
    PROBE,
    SCRIPTED_LIMIT,
    doctored_right,
    outputs,
    scripted_right,
)

from harness_ext.results import environment
from harness_ext.results.errors import ResultsError
from harness_ext.results.ingest import read_output
from harness_ext.results.record import load_record
from harness_ext.results.store import Store
from harness_ext.results.variants import merged_variant, model_variant

__all__ = ["outputs"]  # the session fixture, imported for pytest


def _samples_of(folder: Path) -> dict[str, list[dict]]:
    return {p.stem.split("_samples_", 1)[1]: [json.loads(line) for line in p.read_text().splitlines()]
            for p in folder.rglob("*_samples_*.jsonl")}


def test_merged_vlm_run_is_recorded_with_recipe_models_scores_and_verdicts(outputs):
    [record] = read_output(outputs["merged"])
    raw = json.loads(next(outputs["merged"].rglob("*_results.json")).read_text())
    merge = raw["merged_vlm"]
    assert record.harness.name == "lmms-eval" and record.harness.model == "merged_vlm"
    assert record.variant.id == record.variant.recipe_hash == merge["recipe_hash"]
    assert record.variant.recipe == merge["recipe"] and record.variant.kind == "merged"
    assert (record.variant.name, record.variant.method, record.variant.lambda_) == ("tinymerge", "linear", 1.0)
    assert (record.variant.weights, record.variant.layers, record.variant.baseline) == ("0.9 / 0.1", "all", False)
    assert [m.role for m in record.models] == ["vlm", "sources[0]"]
    assert record.models[0].identity == merge["inputs"]["vlm"]
    assert record.merge["load"] == merge["load"] and "recipe" not in record.merge
    assert record.wall_time_s == pytest.approx(float(raw["total_evaluation_time_seconds"]))
    assert record.date.endswith("+00:00")
    samples = _samples_of(outputs["merged"])
    for task in PROBE:
        result = record.tasks[task]
        assert (result.version, result.metric, result.aggregation) == ("1.0", "mvlm_acc", "micro")
        assert result.score == raw["results"][task]["mvlm_acc,none"]
        assert result.scores["mvlm_by_category"] == raw["results"][task]["mvlm_by_category,none"]
        assert (result.n, result.n_total) == (MERGED_LIMIT, 200)
        assert result.split == task.removeprefix("mvlm_probe_")
        assert result.split_scores == {result.split: result.score}
        assert [(s.doc_id, s.id, s.correct, s.target, s.response) for s in result.samples] == [
            (x["doc_id"], x["mvlm_acc"]["id"], x["mvlm_acc"]["correct"], x["target"], x["filtered_resps"])
            for x in samples[task]]
    assert record.groups["mvlm_probe"].tasks == list(PROBE)
    env = record.environment
    assert env == environment.Environment.model_validate(merge["environment"])
    assert env.versions_source == "run" and env.versions["transformers"] and env.versions["torch"]
    assert env.hardware.cpu_count and env.hardware.ram_gb


def test_builtin_backend_run_is_identified_by_backend_and_model_args(outputs):
    [scripted] = read_output(outputs["scripted"])
    [wrong] = read_output(outputs["wrong"])
    assert scripted.variant.kind == "model" and scripted.variant.name == "from_log:scripted_logs"
    assert scripted.variant.id != wrong.variant.id and scripted.variant.id.startswith("model-")
    assert scripted.merge is None and not scripted.variant.baseline
    for task in PROBE:
        assert scripted.tasks[task].score == pytest.approx(13 / 20)
        assert [s.correct for s in scripted.tasks[task].samples] == [scripted_right(i) for i in range(SCRIPTED_LIMIT)]
        assert wrong.tasks[task].score == pytest.approx(6 / 20)
    [marked] = read_output(outputs["scripted"], baseline=True)
    assert marked.variant.baseline and marked.variant.baseline_reason == "marked at ingest"
    assert marked.run_id == scripted.run_id  # the run's identity is its results, not how it was ingested


def test_lm_eval_run_is_recorded_with_its_own_environment_report(outputs):
    [record] = read_output(outputs["lm_eval"])
    assert record.harness.name == "lm-eval" and record.harness.model == "merged_lm"
    assert record.variant.kind == "merged" and record.variant.name == "tinymerge"
    assert set(record.tasks) == {"mvlm_text_probe_perception", "mvlm_text_probe_reasoning"}
    task = record.tasks["mvlm_text_probe_reasoning"]
    assert (task.split, task.aggregation, task.n, len(task.samples)) == ("reasoning", "micro", 5, 5)
    assert task.samples[0].id == "reasoning-2025-0000" and task.samples[0].category == "sum"
    assert task.samples[0].correct is False and task.samples[0].response
    env = record.environment
    assert env.versions_source == "run" and env.versions["lm_eval"] == "0.4.13"
    assert env.versions["torch"].startswith("2.14.1") and env.hardware.cpu == "AMD EPYC"
    assert record.date == "2026-11-22T22:04:23+00:00"


def test_doctored_scores_follow_the_verdicts(outputs):
    [record] = read_output(outputs["doctored"])
    assert record.variant.id == DOCTORED_HASH and record.variant.lambda_ == 0.5
    for task in PROBE:
        expected = [doctored_right(task, i) for i in range(MERGED_LIMIT)]
        assert [s.correct for s in record.tasks[task].samples] == expected
        assert record.tasks[task].score == pytest.approx(sum(expected) / MERGED_LIMIT)


def test_run_without_a_recorded_environment_is_captured_at_ingest(outputs, tmp_path):
    copy = shutil.copytree(outputs["merged"], tmp_path / "run")
    [results_file] = copy.rglob("*_results.json")
    data = json.loads(results_file.read_text())
    del data["merged_vlm"]["environment"]
    results_file.write_text(json.dumps(data))
    [record] = read_output(copy)
    assert record.environment.versions_source == record.environment.hardware_source == "ingest"
    assert record.environment.versions["torch"] and record.environment.hardware.cpu_count


def test_environment_recorded_by_the_run_is_kept(outputs, tmp_path):
    copy = shutil.copytree(outputs["merged"], tmp_path / "run")
    [results_file] = copy.rglob("*_results.json")
    data = json.loads(results_file.read_text())
    data["merged_vlm"]["environment"] = {**environment.capture(), "hardware": {"cpu": "Test CPU", "gpus": ["H100"]}}
    results_file.write_text(json.dumps(data))
    [record] = read_output(copy)
    assert record.environment.versions_source == record.environment.hardware_source == "run"
    assert record.environment.hardware.gpus == ["H100"]


def test_baseline_rules():
    recipe = {"name": "x", "method": "linear", "lambda": 1.0, "layers": None, "layer_swap": None, "modules": None,
              "vlm": {"model": "vlm", "revision": None, "weight": 0.9}, "base": None,
              "sources": [{"model": "llm", "revision": "abc", "weight": 0.1}]}
    merged = {"recipe_hash": "h" * 16, "recipe": recipe, "inputs": {}}
    assert not merged_variant(merged, False)[0].baseline
    assert merged_variant({**merged, "baseline": True}, False)[0].baseline_reason == "the recipe merges no tensor"
    zero = {**recipe, "vlm": {**recipe["vlm"], "weight": 1.0}, "sources": [{**recipe["sources"][0], "weight": 0.0}]}
    assert merged_variant({**merged, "recipe": zero, "baseline": False}, False)[0].baseline
    assert merged_variant(merged, True)[0].baseline_reason == "marked at ingest"
    swap = {**recipe, "method": "layer_swap", "layer_swap": {"keep_through": 5, "inner": "linear"}, "layers": [2, 9]}
    variant, models = merged_variant({**merged, "recipe": swap}, False)
    assert (variant.method, variant.layers) == ("layer_swap/linear", "2-9; keep 0-5")
    assert (models[1].model, models[1].revision) == ("llm", "abc")
    builtin, refs = model_variant("qwen2_vl", {"pretrained": "/m/vlm/", "device": "cpu", "revision": "r1"}, False)
    assert (builtin.name, builtin.vlm, refs[0].revision) == ("qwen2_vl:vlm", "/m/vlm/@r1", "r1")
    assert builtin.id == model_variant("qwen2_vl", {"pretrained": "/m/vlm/", "revision": "r1"}, False)[0].id


def test_ingest_writes_one_diffable_record_per_run_and_a_second_ingest_is_a_no_op(outputs, tmp_path, run_cli):
    store = tmp_path / "store"
    code, out, err = run_cli("track", "ingest", str(outputs["merged"]), "--store", store)
    assert code == 0, err
    [path] = (store / "runs").glob("*.json")
    assert out.startswith(f"recorded: {path}")
    text, stamp = path.read_text(), path.stat().st_mtime_ns
    record = load_record(path)
    assert path.name == record.file_name() and path.name.endswith(f"-tinymerge-{record.run_id}.json")
    sample_lines = [line for line in text.splitlines() if line.lstrip().startswith('{"doc_id"')]
    assert len(sample_lines) == 2 * MERGED_LIMIT  # one line per sample: diffs show changed verdicts
    code, out, _ = run_cli("track", "ingest", str(outputs["merged"]), "--store", store)
    assert code == 0 and out.startswith("already recorded:")
    assert list((store / "runs").glob("*.json")) == [path] and path.stat().st_mtime_ns == stamp
    assert (store / ".gitignore").read_text().startswith(".index.sqlite")


def _ingest(args: tuple[str, str, object]) -> list[bool]:
    folder, store, barrier = args
    barrier.wait()
    return [added.new for added in Store(Path(store)).add(read_output(Path(folder)))]


def test_concurrent_ingests_keep_every_run_once(outputs, tmp_path):
    store = tmp_path / "store"
    folders = [outputs[name] for name in ("merged", "scripted", "wrong", "doctored", "lm_eval")]
    jobs = folders + folders[:3]  # three runs ingested twice at the same time
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(len(jobs))
    with context.Pool(len(jobs)) as pool:
        added = pool.map(_ingest, [(str(f), str(store), barrier) for f in jobs])
    assert sum(new for result in added for new in result) == len(folders)
    files = sorted((store / "runs").glob("*.json"))
    assert len(files) == len(folders)
    assert {load_record(f).variant.name for f in files} == {
        "tinymerge", "from_log:scripted_logs", "from_log:wrong_logs", "tinymerge-doctored"}
    assert not list((store / "runs").glob(".*"))  # no temporary file left behind
    assert Store(store).index().execute("SELECT COUNT(*) FROM runs").fetchone()[0] == len(folders)


@pytest.mark.parametrize("damage", ["truncated results", "truncated samples", "partial sample line",
                                    "not results", "missing samples"])
def test_damaged_output_is_refused_and_the_store_left_untouched(outputs, tmp_path, run_cli, damage):
    store = tmp_path / "store"
    assert run_cli("track", "ingest", str(outputs["wrong"]), "--store", store)[0] == 0
    before = sorted(p.name for p in (store / "runs").iterdir())
    copy = tmp_path / "copy"
    shutil.copytree(outputs["scripted"], copy / "scripted")
    shutil.copytree(outputs["doctored"], copy / "doctored")  # a good run beside the damaged one
    [results_file] = (copy / "scripted").rglob("*_results.json")
    samples_file = next((copy / "scripted").rglob("*_samples_mvlm_probe_reasoning.jsonl"))
    text, lines = results_file.read_text(), samples_file.read_text().splitlines(keepends=True)
    if damage == "truncated results":
        results_file.write_text(text[: len(text) // 2])
    elif damage == "truncated samples":
        samples_file.write_text("".join(lines[:-3]))
    elif damage == "partial sample line":
        samples_file.write_text("".join(lines[:-1]) + lines[-1][:40])
    elif damage == "not results":
        results_file.write_text(json.dumps({"results": {}, "hello": 1}))
    else:
        samples_file.unlink()
    code, out, err = run_cli("track", "ingest", str(copy), "--store", store)
    assert code == 2 and not out
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert str(copy / "scripted") in err
    assert sorted(p.name for p in (store / "runs").iterdir()) == before


def test_index_follows_the_record_files(outputs, tmp_path):
    store = Store(tmp_path / "store")
    store.add(read_output(outputs["scripted"]) + read_output(outputs["wrong"]))
    assert store.index().execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 4 * SCRIPTED_LIMIT
    first, second = store.files()
    first.unlink()  # e.g. a record removed by `git rm`: the index is rebuilt without it
    assert [row[0] for row in store.index().execute("SELECT file FROM runs")] == [second.name]
    (store.runs_dir / "broken.json").write_text("{}")  # views name it and go on; regress (strict) refuses
    assert [row[0] for row in store.index().execute("SELECT file FROM runs")] == [second.name]
    with pytest.raises(ResultsError, match="broken.json: not a valid run record"):
        Store(tmp_path / "store", strict=True).index()


def test_track_list_and_query(outputs, tmp_path, run_cli):
    store = tmp_path / "store"
    run_cli("track", "ingest", str(outputs["scripted"]), "--store", store, "--baseline")
    code, out, _ = run_cli("track", "list", "--store", store)
    assert code == 0 and "from_log:scripted_logs" in out and "yes" in out
    code, out, _ = run_cli("track", "query", "SELECT task, SUM(correct) AS right FROM samples GROUP BY task "
                           "ORDER BY task", "--store", store)
    assert code == 0
    assert "13" in next(line for line in out.splitlines() if "mvlm_probe_perception" in line)
    code, _, err = run_cli("track", "query", "DELETE FROM runs", "--store", store)
    assert code == 2 and "read-only" in err
