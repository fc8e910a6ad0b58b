"""Agreement of the `official` scoring protocol with the official verdicts, on real model responses.

Scores every response of benchmarks/official_evidence/ (MathVista and MATH-V runs published by the
benchmarks' authors with their verdicts) with this project's `official` protocol and prints, per
split (development / held-out) and model, the share of responses whose verdict agrees, and our
accuracy next to the official one (MathVista: per question category, general-vqa = perception and
math-targeted-vqa = reasoning). For MathVista it also applies our normalisation alone to the official
GPT extraction (the `extraction` field), which isolates the normalisation from the extraction, and
counts the published extractions that contradict responses which already are an answer (made from
other responses: no extractor can reproduce those verdicts).

    python benchmarks/official_agreement.py [--split heldout|dev|all] [--strict]

Targets (asserted on the held-out part by tests/test_scoring_official_agreement.py): MathVista
>= 97% agreement and, per model and category, accuracy within 2 points of the official; MATH-V
>= 98.5% agreement.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVIDENCE = Path(__file__).resolve().parent / "official_evidence"
SPLITS = ("dev", "heldout")
MATHVISTA_MIN_AGREEMENT = 0.97
MATHVISTA_MAX_ACCURACY_GAP = 0.02
MATHVISION_MIN_AGREEMENT = 0.985


@dataclass
class Tally:
    """Counts for one group of responses."""

    total: int = 0
    agree: int = 0
    ours: int = 0
    official: int = 0

    def add(self, ours: bool, official: bool) -> None:
        self.total += 1
        self.agree += ours == official
        self.ours += ours
        self.official += official

    @property
    def agreement(self) -> float:
        return self.agree / self.total

    @property
    def gap(self) -> float:
        """Our accuracy minus the official accuracy."""
        return (self.ours - self.official) / self.total


def _rows(name: str, split: str = "all") -> Iterator[dict[str, Any]]:
    """The rows of an evidence file; with a split other than "all", only the rows of that split."""
    with gzip.open(EVIDENCE / name, "rt", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if split == "all" or row["split"] == split:
                yield row


def models_by_split(benchmark: str) -> dict[str, set[str]]:
    """The runs of each split in a benchmark's evidence ("mathvista" or "mathvision")."""
    found: dict[str, set[str]] = defaultdict(set)
    for row in _rows(f"{benchmark}_responses.jsonl.gz"):
        found[row["split"]].add(row["model"])
    return dict(found)


def mathvista_doc(item: dict[str, Any]) -> dict[str, Any]:
    """An evidence item as a document in the published Hugging Face schema (the fields scoring reads)."""
    return {**item, "metadata": {"category": item["category"], "task": item["task"]}}


def mathvista(split: str, protocol: str = "official") -> tuple[dict[tuple[str, str], Tally], Tally]:
    """MathVista: a Tally per (model, category) and the normalisation-only Tally, for `split`."""
    from mvlm_tasks.scoring.official.mathvista import extraction_verdict
    from mvlm_tasks.scoring.protocols import SCORERS

    score = SCORERS["mathvista"][protocol]
    items = {item["pid"]: item for item in _rows("mathvista_items.jsonl.gz")}
    tallies: dict[tuple[str, str], Tally] = defaultdict(Tally)
    normalisation = Tally()
    for row in _rows("mathvista_responses.jsonl.gz", split):
        item = items[row["pid"]]
        doc = mathvista_doc(item)
        verdict = score(doc, row["response"])
        tallies[(row["model"], item["category"])].add(verdict.correct, row["true_false"])
        if row["extraction"] is not None:
            ours = extraction_verdict(doc, row["extraction"], "published").correct
            normalisation.add(ours, row["true_false"])
    return dict(tallies), normalisation


def mathvista_stale_extractions(split: str) -> dict[str, tuple[int, int]]:
    """Per MathVista run: (responses whose published extraction contradicts the official quick path,
    responses the quick path reads). The quick path (an empty response, an option's exact text, a bare
    number) involves no GPT, so a contradiction means the published extraction was made from another
    response than the one published: no extractor can reproduce those verdicts."""
    from mvlm_tasks.scoring.official.mathvista import extraction_verdict
    from mvlm_tasks.scoring.official.mathvista_extraction import quick_extraction

    items = {item["pid"]: item for item in _rows("mathvista_items.jsonl.gz")}
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in _rows("mathvista_responses.jsonl.gz", split):
        item = items[row["pid"]]
        quick = quick_extraction(row["response"], item)
        if quick is None:
            continue
        found[row["model"]][1] += 1
        prediction = extraction_verdict(mathvista_doc(item), quick, "quick").extracted
        found[row["model"]][0] += prediction != row["prediction"]
    return {model: (stale, total) for model, (stale, total) in found.items()}


def mathvision(split: str, protocol: str = "official") -> dict[str, Tally]:
    """MATH-V: a Tally per model, for `split`."""
    from mvlm_tasks.scoring.protocols import SCORERS

    score = SCORERS["mathvision"][protocol]
    items = {item["id"]: item for item in _rows("mathvision_items.jsonl.gz")}
    tallies: dict[str, Tally] = defaultdict(Tally)
    for row in _rows("mathvision_responses.jsonl.gz", split):
        tallies[row["model"]].add(score(items[row["id"]], row["response"]).correct, row["correct"])
    return dict(tallies)


def pooled(tallies: dict[Any, Tally]) -> Tally:
    """All groups together."""
    total = Tally()
    for tally in tallies.values():
        total.total += tally.total
        total.agree += tally.agree
        total.ours += tally.ours
        total.official += tally.official
    return total


def _line(name: str, tally: Tally) -> str:
    return (f"  {name:52s} n={tally.total:5d}  agree {tally.agreement:6.2%}  ours {tally.ours / tally.total:6.2%}"
            f"  official {tally.official / tally.total:6.2%}  gap {tally.gap * 100:+5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=(*SPLITS, "all"), default="heldout")
    parser.add_argument("--strict", action="store_true", help="score with the strict protocol instead")
    args = parser.parse_args()
    os.environ.pop("MERGED_VLM_JUDGE_URL", None)  # rules only: the measurement must not depend on a judge
    protocol = "strict" if args.strict else "official"
    start = time.perf_counter()
    by_group, normalisation = mathvista(args.split, protocol)
    print(f"MathVista testmini, {protocol} protocol vs official verdicts, split {args.split}")
    for (model, category), tally in sorted(by_group.items()):
        print(_line(f"{model} / {category}", tally))
    total = pooled(by_group)
    print(_line("all", total) + f"   (target >= {MATHVISTA_MIN_AGREEMENT:.1%}, |gap| <= 2 points)")
    print(f"  our normalisation on the official extraction: {normalisation.agree}/{normalisation.total} "
          f"verdicts agree ({normalisation.agreement:.2%})")
    stale = mathvista_stale_extractions(args.split)
    print("  published extractions contradicting the official quick path (no GPT involved): "
          + ", ".join(f"{model} {bad}/{total}" for model, (bad, total) in sorted(stale.items()) if bad)
          + f" (all: {sum(b for b, _ in stale.values())}/{sum(t for _, t in stale.values())})")
    by_model = mathvision(args.split, protocol)
    print(f"MATH-V test (even ids), {protocol} protocol vs official verdicts, split {args.split}")
    for model, tally in sorted(by_model.items()):
        print(_line(model, tally))
    print(_line("all", pooled(by_model)) + f"   (target >= {MATHVISION_MIN_AGREEMENT:.1%})")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
