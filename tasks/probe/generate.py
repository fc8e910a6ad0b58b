"""The evaluation set and the image training sets, drawn from independent seeded streams.

Item i of a set depends only on (set, split or kind, seed, i): a longer set starts with the items of a
shorter one, and categories take turns so that every category gets n / (number of categories) items.
"""

from __future__ import annotations

from collections.abc import Iterable

from .items import BUILDERS, SPLITS, Item, make_item
from .render import Scene
from .rng import Rng

EVAL_SEED = 2025
DEFAULT_N = 200


def generate_probe(split: str, n: int = DEFAULT_N, seed: int = EVAL_SEED) -> list[Item]:
    """The evaluation items of `split` ("perception" or "reasoning")."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLITS)}")
    categories = SPLITS[split]
    items = []
    for i in range(n):
        category = categories[i % len(categories)]
        content = BUILDERS[category](Rng(f"eval/{split}/{seed}/{i}"))
        items.append(make_item(f"{split}-{seed}-{i:04d}", category, content))
    return items


def default_eval_items() -> list[Item]:
    """Both splits of the evaluation set at the default size and seed."""
    return [item for split in SPLITS for item in generate_probe(split)]


def generate_training_items(
    kind: str, n: int, seed: int, exclude: Iterable[Item] | None = None
) -> list[Item]:
    """Training items of `kind`: a split name ("perception" has no arithmetic) or one category name.

    No training item has the scene (hence the image) of an item in `exclude`, which defaults to
    `default_eval_items()`; a draw that hits one is replaced by a fresh draw.
    """
    if kind in SPLITS:
        categories = SPLITS[kind]
    elif kind in BUILDERS:
        categories = (kind,)
    else:
        raise ValueError(
            f"unknown kind {kind!r}; expected a split {tuple(SPLITS)} or a category {tuple(BUILDERS)}"
        )
    excluded: set[Scene] = {item.scene for item in (default_eval_items() if exclude is None else exclude)}
    items = []
    for i in range(n):
        category = categories[i % len(categories)]
        attempt = 0
        content = BUILDERS[category](Rng(f"train/{kind}/{seed}/{i}/{attempt}"))
        while content.scene in excluded:
            attempt += 1
            content = BUILDERS[category](Rng(f"train/{kind}/{seed}/{i}/{attempt}"))
        items.append(make_item(f"train-{kind}-{seed}-{i:06d}", category, content))
    return items
