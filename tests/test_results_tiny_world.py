"""The shipped tiny world through the results layer, in a scratch repository holding a copy of it:
`merged-vlm demo` records the VLM alone and the merge as two runs of `merged_vlm` with their own names, in
the local store, portably; `merged-vlm submit` writes a bundle whose Reproduce command, run as written in
the bundle's folder, gives the bundle's scores and answers."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LIMIT = 2


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> dict:
    """A git-like folder with the tiny world and its recipe, after `merged-vlm demo --limit 2` ran in it."""
    root = tmp_path_factory.mktemp("repo")
    (root / ".git").mkdir()
    for model in ("vlm", "base", "reasoning"):
        shutil.copytree(ROOT / "models/tiny-world" / model, root / "models/tiny-world" / model)
    (root / "recipes").mkdir()
    shutil.copy(ROOT / "recipes/tiny-world.yaml", root / "recipes")
    env = {k: v for k, v in os.environ.items() if k not in ("MERGED_VLM_RESULTS", "MERGED_VLM_LOCAL_RESULTS")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", MERGED_VLM_CACHE=str(root.parent / "cache"),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    demo = subprocess.run([str(BIN / "merged-vlm"), "demo", "--recipe", "recipes/tiny-world.yaml", "--limit",
                           str(LIMIT)], cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    return {"root": root, "env": env}


def _cli(repo: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "merged-vlm"), *args], cwd=cwd or repo["root"], env=repo["env"],
                          capture_output=True, text=True, timeout=600, check=False)


def _records(repo: dict) -> dict[str, dict]:
    files = sorted((repo["root"] / "results/local/runs").glob("*.json"))
    return {(record := json.loads(path.read_text()))["variant"]["name"]: record for path in files}


def test_demo_records_the_vlm_alone_and_the_merge_apart(repo):
    records = _records(repo)
    assert set(records) == {"tiny-world-vlm-alone", "tiny-world"}, "two names, in the local store"
    assert not (repo["root"] / "results/runs").exists()
    alone, merged = records["tiny-world-vlm-alone"], records["tiny-world"]
    assert alone["variant"]["baseline"] and not merged["variant"]["baseline"]
    for record in records.values():
        assert record["harness"]["model"] == "merged_vlm" and record["harness"]["batch_size"] == 8
        assert record["harness"]["model_args"].startswith("recipe=recipes/tiny-world.yaml")
        assert record["merge"]["recipe_file"] == "recipes/tiny-world.yaml"
        assert record["variant"]["recipe"]["vlm"]["model"] == "models/tiny-world/vlm"
        base = next(m for m in record["models"] if m["role"] == "base")
        assert base["model"] == "models/tiny-world/base" and len(base["identity"]["content_sha256"]) == 64
        assert str(repo["root"]) not in json.dumps(record) and str(ROOT) not in json.dumps(record)
    assert alone["harness"]["model_args"] == ("recipe=recipes/tiny-world.yaml,modules=[],"
                                              "name=tiny-world-vlm-alone")
    compared = _cli(repo, "compare", "tiny-world-vlm-alone", "tiny-world", "--iterations", "200")
    assert compared.returncode == 0, compared.stderr


def _moved(repo: dict, tmp_path: Path) -> tuple[Path, Path, str]:
    """The bundle `submit` wrote, moved to another folder, and a copy of the checkout's checkpoints under a
    different folder name; with the reproduce command `submit` printed."""
    submitted = _cli(repo, "submit", "tiny-world", "--out", "submission", "--force")
    assert submitted.returncode == 0, submitted.stderr
    [printed] = [line.split(": ", 1)[1] for line in submitted.stdout.splitlines() if line.startswith("reproduce it")]
    bundle = tmp_path / "elsewhere" / "moved-bundle"
    shutil.copytree(repo["root"] / "submission", bundle)
    checkout = tmp_path / "renamed-checkout"
    shutil.copytree(repo["root"] / "models", checkout / "models")
    return bundle, checkout, printed.replace("submission", str(bundle), 1)


def test_moved_bundle_reproduces_its_scores_with_the_command_it_prints(repo, tmp_path):
    bundle, checkout, command = _moved(repo, tmp_path)
    recipe = (bundle / "recipe.yaml").read_text()
    assert "model: models/tiny-world/vlm" in recipe and ".." not in recipe, recipe
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "merged-vlm reproduce BUNDLE --out out" in card and "From the root of a merged-vlm checkout" in card
    [harness] = [line for line in card.splitlines() if line.startswith("lmms_eval ")]
    assert "--model merged_vlm --model_args recipe=recipe.yaml " in harness and f"--limit {LIMIT}" in harness
    for path in bundle.rglob("*"):
        if path.is_file():
            assert str(repo["root"]) not in path.read_text() and str(ROOT) not in path.read_text(), path
    run = subprocess.run(shlex.split(command), cwd=checkout, env=repo["env"], capture_output=True, text=True,
                         timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = run.stdout + run.stderr
    assert "(cache hit): the cache entry holds" in log and "0 tensors merged" not in log
    [results_file] = (checkout / "out").rglob("*_results.json")
    bundled = json.loads((bundle / "results.json").read_text())
    assert results_file.parent.name == f"tiny-world-{bundled['merged_vlm']['recipe_hash']}"
    expected = bundled["results"]
    reproduced = json.loads(results_file.read_text())["results"]
    for task, scores in expected.items():
        assert reproduced[task]["mvlm_acc,none"] == scores["mvlm_acc,none"], task
        answers = [json.loads(line) for line in (bundle / f"predictions/{task}.jsonl").read_text().splitlines()]
        [log_file] = results_file.parent.glob(f"*_samples_{task}.jsonl")
        again = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert [a["response"] for a in answers] == [a["filtered_resps"][0] if isinstance(a["filtered_resps"], list)
                                                     else a["filtered_resps"] for a in again]


def test_bundle_refuses_a_checkpoint_whose_digest_differs(repo, tmp_path):
    _bundle, checkout, command = _moved(repo, tmp_path)
    config = checkout / "models/tiny-world/reasoning/config.json"
    config.write_text(config.read_text() + "\n")
    run = subprocess.run(shlex.split(command), cwd=checkout, env=repo["env"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    [line] = (run.stdout + run.stderr).strip().splitlines()
    assert line.startswith("error: recipe.yaml sources[0]: models/tiny-world/reasoning has content_sha256"), line
    assert not (checkout / "out").exists()
