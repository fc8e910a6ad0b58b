"""The tiny-world model card (`README.md` next to the checkpoints), rendered from what training and
evaluation recorded (`train_config.json`, `eval.json`), so the card cannot drift from the files. The
research log below LOG_MARKER is hand-written and kept as it is when the card is rendered again.

    python -m tiny_world.card models/tiny-world
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LOG_MARKER = "<!-- Research log: hand-written below this line, kept when the card is rendered again. -->"
ROWS = [("base (text)", "base LLM, text questions"), ("reasoning (text)", "reasoning LLM, text questions"),
        ("vlm", "VLM, images"), ("recipe", "merged (recipes/tiny-world.yaml), images")]


def accuracy_table(results: dict[str, Any]) -> str:
    """Markdown table: perception and reasoning probe accuracy of each model, the % of its answers that
    state the scene's facts right, then the sweep rows."""
    lines = ["| model | perception | reasoning | facts right (perception / reasoning) | by category (perception; reasoning) |",
             "|---|---:|---:|---:|---|"]
    names = [(key, label) for key, label in ROWS if key in results]
    names += [(key, f"merged: {key}") for key, value in results.items()
              if isinstance(value, dict) and "perception" in value and key not in dict(ROWS)]
    for key, label in names:
        value = results[key]
        categories = "; ".join(", ".join(f"{k} {v:g}" for k, v in value[split]["by_category"].items())
                               for split in ("perception", "reasoning"))
        facts = f"{value['perception']['facts']:.1f} / {value['reasoning']['facts']:.1f}"
        lines.append(f"| {label} | {value['perception']['acc']:.1f} | {value['reasoning']['acc']:.1f} | {facts} | {categories} |")
    return "\n".join(lines)


def research_log(folder: Path) -> str:
    """The hand-written part of the family's existing card, from LOG_MARKER on ("" when there is none)."""
    card = Path(folder) / "README.md"
    text = card.read_text() if card.exists() else ""
    return text[text.index(LOG_MARKER):] if LOG_MARKER in text else ""


def render(folder: Path) -> str:
    """The card's markdown for a trained family folder: what was recorded, then the research log."""
    folder = Path(folder)
    log = research_log(folder)
    training = json.loads((folder / "train_config.json").read_text())
    results = json.loads((folder / "eval.json").read_text())
    config, seconds = training["config"], training["seconds"]
    sizes = config["sizes"]
    stage_lines = "\n".join(
        f"| {name} | {config[name]['steps']} | {config[name]['batch']} | {config[name]['lr']:g} | "
        f"{seconds.get(name, float('nan')) / 60:.1f} |" for name in ("base", "reasoning", "vlm"))
    return f"""# tiny-world: a trained base LLM, reasoning LLM and Qwen2-VL, small enough to ship

Made by `python -m tiny_world.train --out models/tiny-world --eval` (seed {config['seed']},
torch {training['torch']}, transformers {training['transformers']}).
Every example is drawn from seeded generators in `tiny_world/data.py`; the evaluation
items (`mvlm_tasks.probe`) are excluded from training by scene and by operands.

| folder | class | trained on |
|---|---|---|
| `base/` | `Qwen2ForCausalLM` | text: scene descriptions and questions answered by copying from them, counting sequences |
| `reasoning/` | `Qwen2ForCausalLM`, fine-tuned from `base/` | text: add, subtract, compare, multiply problems (plus {config['reasoning']['extra']['replay']:.0%} replay of base data) |
| `vlm/` | `Qwen2VLForConditionalGeneration`, language model initialised from `base/` | images: read the number or word, name the colour, count the shapes; no arithmetic |

Language model: hidden {sizes['hidden']}, {sizes['layers']} layers, {sizes['heads']} heads ({sizes['kv_heads']} KV),
MLP {sizes['intermediate']}; vision tower: {sizes['vision_depth']} blocks of width {sizes['vision_hidden']}, {sizes['vision_patch']}-px patches
merged {sizes['vision_merge']}x{sizes['vision_merge']} into image tokens. The tower is first pretrained alone for
{config['vlm']['extra']['vision_steps']} steps on an auxiliary scene head (`tiny_world/scene_head.py`: the characters,
shape kind, colour and count drawn in each training image), then the VLM trains on its answers with that
head's loss added (weight {config['vlm']['extra']['scene_weight']:g}); the head is dropped before saving. One byte-level
BPE vocabulary with single-digit tokens is shared by all three. Embeddings and `lm_head` are frozen after
the base stage, so the recipe's default exclusion of them loses nothing. Every answer states the facts
and then the answer (`The image shows ... Answer: 42`): the VLM learns to write the facts from the
image, the reasoning LLM to compute from them.

| stage | steps | batch | learning rate | minutes |
|---|---:|---:|---:|---:|
{stage_lines}

Training times are wall-clock minutes as recorded; see `train_config.json` for every setting.
{training.get('note', '')}

## Probe accuracy (%, {results.get('n_per_split', 200)} items per split, greedy, scored like `mvlm_probe_*`)

Text models answer the items' text twins (the scene described in words); the VLM and merges see the image.

{accuracy_table(results)}
""" + (f"\n{log}" if log else "")


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["models/tiny-world"])[0])
    (folder / "README.md").write_text(render(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
