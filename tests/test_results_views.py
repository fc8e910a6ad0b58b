"""Views of the results store built from real runs (see results_fixtures): leaderboard (table, Markdown,
CSV, HTML in headless Chromium, PNG), compare, regress and submit, checked against hand-computed values.

Store: "scripted" (65% on both probe tasks, 20 documents, ingested with --baseline) and its later run
"scripted_6" on the first 6 documents (4/6), "wrong" (30%, the same 20 documents), "doctored" (a merged
variant: 50% perception, 5/6 reasoning, 6 documents) and "merged" (tiny random model, 6 documents).
Changes against the baseline are taken on the same documents: the 20-document run for "wrong", the
6-document run for the merged variants.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image
from results_fixtures import DOCTORED_HASH, MERGED_LIMIT, PROBE, SCRIPTED_LIMIT, outputs

from harness_ext.results import leaderboard
from harness_ext.results.compare import compare
from harness_ext.results.ingest import read_output
from harness_ext.results.regress import regressions
from harness_ext.results.selection import resolve
from harness_ext.results.store import Store

__all__ = ["outputs"]  # the session fixture, imported for pytest

SCRIPTED, WRONG, DOCTORED, MERGED = "from_log:scripted_logs", "from_log:wrong_logs", "tinymerge-doctored", "tinymerge"
PERCEPTION, REASONING = PROBE


@pytest.fixture(scope="module")
def store(outputs, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("views") / "results"
    results = Store(root)
    results.add(read_output(outputs["scripted"], baseline=True) + read_output(outputs["scripted_6"], baseline=True))
    for name in ("wrong", "merged", "doctored"):
        results.add(read_output(outputs[name]))
    return root


@pytest.fixture(scope="module")
def merged_scores(outputs) -> dict[str, float]:
    """The tiny random model's scores, from its samples files."""
    out = {}
    for path in outputs["merged"].rglob("*_samples_*.jsonl"):
        verdicts = [json.loads(line)["mvlm_acc"]["correct"] for line in path.read_text().splitlines()]
        out[path.stem.split("_samples_", 1)[1]] = sum(verdicts) / len(verdicts)
    return out


def test_leaderboard_matches_hand_computed_values(store, merged_scores):
    board = leaderboard.build(Store(store))
    rows = {e.name: e for e in board.entries}
    assert board.tasks == [PERCEPTION, REASONING]
    assert board.averaged == {"perception": [PERCEPTION], "reasoning": [REASONING]}
    expected = {SCRIPTED: (0.65, 0.65), WRONG: (0.30, 0.30), DOCTORED: (0.5, 5 / 6),
                MERGED: (merged_scores[PERCEPTION], merged_scores[REASONING])}
    # the baseline on the same documents: its 20-document run (13/20) for WRONG, its 6-document run (4/6) else
    same_documents = {WRONG: 0.65, DOCTORED: 4 / 6, MERGED: 4 / 6}
    for name, (perception, reasoning) in expected.items():
        entry = rows[name]
        assert entry.averages["perception"] == pytest.approx(perception), name
        assert entry.averages["reasoning"] == pytest.approx(reasoning), name
        assert entry.baseline is rows[SCRIPTED]
        if name != SCRIPTED:
            assert entry.delta("perception") == pytest.approx(perception - same_documents[name])
            assert entry.delta(REASONING) == pytest.approx(reasoning - same_documents[name])
        n = SCRIPTED_LIMIT if name in (SCRIPTED, WRONG) else MERGED_LIMIT  # the run on the most documents
        assert {t: (c.n, c.n_total, c.partial) for t, c in entry.coverage.items()} == {
            t: (n, 200, True) for t in PROBE}
    assert rows[SCRIPTED].is_baseline and rows[SCRIPTED].delta("perception") is None
    assert {e.name for e in board.entries if e.pareto} == {SCRIPTED, DOCTORED}
    assert [e.name for e in board.entries] == sorted(expected, key=lambda n: (-expected[n][1], n))
    doctored = rows[DOCTORED]
    assert (doctored.id, doctored.method, doctored.lambda_, doctored.weights) == (DOCTORED_HASH, "linear", "0.5",
                                                                                 "0.9 / 0.1")
    by_perception = leaderboard.build(Store(store), sort="perception", ascending=True)
    assert [e.name for e in by_perception.entries][-1] == SCRIPTED


def test_leaderboard_markdown_csv_and_terminal(store, run_cli):
    code, out, _ = run_cli("leaderboard", "--store", store, "--format", "markdown")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("| variant | method | λ |") and lines[1].startswith("|---|")
    assert lines[0].startswith("| variant | method | λ | weights (VLM / sources) | layers | hash | n |")
    doctored = next(line for line in lines if line.startswith(f"| {DOCTORED} ★"))
    assert "| 6 of 200 † | 50.0† | -16.7 | 83.3† | +16.7 | 50.0† (-16.7) | 83.3† (+16.7) |" in doctored
    assert any(line.startswith(f"| {SCRIPTED} ★ (baseline) |") for line in lines)
    code, out, _ = run_cli("leaderboard", "--store", store, "--format", "csv", "--sort", "name")
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(out))}
    assert list(rows) == sorted(rows)
    assert float(rows[WRONG]["delta_reasoning"]) == pytest.approx(-35.0)
    assert float(rows[DOCTORED][REASONING]) == pytest.approx(100 * 5 / 6, abs=1e-4)
    assert (rows[DOCTORED]["n_min"], rows[DOCTORED][f"{REASONING}_n"], rows[DOCTORED]["partial"]) == ("6", "6", "1")
    assert rows[SCRIPTED]["baseline"] == "1" and rows[WRONG]["baseline_variant"] == rows[SCRIPTED]["variant_id"]
    code, out, _ = run_cli("leaderboard", "--store", store)
    assert code == 0 and "merged-vlm leaderboard" in out and "50.0† (-16.7)" in out and "6 of 200 †" in out
    code, out, _ = run_cli("leaderboard", "--store", store, "--format", "csv", "--baseline", "from_log:wrong_logs")
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(out))}
    assert float(rows[SCRIPTED]["delta_perception"]) == pytest.approx(35.0)
    assert rows[DOCTORED]["delta_perception"] == ""  # the wrong variant has no run on the first 6 documents
    code, _, err = run_cli("leaderboard", "--store", store, "--tasks", "mvlm_nothing")
    assert code == 2 and err.startswith("error: --tasks: no recorded run has mvlm_nothing")


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        return binary
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no chromium binary; install it with `apt-get install -y chromium`")
    pytest.skip("headless Chromium is not installed (apt-get install -y chromium); CI runs this test")


def _chromium_run(page: Path, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--window-size=1400,1000"]
    return subprocess.run([_chromium(), *flags, *mode, page.as_uri()], capture_output=True, text=True, timeout=120,
                          check=False)


def _console(stderr: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in stderr.splitlines() if ":CONSOLE" in line]


def test_html_page_renders_in_headless_chromium_without_errors(store, run_cli, tmp_path):
    page = tmp_path / "board.html"
    assert run_cli("leaderboard", "--store", store, "--format", "html", "--out", page)[0] == 0
    html = page.read_text()
    assert "<script src" not in html and "<link" not in html and 'src="data:image/png;base64,' in html
    dom = _chromium_run(page, tmp_path / "profile1", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    body = dom.stdout.split('<table class="board" id="leaderboard">', 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr") == 2 + 4  # two header rows, one row per variant
    assert f"{DOCTORED} <span" in body and "83.3" in body
    shot = tmp_path / "shot.png"
    assert _chromium_run(page, tmp_path / "profile2", f"--screenshot={shot}").returncode == 0
    with Image.open(shot) as image:
        assert image.size == (1400, 1000)
        assert len(image.convert("L").getcolors(2**16)) > 8  # drew something besides a blank page
    # the sorting script: click the "reasoning" title twice (descending, then ascending), report the order
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", """<script>
const titles = [...document.querySelectorAll("tr.columns th")];
const reasoning = titles.find((th) => th.textContent === "reasoning");
const order = () => [...document.querySelectorAll("#leaderboard tbody tr")].map((r) => r.cells[0].dataset.v);
reasoning.click(); console.log("desc " + order().join("|"));
reasoning.click(); console.log("asc " + order().join("|"));
</script></body>"""))
    logged = _console(_chromium_run(probe, tmp_path / "profile3", "--dump-dom").stderr)
    assert [line for line in logged if "Uncaught" in line] == []
    descending = next(line for line in logged if '"desc ' in line)
    assert descending.startswith(f'"desc {DOCTORED}|{SCRIPTED}|{WRONG}|')
    assert f"|{WRONG}|{SCRIPTED}|{DOCTORED}" in next(line for line in logged if '"asc ' in line)


def test_chromium_console_check_sees_script_errors(tmp_path):
    """The check above is not vacuous: a page with a script error is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    assert any("Uncaught ReferenceError" in line for line in _console(_chromium_run(page, tmp_path / "p",
                                                                                     "--dump-dom").stderr))


def test_scatter_png_opens(store, run_cli, tmp_path):
    plot = tmp_path / "plot.png"
    code, _out, _ = run_cli("leaderboard", "--store", store, "--format", "csv", "--plot", plot)
    assert code == 0
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 800 and image.size[1] > 500
        image.load()


def test_compare_matches_hand_computed_values(store, run_cli):
    results = Store(store)
    comparison = compare(resolve(SCRIPTED, results), resolve(WRONG, results), iterations=2000, seed=7)
    for row in comparison.tasks + comparison.splits:
        assert (row.n, row.a, row.b) == (SCRIPTED_LIMIT, pytest.approx(0.65), pytest.approx(0.30)), row.name
        assert row.delta == pytest.approx(-0.35)
        # wrong answers were injected on 7 documents the scripted run got right: exact McNemar 2 * 0.5**7
        assert (row.mcnemar.a_only, row.mcnemar.b_only, row.mcnemar.test) == (7, 0, "exact")
        assert row.mcnemar.p == pytest.approx(2 * 0.5**7)
        assert -0.75 < row.low < row.delta < row.high < 0
    assert [r.name for r in comparison.splits] == ["perception (mean of 1 task)", "reasoning (mean of 1 task)"]
    assert not comparison.mismatches
    again = compare(resolve(SCRIPTED, results), resolve(WRONG, results), iterations=2000, seed=7)
    assert [(r.low, r.high) for r in again.tasks] == [(r.low, r.high) for r in comparison.tasks]
    code, out, _ = run_cli("compare", SCRIPTED, WRONG, "--store", store, "--json", "--iterations", "2000",
                           "--seed", "7")
    payload = json.loads(out)
    assert code == 0 and payload["tasks"][0]["low"] == comparison.tasks[0].low
    assert payload["tasks"][0]["mcnemar"] == {"a_only": 7, "b_only": 0, "p": 2 * 0.5**7, "test": "exact"}


def test_compare_on_different_documents_only_on_request_and_then_on_the_intersection(store, run_cli):
    results = Store(store)
    code, out, err = run_cli("compare", SCRIPTED, DOCTORED_HASH[:6], "--store", store, "--iterations", "500")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {PERCEPTION}: A rests on 20 of 200 documents, B on 6 of 200: not the same "
                          "documents") and "--intersection to compare on the 6 documents both answered" in err
    comparison = compare(resolve(SCRIPTED, results), resolve(DOCTORED, results), iterations=500, intersection=True)
    assert comparison.narrowed == [PERCEPTION, REASONING]
    assert [(m.task, len(m.only_a), m.only_b) for m in comparison.mismatches] == [
        (PERCEPTION, SCRIPTED_LIMIT - MERGED_LIMIT, []), (REASONING, SCRIPTED_LIMIT - MERGED_LIMIT, [])]
    perception = comparison.tasks[0]
    # first 6 documents: scripted right on 0, 2, 3, 5 (4/6); doctored right on 0, 1, 2 (3/6)
    assert (perception.n, perception.a, perception.b) == (MERGED_LIMIT, pytest.approx(4 / 6), pytest.approx(0.5))
    assert (perception.n_a, perception.n_b) == (SCRIPTED_LIMIT, MERGED_LIMIT)
    assert (perception.mcnemar.a_only, perception.mcnemar.b_only) == (2, 1)
    code, out, _ = run_cli("compare", SCRIPTED, DOCTORED_HASH[:6], "--store", store, "--iterations", "500",
                           "--intersection")
    assert code == 0
    assert f"documents not paired in {PERCEPTION}: 14 only in A" in out
    assert "compared on the intersection (--intersection)" in out


def test_compare_says_when_both_sides_are_the_same_weights(store, run_cli, outputs):
    results_file = next(outputs["merged"].rglob("*_results.json"))
    code, out, _ = run_cli("compare", MERGED, str(results_file.parent), "--store", store, "--iterations", "200")
    assert code == 0 and "A and B are the same weights (recipe hash" in " ".join(out.split()), out
    code, out, _ = run_cli("compare", SCRIPTED, WRONG, "--store", store, "--iterations", "200")
    assert code == 0 and "same weights" not in out


def test_regress_passes_identical_runs_and_fails_injected_wrong_answers(store, run_cli, outputs):
    code, out, _ = run_cli("regress", "--baseline", SCRIPTED, "--candidate", SCRIPTED, "--store", store,
                           "--iterations", "1000")
    assert code == 0 and "ok: no drop larger than 1 points is significant" in out
    code, out, _ = run_cli("regress", "--baseline", SCRIPTED, "--candidate", WRONG, "--max-drop", "1.0",
                           "--store", store, "--iterations", "1000")
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("REGRESSION")]
    assert [line.split(":")[0] for line in failed] == [f"REGRESSION {PERCEPTION}", f"REGRESSION {REASONING}",
                                                       "REGRESSION perception (mean of 1 task)",
                                                       "REGRESSION reasoning (mean of 1 task)"]
    assert "-35.0 points (65.0 -> 30.0" in failed[0] and "McNemar p = 0.0156" in failed[0]
    code, _, _ = run_cli("regress", "--baseline", SCRIPTED, "--candidate", WRONG, "--max-drop", "40",
                         "--store", store, "--iterations", "1000")
    assert code == 0  # a 35-point drop is within a 40-point allowance
    results_file = next(outputs["wrong"].rglob("*_results.json"))  # a path, not stored: CI's fresh run
    code, _, _ = run_cli("regress", "--baseline", SCRIPTED, "--candidate", str(results_file.parent),
                         "--store", store, "--iterations", "1000")
    assert code == 1


def test_a_large_but_not_significant_drop_passes(store):
    results = Store(store)
    baseline, candidate = resolve(SCRIPTED, results), resolve(SCRIPTED, results)
    for task in PROBE:
        result = candidate.tasks[task].model_copy(deep=True)
        for sample in [s for s in result.samples if s.correct][:2]:  # two of 20 flipped: -10 points, p = 0.5
            sample.correct, sample.value = False, 0.0
        candidate.tasks[task] = result
    comparison = compare(baseline, candidate, iterations=1000)
    assert comparison.tasks[0].delta == pytest.approx(-0.10) and comparison.tasks[0].mcnemar.p == 0.5
    assert regressions(comparison, max_drop_points=1.0) == []


def test_regress_needs_per_sample_verdicts(store, run_cli, outputs, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(next(outputs["wrong"].rglob("*_results.json")), lone)  # results without samples files
    code, _, err = run_cli("regress", "--baseline", SCRIPTED, "--candidate", str(lone), "--store", store)
    assert code == 2 and "re-run lmms-eval with --log_samples" in err


def test_submit_writes_a_bundle(store, run_cli, tmp_path):
    out = tmp_path / "bundle"
    code, _stdout, err = run_cli("submit", DOCTORED, "--out", out, "--store", store)
    assert code == 0, err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "MODEL_CARD.md", f"predictions/{PERCEPTION}.jsonl", f"predictions/{REASONING}.jsonl", "recipe.yaml",
        "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert results["results"][PERCEPTION]["mvlm_acc,none"] == pytest.approx(0.5)
    assert results["merged_vlm"]["recipe_hash"] == DOCTORED_HASH
    assert results["merged_vlm_submission"]["splits"]["reasoning"] == pytest.approx(5 / 6)
    predictions = [json.loads(line) for line in (out / f"predictions/{REASONING}.jsonl").read_text().splitlines()]
    assert [p["correct"] for p in predictions] == [False] + [True] * 5 and all("response" in p for p in predictions)
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["lambda"] == 0.5 and recipe["name"] == DOCTORED
    card = (out / "MODEL_CARD.md").read_text()
    assert f"recipe hash: `{DOCTORED_HASH}`" in card and "transformers" in card and "lambda: 0.5" in card
    assert run_cli("submit", DOCTORED, "--out", out, "--store", store)[0] == 2  # not empty
    assert run_cli("submit", WRONG, "--out", out, "--store", store, "--force")[0] == 0
    assert not (out / "recipe.yaml").exists()  # a built-in backend's run has no recipe


def test_unknown_or_ambiguous_references_are_user_errors(store, run_cli):
    code, _, err = run_cli("compare", "nothing-like-this", SCRIPTED, "--store", store)
    assert code == 2 and "names no results file, run or variant" in err
    code, _, err = run_cli("compare", "from_log", SCRIPTED, "--store", store)
    assert code == 2 and "ambiguous: it matches variant from_log:scripted_logs" in err
    code, _, err = run_cli("compare", "model", SCRIPTED, "--store", store)
    assert code == 2 and "ambiguous" in err
