"""Tiny-world training speed: seconds per step of each stage under each speed switch, against the default
configuration measured in the same run, and the whole schedule projected from them.

Stages timed through `tiny_world.train.run_stage` (the real training loop), starting from the
shipped base checkpoint: a text stage (the base corpus; the reasoning stage has the same shape), the
vision tower's scene-head stage and the joint VLM stage. Switches (`TrainConfig` fields):
  autocast                    bfloat16 autocast of the forward pass (float32 weights)
  length_groups=8             text batches cut from pools of 8 batches sorted by length (less padding)
  freeze_tower_in_joint       the tower's patch embedding and blocks frozen in the joint stage
The first `--skip` steps of every measurement are warm-up and are not counted. Accuracy is not measured
here: see the README's tiny-world section for what each switch cost in trained families.

    python benchmarks/tiny_world_train_bench.py [--steps 24] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers as T

from tiny_world import build, data, scene_head, train

ROOT = Path(__file__).resolve().parents[1]


def seconds_per_step(model: torch.nn.Module, params: list[torch.nn.Parameter], batches: Callable[[], dict],
                     steps: int, skip: int, autocast: bool) -> float:
    """Mean seconds of the last `steps - skip` of `steps` training steps."""
    times: list[float] = []
    last = time.perf_counter()

    def log(record: dict[str, Any]) -> None:
        pass

    def timed_batches() -> dict[str, torch.Tensor]:
        nonlocal last
        now = time.perf_counter()
        times.append(now - last)
        last = now
        return batches()

    stage = train.Stage(steps=steps, batch=32, lr=1e-4, examples=0, warmup=1)
    train.run_stage("bench", model, [{"params": params, "lr": 1e-4}], stage, timed_batches, log, autocast=autocast)
    times.append(time.perf_counter() - last)
    counted = times[skip + 1:]  # times[0] is before the first step; times[i] ends step i
    return sum(counted) / len(counted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "tiny-world")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--skip", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = train.TrainConfig()
    tokenizer = T.AutoTokenizer.from_pretrained(args.models / "base")

    def base_model() -> T.Qwen2ForCausalLM:
        return T.Qwen2ForCausalLM.from_pretrained(args.models / "base", dtype=torch.float32)

    text = data.base_examples(4000, config.seed)
    rows: dict[str, dict[str, float]] = {"text (base, reasoning)": {}, "scene head": {}, "joint VLM": {}}
    for name, groups, autocast in [("default", 1, False), ("autocast", 1, True), ("length_groups=8", 8, False),
                                   ("autocast + length_groups=8", 8, True)]:
        model = base_model()
        batches = train._text_batches(tokenizer, text, 32, config.seed, groups)
        rows["text (base, reasoning)"][name] = seconds_per_step(model, list(model.parameters()), batches,
                                                               args.steps, args.skip, autocast)
        print(name, "text", round(rows["text (base, reasoning)"][name], 3), flush=True)

    items = data.vlm_items(32 * args.steps * 3, config.seed)
    labels = torch.tensor([scene_head.scene_labels(item) for item in items])

    def vlm() -> tuple[scene_head.SceneSupervisedVLM, T.Qwen2VLProcessor]:
        model, processor = build.build_vlm(config.sizes, tokenizer, config.seed + 2)
        build.copy_llm_into_vlm(model, base_model())
        return scene_head.SceneSupervisedVLM(model, build.image_tokens(config.sizes), 1.0), processor

    for item in items:  # drawn once up front (cached), so no measurement pays for drawing
        _ = item.image
    for name, autocast, frozen in [("default", False, False), ("autocast", True, False),
                                   ("freeze_tower_in_joint", False, True), ("autocast + freeze_tower_in_joint", True, True)]:
        model, processor = vlm()
        pixels, chats = (train.image_batches(processor, items, labels, 32, config.seed, config.seed, vision_only)
                         for vision_only in (True, False))
        if not frozen:
            model.vision_only = True
            params = list(model.vlm.model.visual.parameters()) + list(model.head.parameters())
            rows["scene head"][name] = seconds_per_step(model, params, pixels, args.steps, args.skip, autocast)
            model.vision_only = False
        else:
            train.freeze_tower(model.vlm)
        params = [p for p in model.parameters() if p.requires_grad]
        rows["joint VLM"][name] = seconds_per_step(model, params, chats, args.steps, args.skip, autocast)
        print(name, "joint", round(rows["joint VLM"][name], 3), flush=True)

    print(f"\nseconds per step, {args.threads} threads, batch 32 (ratio: default / switch, >1 is faster)")
    for stage, timings in rows.items():
        default = timings["default"]
        cells = ", ".join(f"{name} {t:.3f} s ({default / t:.2f}x)" for name, t in timings.items() if name != "default")
        print(f"  {stage:24s} default {default:.3f} s; {cells}")
    schedule = {"text": config.base.steps + config.reasoning.steps, "scene": config.vlm.extra["vision_steps"],
                "joint": config.vlm.steps}

    def minutes(text_key: str, scene_key: str, joint_key: str) -> float:
        seconds = (schedule["text"] * rows["text (base, reasoning)"][text_key]
                   + schedule["scene"] * rows["scene head"][scene_key] + schedule["joint"] * rows["joint VLM"][joint_key])
        return seconds / 60

    print(f"\ndefault schedule ({schedule['text']} text, {schedule['scene']} scene-head, {schedule['joint']} joint "
          "steps), training loops only:")
    print(f"  default switches: {minutes('default', 'default', 'default'):.0f} min")
    print(f"  every switch on:  {minutes('autocast + length_groups=8', 'autocast', 'autocast + freeze_tower_in_joint'):.0f}"
          " min")


if __name__ == "__main__":
    main()
