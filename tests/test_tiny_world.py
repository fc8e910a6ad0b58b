"""The shipped tiny-world checkpoints: they load with the Auto classes, generate, and behave as trained.

Fast: a few probe items per model (the full numbers are in models/tiny-world/eval.json and the slow
test retrains and re-evaluates everything).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers as T
from mvlm_tasks.probe import PERCEPTION_CATEGORIES, generate_probe
from mvlm_tasks.probe.text_reasoning import operand_key

from tiny_world import data, evaluate

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "tiny-world"
RECIPE = ROOT / "recipes" / "tiny-world.yaml"
N = 24  # items per split in the quick checks (categories take turns: 6 per category)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shipped_eval() -> dict:
    return json.loads((MODELS / "eval.json").read_text())


@pytest.mark.parametrize("name", ["base", "reasoning"])
def test_llms_load_and_generate(name):
    path = MODELS / name
    assert (path / "model.safetensors").stat().st_size < 16 * 2**20
    model = T.AutoModelForCausalLM.from_pretrained(path)
    tokenizer = T.AutoTokenizer.from_pretrained(path)
    assert isinstance(model, T.Qwen2ForCausalLM)
    answers = evaluate.answer_text(model.float(), tokenizer, ["What is 12 plus 30?\nAnswer with a single integer."])
    assert "Answer:" in answers[0], answers  # the trained answer format


def test_vlm_loads_with_auto_classes_and_generates():
    model = T.AutoModelForImageTextToText.from_pretrained(MODELS / "vlm")
    processor = T.AutoProcessor.from_pretrained(MODELS / "vlm")
    assert isinstance(model, T.Qwen2VLForConditionalGeneration)
    item = generate_probe("perception", 1)[0]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item.question}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[item.image], return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 64  # 7-px patches, 2x2 merge
    output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    text = processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    assert "Answer:" in text, text  # the trained answer format


def test_family_shares_one_vocabulary_and_language_architecture():
    base = T.AutoConfig.from_pretrained(MODELS / "base")
    reasoning = T.AutoConfig.from_pretrained(MODELS / "reasoning")
    vlm = T.AutoConfig.from_pretrained(MODELS / "vlm").text_config
    for key in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
                "num_key_value_heads", "vocab_size"):
        assert getattr(base, key) == getattr(reasoning, key) == getattr(vlm, key), key
    tokenizers = [T.AutoTokenizer.from_pretrained(MODELS / name) for name in ("base", "reasoning", "vlm")]
    assert tokenizers[0].get_vocab() == tokenizers[1].get_vocab() == tokenizers[2].get_vocab()
    assert tokenizers[0].tokenize("123") == ["1", "2", "3"]


def _agreement(fresh: dict, recorded: dict) -> float:
    verdicts = fresh["verdicts"]
    return sum(a == b for a, b in zip(verdicts, recorded["verdicts"])) / len(verdicts)


def test_shipped_models_reproduce_their_recorded_verdicts(shipped_eval):
    """The first items of each split, re-evaluated, agree with eval.json item by item (batches of a
    different make-up may flip a rare near-tie, hence not exact equality)."""
    reasoning, tokenizer = evaluate.load_llm(MODELS / "reasoning")
    vlm, processor = evaluate.load_vlm(MODELS / "vlm")
    merged, _ = evaluate.merged_vlm(RECIPE)
    checks = [("reasoning (text)", evaluate.eval_text_model(reasoning, tokenizer, n=N)),
              ("vlm", evaluate.eval_vlm_model(vlm, processor, n=N)),
              ("recipe", evaluate.eval_vlm_model(merged, processor, n=N))]
    for name, fresh in checks:
        for split in ("perception", "reasoning"):
            assert _agreement(fresh[split], shipped_eval[name][split]) >= 0.9, (name, split)


def test_recorded_accuracies_show_what_each_model_learned(shipped_eval):
    """Reasoning fine-tuning taught arithmetic (text items, against the base); the VLM names colours
    above chance (4 choices) and reads most words; every recorded entry covers the full splits."""
    text_reasoning = shipped_eval["reasoning (text)"]["reasoning"]["acc"]
    assert text_reasoning >= shipped_eval["base (text)"]["reasoning"]["acc"] + 15
    assert shipped_eval["vlm"]["perception"]["by_category"]["colour"] > 25
    assert shipped_eval["vlm"]["perception"]["by_category"]["read_word"] > 50
    for entry in shipped_eval.values():
        if isinstance(entry, dict) and "perception" in entry:
            assert entry["perception"]["n"] == entry["reasoning"]["n"] == shipped_eval["n_per_split"]
            assert len(entry["reasoning"]["verdicts"]) == entry["reasoning"]["n"]


def test_facts_measure_separates_misreading_from_miscomputing():
    """Facts and answer are judged apart: the scene's facts word for word with a wrong answer is facts
    right, answer wrong; a misread number with the right answer is the reverse; `facts` is a percent."""
    items = generate_probe("reasoning", 4)[:3]  # sum, difference, larger: two-number scenes
    right_facts = data.answer_text(data.description(items[0]), "0")
    left = items[1].operands[0]
    misread = data.answer_text(data.description(items[1]).replace(f"{left} on the left", f"{left + 1} on the left"),
                               items[1].answer)
    scored = evaluate.score(items, [right_facts, misread, data.answer_text(data.description(items[2]), items[2].answer)])
    assert [evaluate.states_facts(i, a) for i, a in zip(items, [right_facts, misread])] == [True, False]
    assert scored["facts"] == pytest.approx(100 * 2 / 3, abs=0.1)
    assert scored["verdicts"] == "011"


def test_training_data_keeps_the_roles_apart():
    """VLM data: perception categories only; reasoning data: no evaluation operand pair; no eval scene."""
    items = data.vlm_items(400, 7)
    assert {item.category for item in items} == set(PERCEPTION_CATEGORIES)
    eval_scenes = {item.scene for split in ("perception", "reasoning") for item in generate_probe(split)}
    assert not eval_scenes & {item.scene for item in items}
    examples = data.reasoning_examples(400, 7, replay=0.2, scratch_share=0.3)
    eval_keys = {operand_key(i.category, i.operands) for i in generate_probe("reasoning")}
    problems = data.generate_text_reasoning(400, 7)
    assert not eval_keys & {operand_key(p.category, p.operands) for p in problems}
    assert all("Answer:" in ex.target or ex.plain for ex in examples)


def test_variant_knobs_restate_facts_and_read_pairs_without_arithmetic():
    """restate_share: reasoning questions whose trained target is only the facts (the answer stays
    untrained, the turn open); pair_share: one number of a two-number scene. Both off by default."""
    assert all(ex.closed for ex in data.base_examples(200, 7))
    restated = [ex for ex in data.base_examples(200, 7, restate_share=0.5) if not ex.closed]
    assert len(restated) > 50
    for example in restated:
        assert example.target.startswith("The image shows") and "Answer" not in example.target
        assert example.target in example.messages[-1]["content"]
    assert {item.category for item in data.vlm_items(40, 7)} == set(PERCEPTION_CATEGORIES)
    pairs = [item for item in data.vlm_items(40, 7, pair_share=0.25) if item.category == "read_pair"]
    assert len(pairs) == 10
    for item in pairs:
        left, right = re.search(r"(\d+) on the left and (\d+) on the right", item.text_question).groups()
        assert item.answer == (left if "on the left" in item.question else right)
        assert item.text_question.endswith(item.question) and item.operands == ()


def test_length_groups_serve_every_example_once_per_epoch_with_less_padding():
    """length_groups: the same examples per epoch as plain batching, cut into batches of similar length."""
    from tiny_world import train

    tokenizer = T.AutoTokenizer.from_pretrained(MODELS / "base")
    examples = data.base_examples(64, 7)

    def epoch(groups: int) -> tuple[list[list[int]], int]:
        batches = train._text_batches(tokenizer, examples, 8, 7, groups)
        served = [batches() for _ in range(8)]
        rows = [row[mask.bool()].tolist() for batch in served for row, mask in zip(batch["input_ids"],
                                                                                   batch["attention_mask"])]
        return sorted(rows), sum(int((b["attention_mask"] == 0).sum()) for b in served)

    plain_rows, plain_padding = epoch(1)
    grouped_rows, grouped_padding = epoch(8)
    assert grouped_rows == plain_rows == sorted(train.encode_text(tokenizer, ex)[0] for ex in examples)
    assert grouped_padding < plain_padding / 2


def test_frozen_tower_switch_trains_the_projector_but_not_the_tower(tmp_path):
    """freeze_tower_in_joint (with autocast on): after the joint stage the tower's patch embedding and
    blocks are as they started (no scene-head stage here), while its projector has moved."""
    from tiny_world import build, train

    config = train.parse_overrides(
        [f"{stage}.{key}={value}" for stage in ("base", "vlm") for key, value in
         (("steps", 3), ("examples", 48), ("batch", 4), ("warmup", 1))]
        + ["vlm.extra.vision_steps=0", "vlm.extra.freeze_tower_in_joint=true", "autocast=true", "length_groups=2",
           "sizes.hidden=64", "sizes.intermediate=128", "sizes.vision_hidden=32", "sizes.vision_depth=1"],
        train.TrainConfig())
    train.train_all(config, tmp_path, stages=("base", "vlm"), quiet=True)
    tokenizer = T.AutoTokenizer.from_pretrained(tmp_path / "base")
    start, _ = build.build_vlm(config.sizes, tokenizer, config.seed + 2)
    trained = T.Qwen2VLForConditionalGeneration.from_pretrained(tmp_path / "vlm", dtype=torch.float32)
    before = {k: v.to(torch.bfloat16) for k, v in start.model.visual.state_dict().items()}
    after = {k: v.to(torch.bfloat16) for k, v in trained.model.visual.state_dict().items()}
    tower = [k for k in before if not k.startswith("merger.")]
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("merger."))


def test_training_script_runs_every_stage_and_writes_a_card(tmp_path):
    """A few steps of each stage on a shrunken family: checkpoints, log, evaluation and card."""
    from tiny_world import build, card, train

    config = train.parse_overrides(
        [f"{stage}.{key}={value}" for stage in ("base", "reasoning", "vlm")
         for key, value in (("steps", 3), ("examples", 64), ("batch", 4), ("warmup", 1))]
        + ["vlm.extra.vision_steps=3", "sizes.hidden=64", "sizes.intermediate=128", "sizes.vision_hidden=32",
           "sizes.vision_depth=1"],
        train.TrainConfig())
    summary = train.train_all(config, tmp_path, quiet=True)
    assert set(summary["seconds"]) == {"base", "reasoning", "vlm", "total"}
    log = [json.loads(line) for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log] == [("base", 3), ("reasoning", 3), ("vlm-vision", 3), ("vlm", 3)]
    assert T.AutoConfig.from_pretrained(tmp_path / "vlm").text_config.hidden_size == 64
    results = evaluate.evaluate_family(tmp_path, n=4, sweep=evaluate.SWEEP[:1], samples=0)
    build.write_json(tmp_path / "eval.json", results)
    text = card.render(tmp_path)
    assert "| reasoning | 3 | 4 |" in text and "merged: linear vlm_weight=0.9" in text


def test_shipped_card_is_what_the_recorded_files_render_and_keeps_its_research_log():
    """models/tiny-world/README.md is card.render of the folder: the recorded numbers cannot drift, and
    rendering again keeps the hand-written research log below the marker."""
    from tiny_world import card

    text = (MODELS / "README.md").read_text()
    assert card.render(MODELS) == text
    assert text.count(card.LOG_MARKER) == 1 and "## Research log" in text.split(card.LOG_MARKER)[1]


@pytest.mark.slow
def test_retraining_from_scratch_reproduces_the_shipped_accuracies(tmp_path, shipped_eval):
    """The training script, default config and seed, reproduces eval.json within a few points.

    Takes about 72 minutes on 2 otherwise idle CPU cores (measured: training base 16, reasoning 18, VLM 39).
    """
    from tiny_world import train

    train.main(["--out", str(tmp_path), "--quiet"])
    fresh = evaluate.evaluate_family(tmp_path, samples=0)  # the shipped recipe, on the fresh family
    for model in ("base (text)", "reasoning (text)", "vlm", "recipe"):
        for split in ("perception", "reasoning"):
            assert fresh[model][split]["acc"] == pytest.approx(shipped_eval[model][split]["acc"], abs=6), (model, split)


def test_scene_labels_name_what_is_drawn():
    """The tower's auxiliary targets: characters of each text mark left to right, shape kind, colour, count."""
    from mvlm_tasks.probe import generate_training_items

    from tiny_world import scene_head

    none_char = len(scene_head.CHARACTERS)
    for item in generate_training_items("perception", 40, 3) + generate_training_items("sum", 10, 3):
        labels = scene_head.scene_labels(item)
        assert len(labels) == len(scene_head.LABEL_SIZES)
        assert all(0 <= label < size for label, size in zip(labels, scene_head.LABEL_SIZES))
        chars = "".join(scene_head.CHARACTERS[c] for c in labels[:10] if c != none_char)
        words = item.text_question.split(".")[0]
        if item.category in ("read_word", "sum"):
            assert chars and all(ch in words for ch in chars)
        if item.category == "count":
            count, colour = item.text_question.split()[3:5]
            assert labels[-1] == int(count) and scene_head.COLOURS[labels[-2]] == colour
        if item.category == "colour":
            assert scene_head.COLOURS[labels[-2]] == item.text_question.split()[4]
    pair = generate_training_items("sum", 1, 5)[0]
    left, right = pair.operands
    labels = scene_head.scene_labels(pair)
    decode = lambda slot: "".join(scene_head.CHARACTERS[c] for c in slot if c != none_char)
    assert (decode(labels[:5]), decode(labels[5:10])) == (str(left), str(right))


def test_scene_head_is_dropped_from_the_saved_vlm(tmp_path):
    """Training wraps the VLM with a scene head; what is saved is a plain Qwen2-VL (no head weights)."""
    from tiny_world import build, scene_head

    sizes = build.Sizes(hidden=64, intermediate=128, vision_hidden=32, vision_depth=1)
    tokenizer = T.AutoTokenizer.from_pretrained(MODELS / "base")
    vlm, processor = build.build_vlm(sizes, tokenizer, 0)
    wrapped = scene_head.SceneSupervisedVLM(vlm, build.image_tokens(sizes), 1.0)
    wrapped.vision_only = True
    item = data.vlm_items(2, 9)
    batch = dict(processor.image_processor(images=[i.image for i in item], return_tensors="pt"))
    loss = wrapped(scene_labels=torch.tensor([scene_head.scene_labels(i) for i in item]), **batch).loss
    loss.backward()
    assert loss.item() > 0 and vlm.model.visual.patch_embed.proj.weight.grad is not None
    bare = wrapped.detach()
    build.save_vlm(bare, processor, tmp_path / "vlm", torch.float32)
    reloaded = T.AutoModelForImageTextToText.from_pretrained(tmp_path / "vlm")
    assert set(reloaded.state_dict()) == set(bare.state_dict())
    assert not any("head." in key and "lm_head" not in key for key in reloaded.state_dict())
