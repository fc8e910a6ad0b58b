"""Training examples of the three tiny-world stages, all drawn from seeded generators.

Every answer has one shape: the facts first, then the answer (`<facts> Answer: <answer>`). The facts are
the scene description the probe uses for its text-only twin ("The image shows two numbers: 17 on the left
and 25 on the right."). The VLM learns to write them from the image (perception); the reasoning LLM
learns to compute an answer from them (reasoning); so a merged model can read the image with the
VLM's weights and compute with the LLM's, through text both understand.

- base: text-only "reading" questions about a described scene (the description is in the prompt; the
  answer is copied from it: no arithmetic, no comparison) and counting sequences.
- reasoning: `mvlm_tasks.probe.generate_text_reasoning` problems (add, subtract, compare, multiply),
  plain or worded like the probe's text questions, plus a share of base data (replay).
- vlm: `mvlm_tasks.probe.generate_training_items("perception")` images (read a number or word, name a
  colour, count shapes): no arithmetic anywhere.

Prompts are exactly the probe task's (`mvlm_tasks.suite.probe.doc_to_text`: question plus the
answer-format instruction), with or without lmms-eval's default system prompt.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Any

from mvlm_tasks.probe import Item, TextProblem, generate_text_reasoning, generate_training_items
from mvlm_tasks.probe.items import DIFFERENCE_QUESTION, LARGER_QUESTION, SUM_QUESTION
from mvlm_tasks.probe.rng import Rng
from mvlm_tasks.suite.probe import doc_to_text
from PIL import Image

SYSTEM_PROMPT = "You are a helpful assistant."  # lmms-eval's default for Qwen2-VL
SYSTEM_SHARE = 0.5  # share of training chats that carry the system prompt (merged_vlm sends none)
PAIR_QUESTIONS = (SUM_QUESTION, DIFFERENCE_QUESTION, LARGER_QUESTION)


@dataclass(frozen=True)
class Example:
    """One training chat: the prompt messages, an untrained response prefix, the trained response."""

    messages: list[dict[str, Any]]
    target: str
    prefix: str = ""
    image: Image.Image | None = None
    plain: str | None = None  # a plain text document instead of a chat (trained on every token)
    closed: bool = True  # the target ends the turn (<|im_end|> trained); False leaves what follows untrained


def prompt_text(question: str, answer_type: str) -> str:
    """The probe task's prompt for a question (see mvlm_tasks.suite.probe.doc_to_text)."""
    return doc_to_text({"question": question, "answer_type": answer_type})


def answer_text(facts: str, answer: str) -> str:
    return f"{facts} Answer: {answer}" if facts else f"Answer: {answer}"


def description(item: Item) -> str:
    """The scene description the item's text question starts with."""
    assert item.text_question.endswith(item.question), item.id
    return item.text_question[: len(item.text_question) - len(item.question)].strip()


def chat(user: list[dict[str, Any]] | str, rng: Rng) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if rng.randint(0, 999) < SYSTEM_SHARE * 1000:
        messages.append({"role": "system", "content": SYSTEM_PROMPT})
    messages.append({"role": "user", "content": user})
    return messages


def text_reading(item: Item, rng: Rng) -> Example:
    """A perception item as text: the description is given, the answer is read off it."""
    user = prompt_text(item.text_question, item.answer_type)
    return Example(chat(user, rng), answer_text(description(item), item.answer))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """The image after a JPEG round trip (lmms-eval's Qwen2-VL backends send JPEG, quality 85)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def image_reading(item: Item, rng: Rng) -> Example:
    """A perception item with its image: the model states what it sees, then answers. Half of the
    images go through JPEG at a random quality, so both PIL and JPEG-encoding evaluators see familiar
    pixels."""
    user = [{"type": "image"}, {"type": "text", "text": prompt_text(item.question, item.answer_type)}]
    image = item.image if rng.randint(0, 1) else jpeg(item.image, rng.randint(60, 95))
    return Example(chat(user, rng), answer_text(description(item), item.answer), image=image)


def restating(item: Item, rng: Rng) -> Example:
    """A reasoning item as text, trained only to restate the described facts (the answer is not trained):
    a base that reads back what it is told whatever the question asks, never computing."""
    return Example(chat(prompt_text(item.text_question, item.answer_type), rng), description(item), closed=False)


def pair_reading(item: Item, rng: Rng) -> Item:
    """A two-number scene asked for one of its numbers (reading, no arithmetic)."""
    side = ("left", "right")[rng.randint(0, 1)]
    question = f"What is the number on the {side} in the image?"
    value = item.operands[0 if side == "left" else 1]
    return replace(item, id=f"{item.id}-{side}", category="read_pair", question=question, answer=str(value),
                   answer_type="integer", text_question=f"{description(item)} {question}", operands=())


def counting(rng: Rng) -> Example:
    """A counting sequence such as "Count: 12 13 14 15." (number order, no arithmetic questions)."""
    start, length = rng.randint(0, 95), rng.randint(3, 8)
    numbers = " ".join(str(n) for n in range(start, min(start + length, 100)))
    return Example([], "", plain=f"Count: {numbers}.")


def split_problem(problem: TextProblem) -> tuple[str, str]:
    """(facts, question) of a probe-worded problem; ("", question) for a plain one."""
    text = problem.question
    if text.startswith("The image shows"):
        cut = text.index(". ") + 1
        return text[:cut], text[cut:].strip()
    return "", text


def reasoning(problem: TextProblem, rng: Rng, scratch_share: float) -> Example:
    """A text arithmetic problem. Probe-worded ones restate the facts before the answer; with probability
    `scratch_share` the facts are only in the response (given, not trained): "compute from what you
    have written so far"."""
    facts, question = split_problem(problem)
    if facts and rng.randint(0, 999) < scratch_share * 1000:
        return Example(chat(prompt_text(question, "integer"), rng), f" Answer: {problem.answer}", prefix=facts)
    return Example(chat(prompt_text(problem.question, "integer"), rng), answer_text(facts, problem.answer))


def base_examples(n: int, seed: int, restate_share: float = 0.0) -> list[Example]:
    """The base LLM's corpus: 85% text reading questions, 15% counting sequences; with `restate_share`,
    that share of the reading questions is replaced by reasoning questions trained only to restate facts."""
    items = generate_training_items("perception", n, seed)
    n_restate = int(n * restate_share)
    restated = generate_training_items("reasoning", n_restate, seed + 3) if n_restate else []
    examples = []
    for i, item in enumerate(items):
        rng = Rng(f"tiny-world/base/{seed}/{i}")
        if rng.randint(0, 99) < 15:
            examples.append(counting(rng))
        elif i < n_restate:
            examples.append(restating(restated[i], rng))
        else:
            examples.append(text_reading(item, rng))
    return examples


def reasoning_examples(n: int, seed: int, replay: float, scratch_share: float) -> list[Example]:
    """The reasoning fine-tune: text arithmetic problems, plus `replay` share of base-style reading."""
    n_replay = int(n * replay)
    problems = generate_text_reasoning(n - n_replay, seed)
    examples = [reasoning(p, Rng(f"tiny-world/reasoning/{seed}/{i}"), scratch_share) for i, p in enumerate(problems)]
    replayed = generate_training_items("perception", n_replay, seed + 1) if n_replay else []
    examples += [text_reading(item, Rng(f"tiny-world/replay/{seed}/{i}")) for i, item in enumerate(replayed)]
    order = sorted(range(len(examples)), key=lambda i: Rng(f"tiny-world/shuffle/{seed}/{i}").randint(0, 1 << 30))
    return [examples[i] for i in order]


def vlm_items(n: int, seed: int, pair_share: float = 0.0) -> list[Item]:
    """The VLM's perception training items (no arithmetic; disjoint from the evaluation scenes); with
    `pair_share`, that share reads one number of a two-number scene."""
    n_pairs = int(n * pair_share)
    pairs = generate_training_items("sum", n_pairs, seed + 5) if n_pairs else []
    read = [pair_reading(item, Rng(f"tiny-world/pair/{seed}/{i}")) for i, item in enumerate(pairs)]
    return generate_training_items("perception", n - n_pairs, seed) + read


def vlm_example(item: Item, index: int, seed: int) -> Example:
    return image_reading(item, Rng(f"tiny-world/vlm/{seed}/{index}"))


def tokenizer_corpus(seed: int) -> list[str]:
    """Text for training the BPE: every phrasing the three stages and the probe use."""
    from mvlm_tasks.probe.items import count_times_question
    from mvlm_tasks.probe.scenes import WORDS

    lines = [SYSTEM_PROMPT] * 50
    for item in generate_training_items("perception", 4000, seed):
        lines.append(prompt_text(item.text_question, item.answer_type) + " " + answer_text(description(item), item.answer))
    for problem in generate_text_reasoning(2000, seed):
        lines.append(prompt_text(problem.question, "integer") + " Answer: " + problem.answer)
    lines += [q for q in PAIR_QUESTIONS for _ in range(50)]
    lines += [count_times_question(m) for m in range(2, 10) for _ in range(10)]
    lines += [" ".join(WORDS)] * 50
    lines += ["user assistant system"] * 200
    return lines
