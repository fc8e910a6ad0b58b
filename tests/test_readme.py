"""The README is true: it stays short, every command in its fenced blocks is run (here, or by CI for the
Quick start), and the numbers it prints are the ones the code reproduces from the committed record."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent

# Commands that need a model hub: they are checked by validating the recipe they name, offline.
NEEDS_HUB = ("recipe=qwen2vl-qwen2math-linear",)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)]


def commands(text: str) -> list[str]:
    """Every command of the bash and console blocks, continuation lines joined (console: `$ ` lines)."""
    out = []
    for language, body in fenced_blocks(text):
        if language not in ("bash", "console"):
            continue
        joined = body.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if line and not line.startswith("#"):
                out.append(re.sub(r"\s+", " ", line))
    return out


def quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return commands(section.split("### ", 1)[0])


def test_readme_is_short():
    assert len(README.encode()) < 15_000, "the README is a user's guide: move long material next to what it describes"


def test_quick_start_commands_are_what_ci_runs():
    """The two Quick start commands are run by .ci/run, step for step, on a fresh virtual environment."""
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    parts = [part.strip() for command in quick_start() for part in command.split("&&")]
    assert parts == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install -c requirements.lock -e .",
                     "merged-vlm demo", ". .venv/bin/activate", "pip install -c requirements.lock -e '.[test]'",
                     "python -m pytest"]
    for part in ("pip install -c requirements.lock -e .", "pip install -c requirements.lock -e '.[test]'",
                 "python -m pytest"):
        assert part in ci, f"README's `{part}` is not a line of .ci/run"
    assert any(line.startswith("merged-vlm demo") for line in ci)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A working folder laid out like the repository (recipes, models and task folders linked; the committed
    results copied), so the README's commands run as written without touching the checkout."""
    root = tmp_path_factory.mktemp("readme")
    for name in ("recipes", "models", "harness_ext"):
        (root / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "results", root / "results", ignore=shutil.ignore_patterns("local", ".index*", ".*lock"))
    return root


def _run(command: str, cwd: Path, tmp: Path, columns: int = 200) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": str(columns),
           "MERGED_VLM_CACHE": str(tmp / "cache"), "MERGED_VLM_LOCAL_RESULTS": str(tmp / "local"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_every_other_command_runs_offline_as_written(sandbox, tmp_path):
    """Each command outside the Quick start runs here (in README order) and does what the README says; a
    command that needs a hub has its recipe validated instead. A new command must be classified here."""
    expected_console = _console_outputs()
    for command in commands(README):
        if command in quick_start():
            continue
        if any(marker in command for marker in NEEDS_HUB):
            recipe = re.search(r"recipe=([\w-]+)", command).group(1)
            result = _run(f"merged-vlm validate {recipe} --recipe-only", sandbox, tmp_path)
            assert result.returncode == 0, (command, result.stderr[-2000:])
            continue
        assert command.split()[0] in ("merged-vlm", "lmms_eval", "lm_eval"), f"unclassified README command: {command}"
        result = _run(command, sandbox, tmp_path)
        shown = expected_console.get(command)
        if shown is not None:  # a console block shows the outcome: the same first line and exit status
            output = (result.stdout + result.stderr).strip()
            assert output.startswith(shown["output"].rstrip(". ")), (command, output[-2000:])
            assert result.returncode == shown["status"], (command, result.returncode)
        else:
            assert result.returncode == 0, (command, result.stderr[-3000:])
    _check_results_locations(sandbox, tmp_path)


def _check_results_locations(sandbox: Path, tmp: Path) -> None:
    """Every place the README says results land holds them after its commands ran: `<output_path>/...` under
    each --output_path a command used, a concrete folder in the sandbox, `results/local/` in the local store
    (here $MERGED_VLM_LOCAL_RESULTS) for the --limit run."""
    outputs = [re.search(r"--output_path (\S+)", c).group(1) for c in commands(README)
               if "--output_path" in c and not any(marker in c for marker in NEEDS_HUB) and c not in quick_start()]
    locations = re.findall(r"[Rr]esults land in `([^`]+)`", README)
    assert outputs and locations
    for location in locations:
        pattern = re.sub(r"<recipe name>-<recipe hash>", "*-*", location).rstrip("/")
        if pattern.startswith("<output_path>/"):
            for output in outputs:
                found = list(sandbox.glob(f"{output.rstrip('/')}/{pattern.split('/', 1)[1]}/*results*.json"))
                assert found, f"README: results land in {location}; nothing under {output}"
        else:
            assert "<" not in pattern, location
            assert list(sandbox.glob(f"{pattern}/*results*.json")), f"README: results land in {location}"
    assert "`results/local/`" in README and "--limit N --output_path P" in README
    assert list((tmp / "local" / "runs").glob("*.json")), "the README's --limit run is recorded in results/local/"


def _console_outputs() -> dict[str, dict]:
    """For console blocks: each command's first output line (up to a trailing `...`) and its exit status
    (2 when the line is an error, else 0)."""
    out = {}
    for language, body in fenced_blocks(README):
        if language != "console":
            continue
        lines = body.replace("\\\n", " ").splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ ") and i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
                shown = lines[i + 1].split("...", 1)[0].strip()
                out[re.sub(r"\s+", " ", line[2:].strip())] = {"output": shown,
                                                              "status": 2 if shown.startswith("error:") else 0}
    return out


def test_leaderboard_shown_is_the_commands_output_at_80_columns(sandbox, tmp_path):
    """The README's leaderboard block is, line for line, what its command prints at 80 columns with its
    output piped (a table, not a wrapped list), from the committed record; up to the block's `...`."""
    body = next(body for language, body in fenced_blocks(README)
                if language == "console" and body.startswith("$ merged-vlm leaderboard"))
    command, *shown = body.rstrip("\n").splitlines()
    result = _run(command[2:], sandbox, tmp_path, columns=80)
    assert result.returncode == 0, result.stderr
    printed = [line.rstrip() for line in result.stdout.splitlines()]
    assert all(len(line) <= 80 for line in printed)
    *exact, last = shown
    assert printed[:len(exact)] == exact, "\n".join(printed)
    assert last.endswith("...") and printed[len(exact)].startswith(last[:-3].rstrip()), printed[len(exact)]
    assert "Rows: highest reasoning average first (--sort)" in " ".join(printed), "the row order is stated"


def test_main_command_output_shown_is_what_the_committed_runs_give():
    """The demo's table and its last line, as the README shows them, from the committed full runs of the
    VLM alone and the merge (the same runs the demo makes)."""
    from harness_ext.cli.demo import reading

    block = next(body for language, body in fenced_blocks(README) if language == "" and "VLM vs merged" in body)
    verdicts = {}
    for path in (ROOT / "results" / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        name = record["variant"]["name"]
        if name in ("tiny-world-vlm-alone", "tiny-world"):
            verdicts[name] = {task: {s["doc_id"]: bool(s["correct"]) for s in result["samples"]}
                              for task, result in record["tasks"].items()}
    tasks = ["mvlm_probe_perception", "mvlm_probe_reasoning"]
    line = reading(tasks, verdicts["tiny-world-vlm-alone"], verdicts["tiny-world"])
    assert " ".join(line.split()) in " ".join(block.split())
    for name, label in (("tiny-world-vlm-alone", "VLM alone"), ("tiny-world", "merged")):
        scores = [100 * sum(verdicts[name][t].values()) / len(verdicts[name][t]) for t in tasks]
        row = next(r for r in block.splitlines() if r.lstrip("│ ").startswith(label))
        assert all(f"{score:.1f}" in row for score in scores), (row, scores)


def test_links_point_to_files_that_exist():
    links = re.findall(r"\]\(([^)#]+)\)", README)
    local = [link for link in links if not link.startswith("http")]
    assert local and all((ROOT / link).exists() for link in local), [l for l in local if not (ROOT / l).exists()]
