"""The `merged-vlm` command line is consistent: version, help, option names, flags, quiet, overrides, width."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer

from harness_ext.cli import app

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
MERGES_OR_EVALUATES = ("demo", "sweep", "layers", "merge", "plan", "validate")


def _commands(command=None, path=()):
    """(path, click command) for every command and subcommand."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _options(path: tuple[str, ...]):
    command = dict(_commands())[path]
    return [p for p in command.params if p.param_type_name == "option"]


@pytest.fixture
def narrow(run_cli):
    """Run `merged-vlm ARGS` in-process in an 80-column terminal; returns (exit code, stdout)."""
    return lambda *args: run_cli(*args, columns=80)[:2]


def test_version(narrow):
    assert narrow("--version") == (0, f"merged-vlm {version('merged-vlm')}\n")


@pytest.mark.parametrize("path", [path for path, _ in _commands()], ids=lambda p: " ".join(p) or "merged-vlm")
def test_short_help_everywhere_with_flags_shown_as_flags(narrow, path):
    code, out = narrow(*path, "-h")
    assert code == 0 and out.startswith(f"Usage: merged-vlm {' '.join(path)}".rstrip()), out
    assert "<bool>" not in out and "--no-force" not in out, out
    assert max(len(line) for line in out.splitlines()) <= 80, out


def test_one_name_for_the_output_option():
    names = {opt for path, _ in _commands() for option in _options(path) for opt in option.opts
             if opt.lstrip("-").startswith("out") and opt != "--store"}  # --output, --outdir; not --timeout
    assert names == {"--out"}


def test_boolean_options_are_flags_without_a_negative_form_unless_on_by_default():
    for path, _ in _commands():
        for option in _options(path):
            if option.is_flag and option.secondary_opts:
                assert option.default is True, (path, option.opts, option.secondary_opts)


@pytest.mark.parametrize("name", MERGES_OR_EVALUATES)
def test_quiet_and_set_on_every_command_that_merges_or_evaluates(name):
    options = {opt: option for option in _options((name,)) for opt in option.opts}
    assert options["--quiet"].is_flag and "-q" in options["--quiet"].opts
    assert options["--set"].multiple and options["--set"].metavar == "KEY=VALUE"


def test_set_overrides_the_recipe(narrow, tmp_path):
    sets = ("--set", "method=task_arithmetic", "--set", "lambda=0.5")
    hashes = []
    for extra in ((), sets):
        code, out = narrow("plan", "tiny-world", "--json", *extra)
        assert code == 0
        hashes.append(json.loads(out)["recipe_hash"])
    assert hashes[0] != hashes[1]
    code, out = narrow("layers", "tiny-world", "--stats", "--out", str(tmp_path), *sets)
    assert code == 0 and f"recipe hash {hashes[1]}" in " ".join(out.split()), out
    code, out = narrow("validate", "tiny-world", "--recipe-only", "--set", "lambda=oops")
    assert code == 2


def test_plan_at_80_columns_shows_every_module_name_whole(narrow):
    code, out = narrow("plan", "tiny-world", "--json")
    modules = [row["module"] for row in json.loads(out)["modules"]]
    code, out = narrow("plan", "tiny-world")
    assert code == 0 and "…" not in out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    lines = set(out.splitlines())
    assert all(module in lines for module in modules), out


def test_tables_at_80_columns_cut_no_value(narrow):
    code, out = narrow("methods")
    assert code == 0 and "…" not in out and "lambda*elect_sign(w_i*topk(tau_i," in out
    assert all(len(line) <= 80 for line in out.splitlines())
    lines = out.splitlines()
    bridged = [i for i, line in enumerate(lines) if line.startswith("│ mergekit.")]
    continued = [lines[i + 1] for i in bridged if lines[i + 1].startswith("│") and not lines[i + 1].split("│")[1].strip()]
    assert bridged and not continued, f"mergekit rows wrap: {continued[:2]}"
    code, out = narrow("track", "list", "--store", str(ROOT / "results"))
    assert code == 0 and "…" not in out
    assert all(len(line) <= 80 for line in out.splitlines())
    wide = subprocess.run([str(BIN / "merged-vlm"), "track", "list", "--store", str(ROOT / "results")],
                          env={**os.environ, "COLUMNS": "400"}, capture_output=True, text=True, check=True).stdout
    values = re.findall(r"[0-9a-f]{12,16}|tiny-world\S*", wide)
    assert values and all(re.search(rf"(^|\s){re.escape(value)}(\s|$)", out, re.MULTILINE) for value in values), out


def test_demo_quiet_prints_the_table_and_no_progress_bar(tmp_path):
    """The README's main command, shortened: --quiet leaves the table and nothing that draws progress."""
    env = {**os.environ, "COLUMNS": "80", "MERGED_VLM_CACHE": str(tmp_path / "cache")}
    command = [str(BIN / "merged-vlm"), "demo", "--quiet", "--limit", "2", "--tasks", "mvlm_probe_perception",
               "--out", str(tmp_path / "out"), "--set", "lambda=0.5"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "VLM vs merged" in result.stdout
    assert "n = 2 of 200 documents per task" in " ".join(result.stdout.split()), result.stdout
    assert "What the merge changed, on the same documents: probe_perception" in result.stdout
    assert "n=2)" in result.stdout
    assert "it/s" not in output and "%|" not in output and "\r" not in output, output[-3000:]
    assert "loading and evaluating" not in output and "INFO" not in output
    planned = subprocess.run([str(BIN / "merged-vlm"), "plan", "tiny-world", "--json", "--set", "lambda=0.5"],
                             env=env, capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(planned.stdout)["recipe_hash"] in result.stdout


def test_demo_reading_names_only_changes_beyond_sampling_noise():
    """The line under the demo's table: per task the change in points with its interval and n, and which
    changes are more than noise (a 1-document flip in 200 is not; 60 of 200 lost is)."""
    from harness_ext.cli.demo import reading

    docs = range(200)
    alone = {"mvlm_probe_perception": {d: d < 100 for d in docs},
             "mvlm_probe_reasoning": {d: d < 10 for d in docs}}
    merged = {"mvlm_probe_perception": {d: d < 40 for d in docs},
              "mvlm_probe_reasoning": {d: d < 11 for d in docs}}
    line = reading(["mvlm_probe_perception", "mvlm_probe_reasoning"], alone, merged)
    assert "probe_perception -30.0 points" in line and "probe_reasoning +0.5 points" in line
    assert line.count("n=200") == 2 and line.endswith("beyond sampling noise: probe_perception.")
    quiet = reading(["mvlm_probe_reasoning"], alone, merged)
    assert quiet.endswith("no change is beyond sampling noise at this n.")


def test_sweep_set_applies_to_every_variant():
    from harness_ext.sweep import expand

    variants = expand("tiny-world", {"lambda": [0.5, 1.0]}, {"method": "task_arithmetic"})
    assert [(v.recipe.method, v.recipe.lambda_) for v in variants] == [("task_arithmetic", 0.5),
                                                                     ("task_arithmetic", 1.0)]


def test_demo_title_says_how_many_documents_of_how_many():
    """`demo --limit 10` says "n = 10 of 200 documents per task"; a full run says "n = 200"."""
    from harness_ext.cli.demo import documents

    assert documents({(10, 200)}) == "10 of 200"
    assert documents({(200, 200)}) == "200"
    assert documents({(10, 200), (10, 300)}) == "10 of 200, 10 of 300"


def test_sweep_refusal_names_what_differs(tmp_path):
    """A sweep folder holding another sweep: the one-line refusal says which option differs, both values."""
    from harness_ext.sweep import _write_state
    from merge_models.errors import MergeError

    _write_state(tmp_path, "tiny-world", {"lambda": [0, 1]}, ["mvlm_probe_reasoning"], 5, {})
    with pytest.raises(MergeError) as refused:
        _write_state(tmp_path, "tiny-world", {"lambda": [0, 2]}, ["mvlm_probe_reasoning"], 10, {})
    message = str(refused.value)
    assert message.startswith(f"--out: {tmp_path} holds a different sweep (--grid lambda=0,1 there, lambda=0,2 "
                              "here; --limit 5 there, 10 here)"), message
    assert "recipe field" not in message and "\n" not in message


def test_sweep_table_labels_variants_by_their_grid_values():
    from harness_ext.cli.analysis import variant_label

    assert variant_label({"lambda": 0, "method": "ties"}, ["lambda", "method"]) == "lambda=0, method=ties"


def test_leaderboard_at_80_columns_off_a_terminal_stays_a_table(narrow):
    """Piped output is 80 columns wide: still one table (header row, rows), nothing cut, the unmerged VLM
    shown as such, the row order stated."""
    code, out = narrow("leaderboard", "--store", str(ROOT / "results"))
    lines = out.splitlines()
    assert code == 0 and "…" not in out and all(len(line) <= 80 for line in lines), out
    assert any(line.split()[:4] == ["variant", "recipe", "hash", "n"] for line in lines), out
    baseline = next(i for i, line in enumerate(lines) if line.strip().startswith("tiny-world-vlm-alone"))
    assert "none" in lines[baseline] and "linear" not in lines[baseline] and "0.9/0.1" not in lines[baseline + 1]
    assert "Rows: highest reasoning average first (--sort)." in " ".join(out.split())
    code, top = narrow("leaderboard", "--store", str(ROOT / "results"), "--top", "2")
    assert code == 0 and "2 of 7 variants (--top)" in " ".join(top.split())


def test_leaderboard_plot_has_error_bars_and_starts_at_zero():
    import matplotlib.pyplot as plt

    from harness_ext.results import leaderboard
    from harness_ext.results.plot import scatter_figure
    from harness_ext.results.store import Store

    board = leaderboard.build(Store(ROOT / "results"))
    figure = scatter_figure(board)
    axes = figure.axes[0]
    bars = [c for c in axes.containers if type(c).__name__ == "ErrorbarContainer"]
    assert len(bars) == len(board.entries), "one pair of error bars per variant"
    assert axes.get_ylim()[0] >= 0 and axes.get_xlim()[0] >= 0
    tiny = next(e for e in board.entries if e.name == "tiny-world")
    low, high = tiny.intervals["perception"]
    assert low < tiny.averages["perception"] < high and high - low > 0.05, "n=200: a real interval"
    plt.close(figure)
