"""Build the official-verdict evidence files from checkouts of the official benchmark repositories.

Reads the real model responses and the verdicts the official pipelines gave them, and writes the
compact, data-only files under benchmarks/official_evidence/ (see its README for sources, licences
and the development / held-out split, which is fixed here by model, before any rule was tuned):

    python benchmarks/build_official_evidence.py --mathvista PATH/MathVista --mathvision PATH/MATH-V

PATH/MathVista is a checkout of github.com/lupantech/MathVista (results/*/output_*.json,
data/testmini.json, data/query.json); PATH/MATH-V one of github.com/mathllm/MATH-V (outputs/**/*.jsonl,
data/test.jsonl). Nothing of their code is used: only their data files are read.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "official_evidence"

# MathVista results/<folder>/output_<name>.json. The 2-shot *code* runs are left out (their verdicts
# come from executing generated programs, not from reading an answer); random/frequent guesses and
# the leaderboard template are not model responses.
MATHVISTA_DEV = ("bard", "chatgpt", "chatgpt_2shot_solution", "claude_2shot_solution_use_ocr",
                 "gpt4_2shot_solution", "idefics_9b_instruct", "llava_llama_2_13b", "minigpt4_llama2",
                 "mplugowl_7b_ft")
MATHVISTA_HELDOUT = ("gpt4", "claude", "chatgpt_2shot_solution_use_ocr", "claude_2shot_solution",
                     "gpt4_2shot_solution_use_ocr", "instruct_blip2_vicuna_13b", "llama_adapter_v2", "llavar")

# MATH-V outputs/**/<name>.jsonl (Random-Chance is not a model).
MATHVISION_DEV = ("ChatGPT3.5-CoT (Text+Image Caption)", "Gemini-Pro-CoT", "InternLM-XComposer2-VL",
                  "LLaVA-v1.5-13B", "Qwen-VL-Max", "SPHINX-v2", "ShareGPT4V-7B")
MATHVISION_HELDOUT = ("GPT4-CoT (Text Only)", "Gemini-Pro", "InternLM-XComposer2-VL-CoT", "LLaVA-v1.5-7B",
                      "Qwen-VL-Max-CoT", "Qwen-VL-Plus", "SPHINX-MoE", "ShareGPT4V-13B")


def mathvision_sampled(item_id: str) -> bool:
    """The MATH-V items kept (every even id: 1520 of 3040), to keep the file small."""
    return int(item_id) % 2 == 0


def _write_jsonl_gz(path: Path, rows: Iterable[dict]) -> int:
    count = 0
    partial = path.with_name(path.name + ".partial")
    with gzip.GzipFile(partial, "wb", compresslevel=9, mtime=0) as raw:
        for row in rows:
            raw.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
            count += 1
    partial.replace(path)
    return count


def _mathvista_rows(repo: Path) -> tuple[list[dict], list[dict]]:
    items = json.loads((repo / "data" / "testmini.json").read_text(encoding="utf-8"))
    queries = json.loads((repo / "data" / "query.json").read_text(encoding="utf-8"))
    item_rows = [
        {"pid": pid, "question": item["question"], "choices": item["choices"], "unit": item["unit"],
         "precision": item["precision"], "answer": item["answer"], "question_type": item["question_type"],
         "answer_type": item["answer_type"], "category": item["metadata"]["category"],
         "task": item["metadata"]["task"], "query": queries[pid]}
        for pid, item in sorted(items.items(), key=lambda kv: int(kv[0]))
    ]
    responses = []
    for split, models in (("dev", MATHVISTA_DEV), ("heldout", MATHVISTA_HELDOUT)):
        for model in models:
            (path,) = (repo / "results").glob(f"*/output_{model}.json")
            outputs = json.loads(path.read_text(encoding="utf-8"))
            for pid, out in sorted(outputs.items(), key=lambda kv: int(kv[0])):
                if "true_false" not in out:  # never scored by the official pipeline (2 chatgpt items)
                    continue
                responses.append({"model": model, "split": split, "pid": pid, "response": out["response"],
                                  "extraction": out.get("extraction"), "prediction": out.get("prediction"),
                                  "true_false": bool(out["true_false"])})
    return item_rows, responses


def _mathvision_rows(repo: Path) -> tuple[list[dict], list[dict]]:
    lines = (repo / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    item_rows = [
        {"id": item["id"], "question": item["question"], "options": item["options"], "answer": item["answer"],
         "subject": item["subject"], "level": item["level"]}
        for item in items if mathvision_sampled(item["id"])
    ]
    responses = []
    for split, models in (("dev", MATHVISION_DEV), ("heldout", MATHVISION_HELDOUT)):
        for model in models:
            (path,) = (repo / "outputs").glob(f"**/{model}.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                out = json.loads(line)
                if mathvision_sampled(out["id"]):
                    responses.append({"model": model, "split": split, "id": out["id"],
                                      "response": out["response"], "model_answer": out["model_answer"],
                                      "correct": bool(out["correct"])})
    responses.sort(key=lambda r: (r["split"], r["model"], int(r["id"])))
    return item_rows, responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mathvista", type=Path, required=True, help="checkout of lupantech/MathVista")
    parser.add_argument("--mathvision", type=Path, required=True, help="checkout of mathllm/MATH-V")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (items, responses) in (("mathvista", _mathvista_rows(args.mathvista)),
                                     ("mathvision", _mathvision_rows(args.mathvision))):
        print(f"{name}: {_write_jsonl_gz(OUT / f'{name}_items.jsonl.gz', items)} items, "
              f"{_write_jsonl_gz(OUT / f'{name}_responses.jsonl.gz', responses)} responses")


if __name__ == "__main__":
    main()
