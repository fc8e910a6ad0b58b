"""Coverage is part of every score: a run on part of the documents never displaces a complete one, every
view says what a score rests on, compare and regress refuse unlike document sets, names resolve without
false ambiguity, exploratory runs stay in the local store, records are portable, and scores can be read
under another scoring protocol. Built from the real runs of results_fixtures.

Store "coverage": variant S (from_log, scripted answers, ingested as the baseline) with a complete run on
all 200 documents per task (133 right), a later run on the first 20 (13 right) and one on the first 6
(4 right); variant W ("wrong", the first 20 documents, 6 right); variant D (a merge, the first 6).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from results_fixtures import (
    DOCTORED_HASH,
    PROBE,
    ROOT,
    SAMPLE_METRICS,
    SCRIPTED_LIMIT,
    doctor,
    edit_samples,
    outputs,
)

from harness_ext.results import leaderboard
from harness_ext.results.ingest import read_output
from harness_ext.results.selection import resolve
from harness_ext.results.store import Store
from harness_ext.results.variants import merged_variant

__all__ = ["outputs"]  # the session fixture, imported for pytest

S, W, D = "from_log:scripted_logs", "from_log:wrong_logs", "tinymerge-doctored"
PERCEPTION, REASONING = PROBE
FULL = 133 / 200  # doc_id % 3 != 1 over 0..199 (67 documents have doc_id % 3 == 1)


@pytest.fixture(scope="module")
def runs(outputs, tmp_path_factory) -> dict[str, Path]:
    """The store's runs by name: "full", "partial" (the first 20, dated after the full run), "six", "wrong",
    "doctored"."""
    later = doctor(outputs["scripted"], tmp_path_factory.mktemp("later") / "partial", None, "20991231_120000")
    return {"full": outputs["scripted_full"], "partial": later, "six": outputs["scripted_6"],
            "wrong": outputs["wrong"], "doctored": outputs["doctored"]}


@pytest.fixture(scope="module")
def store(runs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("coverage") / "results"
    results = Store(root)
    for name in ("full", "partial", "six"):
        results.add(read_output(runs[name], baseline=True))
    for name in ("wrong", "doctored"):
        results.add(read_output(runs[name]))
    return root


def _run_id(folder: Path) -> str:
    [record] = read_output(folder)
    return record.run_id


def test_a_partial_run_never_displaces_a_complete_one(store, run_cli, tmp_path):
    """`lmms_eval ... --limit 20` after a full run: the leaderboard keeps the full run's score, says n."""
    board = leaderboard.build(Store(store))
    rows = {e.name: e for e in board.entries}
    s, w, d = rows[S], rows[W], rows[D]
    assert s.scores[PERCEPTION] == pytest.approx(FULL) and s.averages["reasoning"] == pytest.approx(FULL)
    assert leaderboard.documents(s, board.tasks) == "200" and not s.partial(PERCEPTION)
    assert leaderboard.documents(w, board.tasks) == f"{SCRIPTED_LIMIT} of 200 †" and w.partial("perception")
    # changes are taken on the same documents: the baseline's run on the first 20 (13/20), on the first 6 (4/6)
    assert w.delta(PERCEPTION) == pytest.approx(0.30 - 0.65) and w.delta("reasoning") == pytest.approx(-0.35)
    assert d.delta("perception") == pytest.approx(0.5 - 4 / 6)

    code, out, _ = run_cli("leaderboard", "--store", store, "--format", "markdown")
    lines = {line.split(" |")[0].lstrip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert code == 0 and "| n |" in out
    assert "| 200 | 66.5 | - | 66.5 | - | 66.5 | 66.5 |" in lines[f"{S} ★ (baseline)"]
    assert "| 20 of 200 † | 30.0† | -35.0 | 30.0† | -35.0 |" in lines[W]
    code, out, _ = run_cli("leaderboard", "--store", store, "--format", "csv")
    rows_csv = {r["variant"]: r for r in csv.DictReader(io.StringIO(out))}
    assert (rows_csv[S]["n_min"], rows_csv[S]["partial"], rows_csv[S][f"{PERCEPTION}_n"]) == ("200", "0", "200")
    assert (rows_csv[W]["n_min"], rows_csv[W]["partial"], rows_csv[W][f"{PERCEPTION}_n_total"]) == ("20", "1", "200")
    page = tmp_path / "board.html"
    assert run_cli("leaderboard", "--store", store, "--format", "html", "--out", page)[0] == 0
    assert ">20 of 200 †</td>" in page.read_text() and ">200</td>" in page.read_text()
    code, out, _ = run_cli("leaderboard", "--store", store)
    assert code == 0 and "20 of 200 †" in out and "66.5" in out


def test_no_change_is_shown_against_a_baseline_on_other_documents(store, run_cli):
    """A variant on 6 documents against a baseline that has none of its runs on them: no change, marked ≠."""
    code, out, _ = run_cli("leaderboard", "--store", store, "--format", "csv", "--baseline", W)
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0 and rows[D]["delta_perception"] == rows[D][f"{PERCEPTION}_delta"] == ""
    assert rows[S]["delta_perception"] == ""  # S shows its 200-document run; W has none on those documents
    code, out, _ = run_cli("leaderboard", "--store", store, "--format", "markdown", "--baseline", W)
    doctored = next(line for line in out.splitlines() if line.startswith(f"| {D}"))
    assert "| 6 of 200 † | 50.0† | ≠ |" in doctored


def test_regress_refuses_other_documents_and_fails_a_candidate_on_fewer(store, runs, run_cli):
    """`regress --baseline <200-document run> --candidate <20-document run>` does not pass on the 20 shared."""
    full, partial = _run_id(runs["full"]), _run_id(runs["partial"])
    code, out, err = run_cli("regress", "--baseline", full, "--candidate", partial, "--store", store,
                             "--iterations", "500")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {PERCEPTION}: the baseline rests on 200 documents, the candidate on 20 of 200: "
                          "not the same documents")
    code, out, _ = run_cli("regress", "--baseline", full, "--candidate", str(runs["partial"]), "--store", store,
                           "--iterations", "500", "--intersection")
    assert code == 1
    assert f"REGRESSION coverage: {PERCEPTION}: the candidate covers 20 of the baseline's 200 documents" in out
    assert "compared on the intersection (--intersection)" in out
    code, out, _ = run_cli("regress", "--baseline", partial, "--candidate", full, "--store", store,
                           "--iterations", "500", "--intersection")
    assert code == 0 and "ok: no drop" in out  # more documents than the baseline: compared on the 20 shared


def test_compare_counts_the_runs_of_a_variant(store, run_cli):
    code, out, _ = run_cli("compare", S, S, "--store", store, "--json", "--iterations", "200")
    payload = json.loads(out)
    assert code == 0 and "3 runs recorded" in payload["a"] and "(200 documents per task)" in payload["a"]
    assert [(row["n"], row["n_a"], row["n_b"]) for row in payload["tasks"]] == [(200, 200, 200)] * 2


def test_exact_names_resolve_and_display_names_are_unique(outputs, tmp_path, run_cli):
    """Two variants recorded under one name (as the demo's VLM-alone and merged rows were): unique display names,
    an exact name never ambiguous, any unambiguous prefix resolves."""
    other = doctor(outputs["doctored"], tmp_path / "other", None, "20260105_120000",
                   {"name": "tinymerge-doctored", "lambda": 0.7}, "ab12cd34ab12cd34")
    root = tmp_path / "store"
    Store(root).add(read_output(outputs["doctored"]) + read_output(other))
    board = leaderboard.build(Store(root))
    assert sorted(e.name for e in board.entries) == [D, f"{D}#ab12cd34"]
    assert resolve(D, Store(root)).variant.id == DOCTORED_HASH  # the earlier variant keeps the plain name
    code, _, err = run_cli("compare", D, f"{D}#ab12cd34", "--store", root, "--iterations", "200")
    assert code == 0, err
    assert run_cli("compare", f"{D}#ab", D, "--store", root, "--iterations", "200")[0] == 0
    assert run_cli("compare", "ab12", "d0c7", "--store", root, "--iterations", "200")[0] == 0
    code, _, err = run_cli("compare", "tinymerge-doc", D, "--store", root)
    assert code == 2 and "ambiguous" in err and f"{D}#ab12cd34" in err


def test_overridden_runs_get_their_own_names():
    recipe = {"name": "tiny-world", "method": "linear", "vlm": {"model": "v", "weight": 0.9}, "base": None,
              "sources": [{"model": "r", "weight": 0.1}]}
    merge = {"recipe_hash": "h" * 16, "recipe": recipe, "inputs": {}}
    assert merged_variant(merge, False)[0].name == "tiny-world"
    assert merged_variant({**merge, "overrides": {"lambda": 2}}, False)[0].name == "tiny-world@lambda=2"
    alone = {**merge, "recipe": {**recipe, "name": "tiny-world-vlm-alone"},
             "overrides": {"modules": [], "name": "tiny-world-vlm-alone"}}
    assert merged_variant(alone, False)[0].name == "tiny-world-vlm-alone"


def test_exploratory_runs_go_to_the_local_store_and_commit_is_asked_for(outputs, tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("MERGED_VLM_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("MERGED_VLM_LOCAL_RESULTS", raising=False)
    code, out, _ = run_cli("track", "ingest", str(outputs["wrong"]))
    assert code == 0 and "n 20, part of the documents (--limit)" in out and "pass --commit" in out
    assert len(list((tmp_path / "results/local/runs").glob("*.json"))) == 1
    assert not (tmp_path / "results/runs").exists(), "the committed record changes only when asked"
    assert (tmp_path / "results/local/.gitignore").read_text() == "*\n"
    code, _, _ = run_cli("track", "ingest", str(outputs["scripted_full"]), "--commit")
    assert code == 0 and len(list((tmp_path / "results/runs").glob("*.json"))) == 1
    code, out, _ = run_cli("leaderboard", "--format", "csv")  # views read both stores
    assert code == 0 and {r["variant"] for r in csv.DictReader(io.StringIO(out))} == {S, W}
    code, out, _ = run_cli("track", "list")
    assert code == 0 and "local" in out and "probe_perception 200" in out
    code, _, err = run_cli("track", "ingest", str(outputs["wrong"]), "--commit", "--store", tmp_path / "x")
    assert code == 2 and "--commit and --store" in err


def _absolute_paths(text: str) -> list[str]:
    """Absolute paths of this machine (its temporary folder, home, the checkout) or any JSON string or
    argument value that starts with `/` or `~/`."""
    found = [p for p in {tempfile.gettempdir(), str(Path.home()), str(ROOT), "/work/", "/tmp/"} if p in text]
    return found + re.findall(r"""(?:"|=|: )(?:/|~/)[\w.-]+/""", text)


def test_records_and_bundles_hold_no_absolute_path(outputs, tmp_path, run_cli):
    root = tmp_path / "store"
    records = [r for name in ("merged", "scripted", "lm_eval", "doctored") for r in read_output(outputs[name])]
    raw = "".join(path.read_text() for name in ("merged", "scripted", "lm_eval")
                  for path in outputs[name].rglob("*results*.json"))
    assert _absolute_paths(raw), "the harnesses' own outputs do name absolute paths (the check can fail)"
    for added in Store(root).add(records):
        assert _absolute_paths(added.path.read_text()) == [], added.path
    merged = next(r for r in records if r.variant.name == "tinymerge")
    assert merged.variant.vlm and not merged.variant.vlm.startswith("/")
    assert merged.merge["recipe_file"] == "tinymerge.yaml" and "recipe=tinymerge.yaml" in merged.harness.model_args
    bundle = tmp_path / "bundle"
    assert run_cli("submit", "tinymerge", "--out", bundle, "--store", root)[0] == 0
    for path in bundle.rglob("*"):
        if path.is_file():
            assert _absolute_paths(path.read_text()) == [], path


def test_bundle_command_names_the_model_as_the_command_line_does(outputs, tmp_path, run_cli):
    """Runs once recorded with the model's Python class (`demo`, `sweep`) still reproduce with `merged_vlm`."""
    copy = shutil.copytree(outputs["doctored"], tmp_path / "run")
    [results_file] = copy.rglob("*_results.json")
    data = json.loads(results_file.read_text())
    data["config"].update(model="MergedVLMChat", model_args="")
    results_file.write_text(json.dumps(data))
    root = tmp_path / "store"
    Store(root).add(read_output(copy))
    assert run_cli("submit", D, "--out", tmp_path / "bundle", "--store", root)[0] == 0
    card = (tmp_path / "bundle/MODEL_CARD.md").read_text()
    assert ("lmms_eval --model merged_vlm --model_args recipe=recipe.yaml --tasks mvlm_probe_perception,"
            "mvlm_probe_reasoning --limit 6 --gen_kwargs max_new_tokens=4 --output_path out --log_samples") in card
    assert json.loads((tmp_path / "bundle/results.json").read_text())["config"]["model"] == "merged_vlm"


def test_committed_records_hold_no_absolute_path_and_full_runs_only():
    files = sorted((ROOT / "results").rglob("*.json")) + [ROOT / "results/README.md"]
    assert len(files) > 1
    for path in files:
        assert _absolute_paths(path.read_text()) == [], path
    for path in (ROOT / "results/runs").glob("*.json"):
        record = json.loads(path.read_text())
        assert record["harness"]["limit"] is None and record["harness"]["model"] in ("merged_vlm", "merged_lm")
        assert all(t["n"] == t["n_total"] and not t["limited"] for t in record["tasks"].values()), path


def test_written_files_get_ordinary_permissions(store, outputs, run_cli, tmp_path):
    previous = os.umask(0o022)
    try:
        board, plot = tmp_path / "board.md", tmp_path / "board.png"
        assert run_cli("leaderboard", "--store", store, "--format", "markdown", "--out", board, "--plot", plot)[0] == 0
        bundle = tmp_path / "bundle"
        assert run_cli("submit", D, "--out", bundle, "--store", store)[0] == 0
        [added] = Store(tmp_path / "store").add(read_output(outputs["wrong"]))
    finally:
        os.umask(previous)
    for path in (board, plot, bundle / "MODEL_CARD.md", added.path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o755


def test_sweep_scores_per_task_and_split_with_n_and_intervals(outputs):
    from harness_ext.plots import sweep_figure
    from harness_ext.results.summary import summarize

    [record] = read_output(outputs["scripted_full"])
    scores = {(s.kind, s.name): s for s in summarize(record, iterations=500)}
    assert set(scores) == {("task", PERCEPTION), ("task", REASONING), ("split", "perception"), ("split", "reasoning")}
    for score in scores.values():
        assert score.n == 200 and score.score == pytest.approx(FULL)
        assert score.low < score.score < score.high and score.high - score.low < 0.2
    [six] = read_output(outputs["scripted_6"])
    figure = sweep_figure([({"lambda": 0.5}, summarize(record, iterations=200)),
                           ({"lambda": 1.0}, summarize(six, iterations=200))], "test")
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["per task: score vs lambda", "per split: score vs lambda"]
    for axis in figure.axes:
        assert axis.get_ylim()[0] == 0
        labels = axis.get_legend_handles_labels()[1]
        assert labels and all("n=6-200" in label for label in labels), labels


def _copy_with(source: Path, target: Path, edit: Callable[[dict, dict], None]) -> Path:
    """A copy of a run whose samples' records (every metric's) are edited in place by
    `edit(sample, record)`."""
    shutil.copytree(source, target)

    def each_record(_task: str, sample: dict) -> None:
        for metric in SAMPLE_METRICS:
            edit(sample, sample[metric])

    edit_samples(target, each_record)
    return target


def _strict_verdicts(sample: dict, record: dict) -> None:
    """Verdicts under two protocols: official (the recorded one) and strict (right only on even documents),
    as scoring logs them."""
    official = {k: record[k] for k in ("correct", "extracted", "rule")}
    strict = {**official, "correct": official["correct"] and sample["doc_id"] % 2 == 0}
    record["verdicts"] = {"official": official, "strict": strict}


def _no_verdicts(_sample: dict, record: dict) -> None:
    """One verdict per record, as records made before two protocols did."""
    record.pop("verdicts", None)


def test_scores_under_another_protocol(outputs, tmp_path, run_cli):
    root = tmp_path / "store"
    strict = _copy_with(outputs["scripted"], tmp_path / "strict", _strict_verdicts)
    without = _copy_with(outputs["wrong"], tmp_path / "w", _no_verdicts)
    Store(root).add(read_output(strict, baseline=True) + read_output(without))
    # scripted: right where doc_id % 3 != 1; strict also needs an even doc_id: 0, 2, 6, 8, 12, 14, 18 (7 of 20)
    code, out, _ = run_cli("leaderboard", "--store", root, "--format", "csv", "--protocol", "strict")
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(out))}
    assert code == 0 and float(rows[S][PERCEPTION]) == pytest.approx(35.0) and rows[S]["protocol"] == "strict"
    assert rows[W][PERCEPTION] == ""  # no strict verdicts in that run
    code, out, _ = run_cli("leaderboard", "--store", root, "--format", "csv")
    assert float({r["variant"]: r for r in csv.DictReader(io.StringIO(out))}[S][PERCEPTION]) == pytest.approx(65.0)
    evaluation = resolve(S, Store(root), "strict")
    assert evaluation.tasks[PERCEPTION].score == pytest.approx(0.35)
    assert Store(root).index().execute("SELECT COUNT(*) FROM verdicts WHERE protocol = 'strict'").fetchone()[0] == 40
    code, _, err = run_cli("compare", S, W, "--store", root, "--protocol", "strict")
    assert code == 2 and "has no strict verdicts" in err
    code, _, err = run_cli("leaderboard", "--store", root, "--protocol", "lenient")
    assert code == 2 and "recorded: official, strict" in err
    bundle = tmp_path / "bundle"
    assert run_cli("submit", S, "--out", bundle, "--store", root, "--protocol", "strict")[0] == 0
    submitted = json.loads((bundle / "results.json").read_text())["merged_vlm_submission"]
    assert submitted["protocol"] == "strict" and submitted["scores"][PERCEPTION] == pytest.approx(0.35)
    assert (submitted["documents"][PERCEPTION]["n"], submitted["documents"][PERCEPTION]["partial"]) == (20, True)


def test_format_one_records_are_read_with_their_document_sets(outputs, tmp_path):
    root = tmp_path / "store"
    [record] = Store(root).add(read_output(outputs["wrong"]))
    data = json.loads(record.path.read_text())
    data["format"] = 1
    for task in data["tasks"].values():
        del task["doc_set"], task["limited"]
    record.path.write_text(json.dumps(data))
    [row] = Store(root).index().execute("SELECT doc_set, limited FROM tasks WHERE task = ?", (PERCEPTION,))
    assert row[0] == read_output(outputs["wrong"])[0].tasks[PERCEPTION].doc_set and row[1] == 1
