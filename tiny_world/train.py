"""Train the tiny-world family from a fixed seed (on CPU by default): base LLM -> reasoning LLM, base LLM -> VLM.

    python -m tiny_world.train --out models/tiny-world [--eval]
    python -m tiny_world.train --out DIR --set device='"cuda"'   # on a GPU: minutes, not bit-identical

Writes `base/`, `reasoning/` and `vlm/` (safetensors, tokenizer, processor), `training_log.jsonl`
(loss every few steps), `train_config.json` and, with --eval, `eval.json` (probe accuracies of the three
models, of the shipped merge recipe and of a merge sweep) and the model card `README.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import transformers as T
from mvlm_tasks.probe import Item

from tiny_world import build, data, scene_head
from tiny_world.data import Example


@dataclass(frozen=True)
class Stage:
    """One training run: optimisation settings and how many examples it draws."""

    steps: int
    batch: int
    lr: float
    examples: int  # size of the drawn training set (cycled through in seeded random order)
    warmup: int = 50
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 1234
    sizes: build.Sizes = build.Sizes()
    threads: int = 2
    device: str = "cpu"  # where training runs; the shipped family was trained on CPU
    dtype: str = "bfloat16"  # dtype of the saved checkpoints (weights train in float32)
    autocast: bool = False  # run forward passes under bfloat16 autocast (float32 weights and optimiser)
    length_groups: int = 1  # text stages: batches cut from pools of this many batches sorted by length
    base: Stage = Stage(steps=2500, batch=32, lr=2e-3, examples=40000, extra={"restate_share": 0.0})
    reasoning: Stage = Stage(steps=3000, batch=32, lr=1e-3, examples=40000,
                             extra={"replay": 0.2, "scratch_share": 0.3, "train_embeddings": False})
    vlm: Stage = Stage(steps=1500, batch=32, lr=1e-3, examples=40000,
                       extra={"lm_lr": 2e-4, "lm_frozen_steps": 0, "train_embeddings": False,
                              "vision_steps": 1500, "scene_weight": 1.0, "pair_share": 0.0,
                              "freeze_tower_in_joint": False})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Encoding


def _chat_prompt(tokenizer: T.PreTrainedTokenizerFast, example: Example) -> str:
    return tokenizer.apply_chat_template(example.messages, tokenize=False, add_generation_prompt=True)


def _response_ids(tokenizer: T.PreTrainedTokenizerFast, example: Example) -> tuple[list[int], list[int]]:
    """(untrained prefix ids, trained target ids + <|im_end|>)."""
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    prefix = tokenizer(example.prefix, add_special_tokens=False)["input_ids"] if example.prefix else []
    target = tokenizer(example.target, add_special_tokens=False)["input_ids"] + ([eos] if example.closed else [])
    return prefix, target


def encode_text(tokenizer: T.PreTrainedTokenizerFast, example: Example) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 where nothing is trained) of a text-only example."""
    if example.plain is not None:
        ids = tokenizer(example.plain, add_special_tokens=False)["input_ids"] + [tokenizer.pad_token_id]
        return ids, list(ids)
    prompt = tokenizer(_chat_prompt(tokenizer, example), add_special_tokens=False)["input_ids"]
    prefix, target = _response_ids(tokenizer, example)
    return prompt + prefix + target, [-100] * (len(prompt) + len(prefix)) + target


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of (ids, labels)."""
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


def encode_vlm_batch(processor: T.Qwen2VLProcessor, examples: list[Example]) -> dict[str, torch.Tensor]:
    """A right-padded image batch: the processor expands each image's tokens, responses are appended."""
    tokenizer = processor.tokenizer
    prompts = [_chat_prompt(tokenizer, ex) for ex in examples]
    vision = processor.image_processor(images=[ex.image for ex in examples], return_tensors="pt")
    merge = processor.image_processor.merge_size ** 2
    rows = []
    for prompt, example, grid in zip(prompts, examples, vision["image_grid_thw"]):
        expanded = prompt.replace("<|image_pad|>", "<|image_pad|>" * int(grid.prod() // merge))
        ids = tokenizer(expanded, add_special_tokens=False)["input_ids"]
        prefix, target = _response_ids(tokenizer, example)
        rows.append((ids + prefix + target, [-100] * (len(ids) + len(prefix)) + target))
    batch = collate(rows, tokenizer.pad_token_id)
    batch["mm_token_type_ids"] = (batch["input_ids"] == tokenizer.convert_tokens_to_ids("<|image_pad|>")).long()
    batch["pixel_values"] = vision["pixel_values"]
    batch["image_grid_thw"] = vision["image_grid_thw"]
    return batch


# ---------------------------------------------------------------------------------------------
# Optimisation


def lr_factor(step: int, stage: Stage) -> float:
    """Linear warmup, then cosine decay to `min_lr_ratio`."""
    if step < stage.warmup:
        return (step + 1) / stage.warmup
    progress = (step - stage.warmup) / max(1, stage.steps - stage.warmup)
    return stage.min_lr_ratio + (1 - stage.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def order(n: int, seed: int) -> Iterator[int]:
    """Indices 0..n-1 in a fresh seeded permutation per epoch, forever."""
    epoch = 0
    while True:
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        yield from torch.randperm(n, generator=generator).tolist()
        epoch += 1


def run_stage(name: str, model: torch.nn.Module, groups: list[dict[str, Any]], stage: Stage,
              batches: Callable[[], dict[str, torch.Tensor]], log: Callable[[dict[str, Any]], None],
              freeze_until: dict[int, int] | None = None, autocast: bool = False) -> float:
    """Train `model` for stage.steps steps of AdamW, batches moved to the model's device; returns seconds
    spent. `freeze_until` maps a parameter group index to the step before which that group's learning rate
    is 0; `autocast` runs the forward pass under bfloat16 autocast."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), weight_decay=stage.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    model.train()
    start = time.perf_counter()
    running, count = 0.0, 0
    for step in range(stage.steps):
        factor = lr_factor(step, stage)
        for i, (group, lr) in enumerate(zip(optimizer.param_groups, base_lrs)):
            frozen = freeze_until is not None and step < freeze_until.get(i, 0)
            group["lr"] = 0.0 if frozen else lr * factor
        batch = {key: value.to(device) for key, value in batches().items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        optimizer.step()
        running += float(loss.detach())
        count += 1
        if (step + 1) % 50 == 0 or step + 1 == stage.steps:
            record = {"stage": name, "step": step + 1, "loss": round(running / count, 5),
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - start, 1)}
            log(record)
            running, count = 0.0, 0
    model.eval()
    return time.perf_counter() - start


def _text_batches(tokenizer: T.PreTrainedTokenizerFast, examples: list[Example], batch: int, seed: int,
                  groups: int = 1) -> Callable[[], dict[str, torch.Tensor]]:
    """Batches in seeded random order. With `groups` > 1, each run of `groups` batches is drawn as one
    pool, sorted by length and cut into batches, which are then served in random order: less padding,
    the same examples per epoch."""
    encoded = [encode_text(tokenizer, ex) for ex in examples]
    indices = order(len(encoded), seed)
    shuffle = torch.Generator().manual_seed(seed)
    ready: list[list[int]] = []

    def next_batch() -> dict[str, torch.Tensor]:
        if groups == 1:
            return collate([encoded[next(indices)] for _ in range(batch)], tokenizer.pad_token_id)
        if not ready:
            pool = sorted((next(indices) for _ in range(batch * groups)), key=lambda i: len(encoded[i][0]))
            cuts = [pool[k * batch:(k + 1) * batch] for k in range(groups)]
            ready.extend(cuts[k] for k in torch.randperm(groups, generator=shuffle).tolist())
        return collate([encoded[i] for i in ready.pop()], tokenizer.pad_token_id)

    return next_batch


def _split_params(model: torch.nn.Module, train_embeddings: bool) -> list[torch.nn.Parameter]:
    """The trainable parameters of a language model; embeddings and lm_head stay frozen unless asked."""
    params = []
    for name, param in model.named_parameters():
        vocab = "embed_tokens" in name or "lm_head" in name
        param.requires_grad_(train_embeddings or not vocab)
        if param.requires_grad:
            params.append(param)
    return params


# ---------------------------------------------------------------------------------------------
# Stages


def train_base(config: TrainConfig, tokenizer: T.PreTrainedTokenizerFast, log) -> tuple[T.Qwen2ForCausalLM, float]:
    stage = config.base
    model = build.build_llm(config.sizes, tokenizer, config.seed).to(config.device)
    examples = data.base_examples(stage.examples, config.seed, stage.extra["restate_share"])
    batches = _text_batches(tokenizer, examples, stage.batch, config.seed, config.length_groups)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.ndim < 2]
    groups = [{"params": decay, "lr": stage.lr, "weight_decay": 0.01}, {"params": other, "lr": stage.lr,
                                                                         "weight_decay": 0.0}]
    seconds = run_stage("base", model, groups, stage, batches, log, autocast=config.autocast)
    return model, seconds


def train_reasoning(config: TrainConfig, base: T.Qwen2ForCausalLM, tokenizer: T.PreTrainedTokenizerFast, log
                    ) -> tuple[T.Qwen2ForCausalLM, float]:
    stage = config.reasoning
    model = T.Qwen2ForCausalLM(base.config)
    model.load_state_dict(base.state_dict())
    model.to(config.device)
    extra = stage.extra
    examples = data.reasoning_examples(stage.examples, config.seed + 1, extra["replay"], extra["scratch_share"])
    batches = _text_batches(tokenizer, examples, stage.batch, config.seed + 1, config.length_groups)
    params = _split_params(model, extra["train_embeddings"])
    seconds = run_stage("reasoning", model, [{"params": params, "lr": stage.lr}], stage, batches, log,
                        autocast=config.autocast)
    return model, seconds


def image_batches(processor: T.Qwen2VLProcessor, items: list[Item], labels: torch.Tensor, batch: int, order_seed: int,
                  example_seed: int, vision_only: bool) -> Callable[[], dict[str, torch.Tensor]]:
    """Batches of the VLM's training items in seeded random order, each with its scene labels: pixels only
    (`vision_only`, the scene-head stage) or whole training chats (the joint stage)."""
    indices = order(len(items), order_seed)

    def next_batch() -> dict[str, torch.Tensor]:
        chosen = [next(indices) for _ in range(batch)]
        if vision_only:
            encoded = dict(processor.image_processor(images=[items[i].image for i in chosen], return_tensors="pt"))
        else:
            encoded = encode_vlm_batch(processor, [data.vlm_example(items[i], i, example_seed) for i in chosen])
        return {**encoded, "scene_labels": labels[chosen]}

    return next_batch


def freeze_tower(vlm: T.Qwen2VLForConditionalGeneration) -> None:
    """Freeze the vision tower's patch embedding and blocks; its projector (`merger`) stays trainable."""
    for name, param in vlm.model.visual.named_parameters():
        param.requires_grad_(name.startswith("merger."))


def train_vlm(config: TrainConfig, base: T.Qwen2ForCausalLM, tokenizer: T.PreTrainedTokenizerFast, log
              ) -> tuple[T.Qwen2VLForConditionalGeneration, T.Qwen2VLProcessor, float]:
    """The VLM: its language model starts as the base LLM; the tower is first pretrained alone on the scene
    head (`vision_steps`), then the whole VLM trains on the language loss plus `scene_weight` x scene loss."""
    stage = config.vlm
    extra = stage.extra
    model, processor = build.build_vlm(config.sizes, tokenizer, config.seed + 2)
    build.copy_llm_into_vlm(model, base)
    seed = config.seed + 2
    items = data.vlm_items(stage.examples, seed, extra["pair_share"])
    labels = torch.tensor([scene_head.scene_labels(item) for item in items])
    supervised = scene_head.SceneSupervisedVLM(model, build.image_tokens(config.sizes), extra["scene_weight"])
    supervised.to(config.device)

    def batches(order_seed: int, vision_only: bool) -> Callable[[], dict[str, torch.Tensor]]:
        return image_batches(processor, items, labels, stage.batch, order_seed, seed, vision_only)

    vision = list(model.model.visual.parameters()) + list(supervised.head.parameters())
    seconds = 0.0
    if extra["vision_steps"]:
        supervised.vision_only = True
        pretrain = replace(stage, steps=extra["vision_steps"])
        seconds += run_stage("vlm-vision", supervised, [{"params": vision, "lr": stage.lr}], pretrain,
                             batches(seed + 1, vision_only=True), log, autocast=config.autocast)
        supervised.vision_only = False
    if extra["freeze_tower_in_joint"]:
        freeze_tower(model)
        vision = [p for p in vision if p.requires_grad]
    language = _split_params(model.model.language_model, extra["train_embeddings"])
    model.lm_head.weight.requires_grad_(extra["train_embeddings"])
    if extra["train_embeddings"]:
        language.append(model.lm_head.weight)
    groups = [{"params": vision, "lr": stage.lr}, {"params": language, "lr": extra["lm_lr"]}]
    seconds += run_stage("vlm", supervised, groups, stage, batches(seed, vision_only=False), log,
                         freeze_until={1: extra["lm_frozen_steps"]}, autocast=config.autocast)
    return supervised.detach(), processor, seconds


# ---------------------------------------------------------------------------------------------
# Driver


def train_all(config: TrainConfig, out: Path, stages: tuple[str, ...] = ("base", "reasoning", "vlm"),
              quiet: bool = False) -> dict[str, Any]:
    """Train the requested stages into `out` (a missing earlier stage is loaded from `out`)."""
    torch.set_num_threads(config.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, config.dtype)
    log_path = out / "training_log.jsonl"
    timings: dict[str, float] = {}

    def log(record: dict[str, Any]) -> None:
        with log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if not quiet:
            print(json.dumps(record), flush=True)

    start = time.perf_counter()
    if "base" in stages:
        log_path.write_text("")
        tokenizer = build.train_tokenizer(data.tokenizer_corpus(config.seed), config.sizes.vocab)
        base, timings["base"] = train_base(config, tokenizer, log)
        build.save_llm(base, tokenizer, out / "base", dtype)
    else:
        tokenizer = T.AutoTokenizer.from_pretrained(out / "base")
        base = T.Qwen2ForCausalLM.from_pretrained(out / "base", dtype=torch.float32)
    if "reasoning" in stages:
        reasoning, timings["reasoning"] = train_reasoning(config, base, tokenizer, log)
        build.save_llm(reasoning, tokenizer, out / "reasoning", dtype)
    if "vlm" in stages:
        vlm, processor, timings["vlm"] = train_vlm(config, base, tokenizer, log)
        build.save_vlm(vlm, processor, out / "vlm", dtype)
    timings["total"] = time.perf_counter() - start
    summary = {"config": config.as_dict(), "stages": list(stages),
               "seconds": {k: round(v, 1) for k, v in timings.items()},
               "torch": torch.__version__, "transformers": T.__version__}
    existing = json.loads((out / "train_config.json").read_text()) if (out / "train_config.json").exists() else {}
    if set(stages) != {"base", "reasoning", "vlm"} and existing:
        existing.setdefault("partial_runs", []).append(summary)
        summary = existing
    build.write_json(out / "train_config.json", summary)
    return summary


def parse_overrides(pairs: list[str], config: TrainConfig) -> TrainConfig:
    """`stage.field=value` or `stage.extra.key=value` overrides (values parsed as JSON)."""
    for pair in pairs:
        key, raw = pair.split("=", 1)
        value = json.loads(raw)
        parts = key.split(".")
        if parts[0] == "sizes":
            config = replace(config, sizes=replace(config.sizes, **{parts[1]: value}))
        elif len(parts) == 1:
            config = replace(config, **{parts[0]: value})
        else:
            stage = getattr(config, parts[0])
            if parts[1] == "extra":
                stage = replace(stage, extra={**stage.extra, parts[2]: value})
            else:
                stage = replace(stage, **{parts[1]: value})
            config = replace(config, **{parts[0]: stage})
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/tiny-world"))
    parser.add_argument("--stages", default="base,reasoning,vlm", help="comma-separated subset, in order")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.FIELD=JSON",
                        help="override a config field, e.g. vlm.steps=500 or reasoning.extra.replay=0.1")
    parser.add_argument("--eval", action="store_true", help="evaluate the three models and the recipe's merge")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = parse_overrides(args.set, TrainConfig())
    summary = train_all(config, args.out, tuple(args.stages.split(",")), quiet=args.quiet)
    print(json.dumps(summary["seconds"]))
    if args.eval:
        from tiny_world import card, evaluate

        results = evaluate.evaluate_family(args.out, sweep=evaluate.SWEEP)
        build.write_json(args.out / "eval.json", results)
        card.main([str(args.out)])
        print(json.dumps(evaluate.summary_table(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
