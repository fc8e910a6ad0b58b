"""Evaluation and training sets: determinism, sizes, category balance and train/eval separation."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import pytest
from mvlm_tasks.probe import (
    PERCEPTION_CATEGORIES,
    REASONING_CATEGORIES,
    generate_probe,
    generate_text_reasoning,
    generate_training_items,
)
from mvlm_tasks.probe.export import encode_png
from mvlm_tasks.probe.items import Item


def _fingerprint(items: list[Item]) -> list[tuple[str, bytes]]:
    """Every field of every row, and the PNG bytes of its image."""
    return [(repr({k: v for k, v in i.as_row().items() if k != "image"}), encode_png(i.image)) for i in items]


def _pixel_hash(item: Item) -> str:
    return hashlib.sha256(item.image.tobytes()).hexdigest()


def _eval_items() -> list[Item]:
    return generate_probe("perception") + generate_probe("reasoning")


@pytest.mark.parametrize("split", ["perception", "reasoning"])
def test_same_seed_gives_identical_rows_and_png_bytes(split: str) -> None:
    assert _fingerprint(generate_probe(split, 40, seed=7)) == _fingerprint(generate_probe(split, 40, seed=7))


def test_different_seeds_give_different_items() -> None:
    a, b = generate_probe("reasoning", 40, seed=1), generate_probe("reasoning", 40, seed=2)
    assert not {item.scene for item in a} & {item.scene for item in b}
    assert [item.answer for item in a] != [item.answer for item in b]


def test_a_longer_set_starts_with_the_shorter_one() -> None:
    assert _fingerprint(generate_probe("perception", 60)[:25]) == _fingerprint(
        generate_probe("perception", 25)
    )


@pytest.mark.parametrize(
    ("split", "categories"), [("perception", PERCEPTION_CATEGORIES), ("reasoning", REASONING_CATEGORIES)]
)
def test_default_set_has_200_items_balanced_over_categories(split: str, categories: tuple[str, ...]) -> None:
    items = generate_probe(split)
    assert len(items) == 200
    assert {item.split for item in items} == {split}
    assert Counter(item.category for item in items) == {c: 50 for c in categories}
    assert len({item.id for item in items}) == 200


def test_item_count_is_configurable_and_stays_balanced() -> None:
    counts = Counter(item.category for item in generate_probe("perception", 10))
    assert sorted(counts.values()) == [2, 2, 3, 3]


def test_default_set_varies_content_and_layout() -> None:
    items = _eval_items()
    assert len({_pixel_hash(item) for item in items}) == len(items)
    numbers = [int(item.answer) for item in items if item.category == "read_number"]
    assert min(numbers) < 20 and max(numbers) > 80


def test_unknown_split_or_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        generate_probe("maths")
    with pytest.raises(ValueError, match="unknown kind"):
        generate_training_items("maths", 3, seed=0)


def test_perception_training_items_have_no_arithmetic() -> None:
    items = generate_training_items("perception", 400, seed=0)
    assert Counter(item.category for item in items) == {c: 100 for c in PERCEPTION_CATEGORIES}
    assert all(item.split == "perception" and not item.operands for item in items)


def test_training_images_never_repeat_an_eval_image() -> None:
    eval_hashes = {_pixel_hash(item) for item in _eval_items()}
    for kind in ("perception", "reasoning"):
        training = generate_training_items(kind, 1000, seed=2025)
        assert not eval_hashes & {_pixel_hash(item) for item in training}


def test_training_redraws_items_whose_scene_is_excluded() -> None:
    first = generate_training_items("count", 60, seed=3, exclude=[])
    again = generate_training_items("count", 60, seed=3, exclude=[])
    redrawn = generate_training_items("count", 60, seed=3, exclude=first)
    assert _fingerprint(first) == _fingerprint(again)
    assert not {_pixel_hash(item) for item in first} & {_pixel_hash(item) for item in redrawn}


def test_training_seeds_give_different_items() -> None:
    a = generate_training_items("perception", 40, seed=0)
    b = generate_training_items("perception", 40, seed=1)
    assert not {item.scene for item in a} & {item.scene for item in b}


_PLAIN = {
    "sum": (r"What is (\d+) plus (\d+)\?", lambda a, b: a + b),
    "difference": (r"What is (\d+) minus (\d+)\?", lambda a, b: a - b),
    "larger": (r"Which is larger, (\d+) or (\d+)\?", max),
    "count_times": (r"What is (\d+) times (\d+)\?", lambda a, b: a * b),
}
_PROBE_STYLE = {
    "sum": (r"(\d+) on the left and (\d+) on the right\. What is the sum", lambda a, b: a + b),
    "difference": (
        r"(\d+) on the left and (\d+) on the right\. What is the larger number minus",
        lambda a, b: abs(a - b),
    ),
    "larger": (r"(\d+) on the left and (\d+) on the right\. Which of the two numbers", max),
    "count_times": (
        r"shows (\d+) \w+ \w+?s?\. Count the shapes .* multiply the count by (\d+)\.",
        lambda a, b: a * b,
    ),
}


def test_text_reasoning_problems_are_correct_and_in_both_phrasings() -> None:
    problems = generate_text_reasoning(400, seed=0)
    assert Counter(p.category for p in problems) == {c: 100 for c in REASONING_CATEGORIES}
    styles = Counter()
    for problem in problems:
        assert problem.text == f"{problem.question} Answer: {problem.answer}"
        for style, patterns in (("plain", _PLAIN), ("probe", _PROBE_STYLE)):
            pattern, solve = patterns[problem.category]
            if match := re.search(pattern, problem.question):
                a, b = int(match.group(1)), int(match.group(2))
                assert problem.answer == str(solve(a, b)), problem
                styles[style] += 1
                break
        else:
            raise AssertionError(f"unexpected phrasing: {problem.question}")
    assert styles["plain"] > 150 and styles["probe"] > 150


def test_text_reasoning_withholds_eval_operands() -> None:
    def key(category: str, operands: tuple[int, ...]) -> tuple[object, ...]:
        return (category, operands) if category == "count_times" else (category, tuple(sorted(operands)))

    eval_keys = {key(item.category, item.operands) for item in generate_probe("reasoning")}
    problems = generate_text_reasoning(4000, seed=0)
    assert not eval_keys & {key(p.category, p.operands) for p in problems}
    multiplicands = {p.operands[0] for p in problems if p.category == "count_times"}
    assert set(range(1, 10)) <= multiplicands and max(multiplicands) > 50


def test_text_reasoning_is_deterministic_per_seed() -> None:
    assert generate_text_reasoning(50, seed=4) == generate_text_reasoning(50, seed=4)
    assert generate_text_reasoning(50, seed=4) != generate_text_reasoning(50, seed=5)
