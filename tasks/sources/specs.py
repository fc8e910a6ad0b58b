"""The published Hugging Face datasets behind the real benchmarks: ids, configs, splits, schemas.

Each schema lists the columns the dataset publishes (checked against the dataset cards); the
fixtures are written in exactly these schemas, and downloaded or local copies must carry them.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets

_STR = datasets.Value("string")
_STRINGS = datasets.List(_STR)


@dataclass(frozen=True)
class Source:
    """One published dataset: where it lives on the Hub and the splits the benchmarks use."""

    name: str  # folder name in the local layout: <MERGED_VLM_DATA>/<name>/<split>.parquet
    hub_id: str
    config: str | None  # `name` argument of datasets.load_dataset; None = the default config
    splits: tuple[str, ...]
    features: datasets.Features

    @property
    def columns(self) -> list[str]:
        """Column names of the published schema."""
        return list(self.features)


MATHVISTA = Source(
    name="mathvista",
    hub_id="AI4Math/MathVista",
    config=None,
    splits=("testmini",),
    features=datasets.Features(
        {
            "pid": _STR,
            "question": _STR,
            "image": _STR,
            "decoded_image": datasets.Image(),
            "choices": _STRINGS,
            "unit": _STR,
            "precision": datasets.Value("float64"),
            "answer": _STR,
            "question_type": _STR,
            "answer_type": _STR,
            "metadata": {
                "category": _STR,
                "context": _STR,
                "grade": _STR,
                "img_height": datasets.Value("int64"),
                "img_width": datasets.Value("int64"),
                "language": _STR,
                "skills": _STRINGS,
                "source": _STR,
                "split": _STR,
                "task": _STR,
            },
            "query": _STR,
        }
    ),
)

MMSTAR = Source(
    name="mmstar",
    hub_id="Lin-Chen/MMStar",
    config=None,  # the repository has a single config
    splits=("val",),
    features=datasets.Features(
        {
            "index": datasets.Value("int64"),
            "question": _STR,
            "image": datasets.Image(),
            "answer": _STR,
            "category": _STR,
            "l2_category": _STR,
            "meta_info": {"source": _STR, "split": _STR, "image_path": _STR},
        }
    ),
)

OCRBENCH = Source(
    name="ocrbench",
    hub_id="echo840/OCRBench",
    config=None,
    splits=("test",),
    features=datasets.Features(
        {
            "dataset": _STR,
            "question": _STR,
            "question_type": _STR,
            "answer": _STRINGS,
            "image": datasets.Image(),
        }
    ),
)

MATHVISION = Source(
    name="mathvision",
    hub_id="MathLLMs/MathVision",
    config=None,
    splits=("testmini",),
    features=datasets.Features(
        {
            "id": _STR,
            "question": _STR,
            "options": _STRINGS,
            "image": _STR,
            "decoded_image": datasets.Image(),
            "answer": _STR,
            "solution": _STR,
            "level": datasets.Value("int64"),
            "subject": _STR,
        }
    ),
)

# The 3040-item `test` split, the leaderboard's set, as a Source of its own so that preparing the
# testmini tasks does not download it.
MATHVISION_TEST = Source(
    name="mathvision_test",
    hub_id=MATHVISION.hub_id,
    config=MATHVISION.config,
    splits=("test",),
    features=MATHVISION.features,
)

MATHVERSE = Source(
    name="mathverse",
    hub_id="AI4Math/MathVerse",
    config="testmini",
    splits=("testmini",),
    features=datasets.Features(
        {
            "sample_index": _STR,
            "problem_index": _STR,
            "problem_version": _STR,
            "question": _STR,
            "image": datasets.Image(),
            "answer": _STR,
            "question_type": _STR,
            "metadata": {"split": _STR, "source": _STR, "subject": _STR, "subfield": _STR},
            "query_wo": _STR,
            "query_cot": _STR,
            "question_for_eval": _STR,
        }
    ),
)

DYNAMATH = Source(
    name="dynamath",
    hub_id="DynaMath/DynaMath_Sample",
    config=None,
    splits=tuple(f"sample_variant{i}" for i in range(1, 11)),  # the same 501 seeds, one split per variant
    features=datasets.Features(
        {
            "id": _STR,
            "question": _STR,
            "image": _STR,
            "decoded_image": datasets.Image(),
            "ground_truth": _STR,
            "answer_type": _STR,
            "subject": _STR,
            "knowledge_level": _STR,
        }
    ),
)

SOURCES: dict[str, Source] = {
    s.name: s for s in (MATHVISTA, MMSTAR, OCRBENCH, MATHVISION, MATHVISION_TEST, MATHVERSE, DYNAMATH)
}
