"""merged_vlm under the real lmms-eval CLI, merged_lm under the real lm-eval CLI, and loading behaviour.

The CLI runs are started together once per module (each pays lmms-eval's import time) and the
tests read what they wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_checkpoints import FAMILIES, linear_recipe, vlm_args

from harness_ext.generation import conversation, generate
from harness_ext.loading import load_merged_vlm
from harness_ext.model_options import VLM_OPTIONS, split_model_args
from merge_models.plan import build_plan
from merge_models.recipe import load_recipe

BIN = Path(sys.executable).parent
LIMIT = "4"


def _samples(folder: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for file in folder.glob("*/*samples_*.jsonl"):
        task = file.name.split("samples_")[1].rsplit(".", 1)[0]
        for line in file.read_text().splitlines():
            sample = json.loads(line)
            out[(task, sample["doc_id"])] = sample
    return out


def _results(folder: Path) -> dict:
    files = list(folder.glob("*/*results*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny LLaVA trio and its recipe, a shared cache, and an environment for subprocesses."""
    from tiny_checkpoints import build_family

    root = tmp_path_factory.mktemp("harness")
    family = build_family("llava", root)
    recipe = root / "tiny-llava.yaml"
    recipe.write_text(yaml.safe_dump(linear_recipe(family.vlm, family.reasoning, name="tiny-llava")))
    env = dict(os.environ, MERGED_VLM_CACHE=str(root / "cache"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    return {"root": root, "recipe": recipe, "env": env, "family": family,
            "hash": build_plan(load_recipe(recipe)).recipe_hash}


def _start(world, name: str, command: list[str]) -> subprocess.Popen:
    log = open(world["root"] / f"{name}.log", "w")
    return subprocess.Popen(command, env=world["env"], stdout=log, stderr=subprocess.STDOUT, cwd=world["root"])


def _finish(world, processes: dict[str, subprocess.Popen]) -> dict[str, tuple[int, str]]:
    done = {}
    for name, process in processes.items():
        code = process.wait(timeout=900)
        done[name] = (code, (world["root"] / f"{name}.log").read_text())
    return done


@pytest.fixture(scope="module")
def runs(world):
    """All CLI runs of this module: merged_vlm chat (saving the merge), simple, lm-eval, data parallel;
    then lmms-eval's built-in llava_hf on the saved checkpoint."""
    root, recipe = world["root"], world["recipe"]
    lmms = [str(BIN / "lmms_eval"), "--tasks", "mvlm_probe", "--limit", LIMIT, "--log_samples"]
    first = {
        "chat": _start(world, "chat", lmms + ["--model", "merged_vlm", "--output_path", str(root / "out-chat"),
                                              "--model_args", f"recipe={recipe},quiet=true,save_merged={root / 'saved'}"]),
        "lm_eval": _start(world, "lm_eval", [str(BIN / "lm_eval"), "--model", "merged_lm", "--model_args",
                                             f"recipe={recipe}", "--tasks", "mvlm_text_probe_reasoning",
                                             "--include_path", str(Path(__file__).parents[1] / "harness_ext" /
                                                                   "lm_eval_tasks"),
                                             "--limit", LIMIT, "--output_path", str(root / "out-lm"),
                                             "--log_samples"]),
    }
    done = _finish(world, first)
    second = {
        "simple": _start(world, "simple", lmms + ["--model", "merged_vlm", "--force_simple", "--output_path",
                                                  str(root / "out-simple"), "--model_args",
                                                  f"recipe={recipe},quiet=true"]),
        "builtin": _start(world, "builtin", lmms + ["--model", "llava_hf", "--output_path", str(root / "out-builtin"),
                                                    "--model_args", f"pretrained={root / 'saved'},device=cpu,device_map=cpu"]),
    }
    done.update(_finish(world, second))
    return done


def test_merged_vlm_chat_run_records_recipe_and_hash(world, runs):
    code, log = runs["chat"]
    assert code == 0, log[-3000:]
    assert "Loading weights" not in log, "quiet=true: no transformers loading bar"
    folder = world["root"] / "out-chat"
    assert [p.name for p in folder.iterdir()] == [f"tiny-llava-{world['hash']}"], "folder named after recipe+hash"
    results = _results(folder)
    record = results["merged_vlm"]
    assert record["recipe_hash"] == world["hash"]
    assert record["recipe"]["method"] == "linear" and record["recipe"]["vlm"]["weight"] == 0.9
    assert set(record["inputs"]) == {"vlm", "sources[0]"}
    assert {"mvlm_probe_perception", "mvlm_probe_reasoning"} <= set(results["results"])
    samples = _samples(folder)
    assert len(samples) == 2 * int(LIMIT)
    assert all("extracted" in s["mvlm_acc"] for s in samples.values()), "per-sample verdicts are logged"


def test_limited_merged_vlm_runs_are_recorded_in_the_local_store(world, runs):
    """`lmms_eval --model merged_vlm ... --limit N --output_path P` records the run in results/local/, as the
    README says of exploratory runs; lm-eval's own command records nothing."""
    records = [json.loads(p.read_text()) for p in (world["root"] / "results/local/runs").glob("*.json")]
    assert sorted(r["harness"]["limit"] for r in records) == [float(LIMIT)] * 2, records
    assert {r["variant"]["recipe_hash"] for r in records} == {world["hash"]}
    assert "recorded: " in runs["chat"][1] and "recorded: " not in runs["lm_eval"][1]


def test_merged_vlm_simple_run_is_a_cache_hit(world, runs):
    code, log = runs["simple"]
    assert code == 0, log[-3000:]
    assert "(cache hit): the cache entry holds" in log and "0 tensors merged" not in log
    load = _results(world["root"] / "out-simple")["merged_vlm"]["load"]
    assert load["how"] == "cache hit" and load["merged_tensors"] > 0  # what the entry holds, not "nothing merged"


def test_same_generations_as_lmms_eval_builtin_on_saved_checkpoint(world, runs):
    assert runs["builtin"][0] == 0, runs["builtin"][1][-3000:]
    ours, builtin = _samples(world["root"] / "out-chat"), _samples(world["root"] / "out-builtin")
    assert ours.keys() == builtin.keys() and len(ours) == 2 * int(LIMIT)
    for key in ours:
        assert ours[key]["filtered_resps"] == builtin[key]["filtered_resps"], key


def test_merged_lm_runs_under_lm_eval(world, runs):
    code, log = runs["lm_eval"]
    assert code == 0, log[-3000:]
    assert "`pretrained` model kwarg is not of type" not in log, "HFLM's in-memory warning is not for users"
    assert "Loading weights" not in log, "merged_lm is quiet by default"
    results = _results(world["root"] / "out-lm")
    assert [p.name for p in (world["root"] / "out-lm").iterdir()] == [f"tiny-llava-{world['hash']}"]
    assert results["config"]["merged_vlm"]["recipe_hash"] == world["hash"]
    assert "mvlm_text_probe_reasoning" in results["results"]
    assert len(list((world["root"] / "out-lm").glob("*/samples_*.jsonl"))) == 1


@pytest.mark.parametrize("model_args,expected", [
    ("recipe={recipe},lamda=0.5", "unknown argument 'lamda'"),
    ("recipe={root}/missing.yaml", "recipe field 'recipe': no file"),
    ("recipe={recipe},method=ties", "recipe field 'base'"),
    ("lambda=0.5", "needs recipe="),
])
def test_bad_model_args_fail_fast_and_write_nothing(world, model_args, expected):
    out = world["root"] / "out-bad"
    args = model_args.format(recipe=world["recipe"], root=world["root"])
    result = subprocess.run([str(BIN / "lmms_eval"), "--model", "merged_vlm", "--model_args", args, "--tasks",
                             "mvlm_probe", "--output_path", str(out)], env=world["env"], capture_output=True,
                            text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and expected in lines[0], lines
    assert not out.exists()


def test_data_parallel_merges_once(world, tmp_path):
    """Two CPU ranks: one merges into the cache, the other waits on the lock and loads the result."""
    env = dict(world["env"], MERGED_VLM_CACHE=str(tmp_path / "cache"))
    command = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29531",
               "-m", "harness_ext.lmms_eval_cli", "--model", "merged_vlm", "--model_args",
               f"recipe={world['recipe']},quiet=true", "--tasks", "mvlm_probe_perception", "--limit", LIMIT,
               "--output_path", str(tmp_path / "out"), "--log_samples"]
    # from tmp_path: its --limit run is recorded in ./results/local, which must not be the checkout's
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert list((tmp_path / "results/local/runs").glob("*.json")), "recorded in the local store of the folder run from"
    assert log.count("(merged into the cache)") == 1 and log.count("(cache hit)") == 1, log[-3000:]
    assert len(_samples(tmp_path / "out")) == int(LIMIT)


def test_second_load_is_a_cache_hit_without_merge_work(world, monkeypatch):
    first = load_merged_vlm(vlm_args(world["recipe"]), "cpu")
    assert first.stats["how"] == "merged into the cache"

    import merge_models.cache as cache

    monkeypatch.setattr(cache, "write_checkpoint", lambda *a, **k: pytest.fail("a cache hit must not merge"))
    second = load_merged_vlm(vlm_args(world["recipe"]), "cpu")
    assert second.stats == {**second.stats, "how": "cache hit", "merged_tensors": first.stats["merged_tensors"]}
    assert second.record["recipe_hash"] == first.record["recipe_hash"]
    changed = split_model_args({"recipe": str(world["recipe"]), "lambda": 0.5}, VLM_OPTIONS, "merged_vlm")
    assert build_plan(changed.recipe).recipe_hash != first.record["recipe_hash"]


@pytest.mark.parametrize("family_name", sorted(FAMILIES))
def test_every_family_generates_the_same_in_memory_and_from_cache(family_name, tiny_family, write_recipe):
    from PIL import Image

    family = tiny_family(family_name)
    recipe = write_recipe({"vlm": {"model": str(family.vlm), "weight": 0.7},
                           "sources": [{"model": str(family.reasoning), "weight": 0.3}], "method": "linear"})
    image_a, image_b = Image.new("RGB", (56, 56), (200, 30, 30)), Image.new("RGB", (80, 40), (20, 200, 30))
    chats = [conversation([image_a], "What number is shown?"), conversation([image_a, image_b], "Compare them."),
             conversation([], "Hello there.")]
    answers = []
    for cache in (True, False):
        loaded = load_merged_vlm(vlm_args(recipe, cache=cache), "cpu")
        answers.append(generate(loaded.model, loaded.processor, chats, {"max_new_tokens": 6, "until": ["\n\n"]}))
    assert answers[0] == answers[1]
    assert all(answer for answer in answers[0])
