"""A fast greedy evaluation of the tiny-world family on the probe (the lmms-eval task's prompts and
scoring), and merges of its VLM with its reasoning LLM.

    python -m tiny_world.evaluate --models models/tiny-world [--sweep] [--out FILE]

Items are `mvlm_tasks.probe.generate_probe` (the evaluation set the shipped parquet holds). Images go to
the VLM with the item's question; text-only models get `text_question` (the same content in words).
Prompts are `mvlm_tasks.suite.probe.doc_to_text`, scoring is `mvlm_tasks.suite.probe.process_results`,
decoding is greedy with the task's 32 new tokens, and the system prompt is lmms-eval's Qwen2-VL
default unless `system_prompt=None`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import torch
import transformers as T
from mvlm_tasks.probe import Item, generate_probe
from mvlm_tasks.suite.probe import doc_to_text, process_results

from harness_ext.generation import conversation, generate
from merge_models import shipped
from tiny_world.data import SYSTEM_PROMPT, description

MAX_NEW_TOKENS = 32  # the probe task's generation_kwargs
RECIPE = shipped.recipe("tiny-world")


def _doc(item: Item) -> dict[str, Any]:
    return {"id": item.id, "split": item.split, "category": item.category, "question": item.question,
            "answer": item.answer, "answer_type": item.answer_type, "choices": list(item.choices)}


def load_llm(path: Path) -> tuple[T.PreTrainedModel, T.PreTrainedTokenizerFast]:
    model = T.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = T.AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    return model, tokenizer


def load_vlm(path: Path) -> tuple[T.PreTrainedModel, Any]:
    model = T.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    processor = T.AutoProcessor.from_pretrained(path)
    processor.tokenizer.padding_side = "left"
    return model, processor


def _answers(model, processor, chats: list[list[dict[str, Any]]], batch_size: int, max_new_tokens: int) -> list[str]:
    """Greedy answers (stripped), `batch_size` chats per `harness_ext.generation.generate` call."""
    answers: list[str] = []
    for start in range(0, len(chats), batch_size):
        batch = generate(model, processor, chats[start:start + batch_size], {"max_new_tokens": max_new_tokens})
        answers += [answer.strip() for answer in batch]
    return answers


def answer_text(model, tokenizer, prompts: list[str], system_prompt: str | None = SYSTEM_PROMPT,
                batch_size: int = 50, max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy answers of a text-only model to user prompts."""
    chats = [conversation([], prompt, system_prompt) for prompt in prompts]
    return _answers(model, tokenizer, chats, batch_size, max_new_tokens)


def answer_images(model, processor, prompts: list[str], images: list[Any],
                  system_prompt: str | None = SYSTEM_PROMPT, batch_size: int = 50,
                  max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy answers of a VLM to (image, prompt) pairs."""
    chats = [conversation([image], prompt, system_prompt) for prompt, image in zip(prompts, images)]
    return _answers(model, processor, chats, batch_size, max_new_tokens)


def states_facts(item: Item, answer: str) -> bool:
    """Whether `answer` opens with the item's scene description, word for word: the model said what the
    image shows before answering (every tiny-world model is trained to)."""
    return answer.startswith(description(item))


def score(items: list[Item], answers: list[str]) -> dict[str, Any]:
    """Accuracy overall and per category, scored exactly as the lmms-eval probe task scores; `facts`, the
    % of answers that state the scene's facts right (`states_facts`), which separates misreading from
    miscomputing; and the per-item verdicts in item order ("1" correct, "0" wrong)."""
    per: dict[str, list[bool]] = defaultdict(list)
    flat, facts = [], []
    for item, answer in zip(items, answers):
        correct = bool(process_results(_doc(item), [answer])["mvlm_acc"]["correct"])
        per[item.category].append(correct)
        flat.append(correct)
        facts.append(states_facts(item, answer))
    return {"acc": round(100 * sum(flat) / len(flat), 1),
            "by_category": {k: round(100 * sum(v) / len(v), 1) for k, v in per.items()}, "n": len(flat),
            "facts": round(100 * sum(facts) / len(facts), 1), "verdicts": "".join("1" if c else "0" for c in flat)}


def probe_items(split: str, n: int | None = None) -> list[Item]:
    return generate_probe(split) if n is None else generate_probe(split, n)


def eval_text_model(model, tokenizer, splits: Iterable[str] = ("perception", "reasoning"), n: int | None = None,
                    system_prompt: str | None = SYSTEM_PROMPT, samples: int = 0) -> dict[str, Any]:
    """A text-only LLM on the items' `text_question`s."""
    out: dict[str, Any] = {}
    for split in splits:
        items = probe_items(split, n)
        prompts = [doc_to_text({"question": it.text_question, "answer_type": it.answer_type}) for it in items]
        answers = answer_text(model, tokenizer, prompts, system_prompt)
        out[split] = score(items, answers)
        if samples:
            out[split]["samples"] = [[it.text_question, it.answer, a] for it, a in zip(items[:samples], answers)]
    return out


def eval_vlm_model(model, processor, splits: Iterable[str] = ("perception", "reasoning"), n: int | None = None,
                   system_prompt: str | None = SYSTEM_PROMPT, samples: int = 0) -> dict[str, Any]:
    """A VLM on the items' images and questions (the lmms-eval probe task)."""
    out: dict[str, Any] = {}
    for split in splits:
        items = probe_items(split, n)
        prompts = [doc_to_text(_doc(it)) for it in items]
        answers = answer_images(model, processor, prompts, [it.image for it in items], system_prompt)
        out[split] = score(items, answers)
        if samples:
            out[split]["samples"] = [[it.question, it.answer, a] for it, a in zip(items[:samples], answers)]
    return out


# ---------------------------------------------------------------------------------------------
# Merges


def family_recipe(models: Path, recipe: str | Path = RECIPE, **fields: Any) -> dict[str, Any]:
    """`recipe` (default: the shipped tiny-world recipe) pointed at the family in `models`, with
    `fields` overriding recipe fields (`vlm_weight`, `llm_weight`, `llm_density` set the models'
    weight and density; a None value removes a field)."""
    from merge_models.recipe import read_recipe_document

    models = Path(models).resolve()
    doc = read_recipe_document(recipe)
    doc["vlm"] = {**_as_ref(doc["vlm"]), "model": str(models / "vlm")}
    doc["base"] = {**_as_ref(doc.get("base", "")), "model": str(models / "base")}
    doc["sources"] = [{**_as_ref(doc["sources"][0]), "model": str(models / "reasoning")}]
    targets = {"vlm_weight": (doc["vlm"], "weight"), "llm_weight": (doc["sources"][0], "weight"),
               "llm_density": (doc["sources"][0], "density")}
    for key, value in fields.items():
        where, name = targets.get(key, (doc, key))
        if value is None:
            where.pop(name, None)
        else:
            where[name] = value
    return doc


def _as_ref(ref: Any) -> dict[str, Any]:
    return dict(ref) if isinstance(ref, dict) else {"model": ref}


def merged_vlm(recipe: dict[str, Any] | str | Path, overrides: dict[str, Any] | None = None):
    """The merged VLM (float32, in memory) and its processor, for a recipe mapping or file."""
    from harness_ext.loading import merge_into_model
    from merge_models.plan import build_plan
    from merge_models.recipe import apply_overrides, load_recipe, parse_recipe

    if isinstance(recipe, dict):
        parsed = parse_recipe(apply_overrides(recipe, overrides or {}))
    else:
        parsed = load_recipe(recipe, overrides)
    plan = build_plan(parsed)
    try:
        model, processor = load_vlm(plan.vlm.path)
        merge_into_model(plan, model)
    finally:
        plan.close()
    return model.to(torch.float32).eval(), processor


TASK_ARITHMETIC = {"method": "task_arithmetic", "vlm_weight": 1.0}
SWEEP: list[tuple[str, dict[str, Any]]] = (
    [(f"linear vlm_weight={a}", {"method": "linear", "vlm_weight": a, "llm_weight": round(1 - a, 2)})
     for a in (0.9, 0.7, 0.5)]
    + [(f"task_arithmetic llm_weight={w}", {**TASK_ARITHMETIC, "llm_weight": w}) for w in (0.25, 0.5, 0.75, 1.0, 1.25)]
    + [("ties density=0.5", {**TASK_ARITHMETIC, "method": "ties", "llm_weight": 1.0, "density": 0.5}),
       ("task_arithmetic llm_weight=1.0 layers=[2,3]", {**TASK_ARITHMETIC, "llm_weight": 1.0, "layers": [2, 3]})]
)


def evaluate_family(models: Path, n: int | None = None, sweep: list[tuple[str, dict[str, Any]]] | None = None,
                    recipe: Path | None = RECIPE, samples: int = 4) -> dict[str, Any]:
    """Accuracies of base / reasoning (text questions), VLM (images), `recipe`'s merge and a sweep,
    all on the family in `models` (the recipe's model paths are replaced by the family's)."""
    models = Path(models)
    results: dict[str, Any] = {"n_per_split": n or 200}
    timer = time.perf_counter()
    for name in ("base", "reasoning"):
        model, tokenizer = load_llm(models / name)
        results[f"{name} (text)"] = eval_text_model(model, tokenizer, n=n, samples=samples)
    model, processor = load_vlm(models / "vlm")
    results["vlm"] = eval_vlm_model(model, processor, n=n, samples=samples)
    if recipe is not None:
        model, processor = merged_vlm(family_recipe(models, recipe))
        results["recipe"] = eval_vlm_model(model, processor, n=n, samples=samples)
    for label, fields in sweep or []:
        model, processor = merged_vlm(family_recipe(models, recipe or RECIPE, **fields))
        results[label] = eval_vlm_model(model, processor, n=n, samples=samples)
    results["seconds"] = round(time.perf_counter() - timer, 1)
    return results


def summary_table(results: dict[str, Any]) -> dict[str, str]:
    """One line per model: perception / reasoning accuracy, the % of answers stating the right facts per
    split, and the per-category numbers."""
    lines = {}
    for name, value in results.items():
        if isinstance(value, dict) and "perception" in value:
            p, r = value["perception"], value["reasoning"]
            cats = " ".join(f"{k}={v:g}" for k, v in {**p["by_category"], **r["by_category"]}.items())
            lines[name] = f"P {p['acc']:5.1f}  R {r['acc']:5.1f}  facts P {p['facts']:5.1f} R {r['facts']:5.1f}  | {cats}"
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate the tiny-world family and merges on the probe.")
    parser.add_argument("--models", type=Path, default=shipped.tiny_world())
    parser.add_argument("--n", type=int, default=None, help="items per split (default: the full 200)")
    parser.add_argument("--sweep", action="store_true", help="also evaluate the default merge sweep")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    results = evaluate_family(args.models, args.n, SWEEP if args.sweep else None, args.recipe)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary_table(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
