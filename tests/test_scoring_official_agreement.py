"""The official protocol against the official verdicts on real model responses (benchmarks/
official_evidence: MathVista and MATH-V runs published by the benchmarks' authors), on the held-out
models, which were not looked at while the rules were tuned (benchmarks/official_agreement.py prints
the full tables)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "official_agreement.py"


def _agreement_module():
    spec = importlib.util.spec_from_file_location("official_agreement", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


agreement = _agreement_module()


@pytest.fixture(scope="module")
def mathvista_heldout():
    return agreement.mathvista("heldout")


def test_evidence_splits_are_disjoint_real_runs():
    mathvista = agreement.models_by_split("mathvista")
    assert len(mathvista["dev"]) == 9 and len(mathvista["heldout"]) == 8
    assert not mathvista["dev"] & mathvista["heldout"]
    mathvision = agreement.models_by_split("mathvision")
    assert len(mathvision["dev"]) == 7 and len(mathvision["heldout"]) == 8
    assert not mathvision["dev"] & mathvision["heldout"]


def test_mathvision_official_agreement_on_heldout_models():
    tallies = agreement.mathvision("heldout")
    assert sum(t.total for t in tallies.values()) == 8 * 1520
    assert agreement.pooled(tallies).agreement >= agreement.MATHVISION_MIN_AGREEMENT


def test_mathvista_normalisation_alone_matches_the_official_predictions(mathvista_heldout):
    """Our copy of calculate_score.py applied to the official GPT extraction: the remaining
    differences are integer answers given as decimals, which the published code truncates and the
    code that scored these runs did not."""
    _, normalisation = mathvista_heldout
    assert normalisation.total == 8000 and normalisation.agreement >= 0.999


def test_instructblip_published_extractions_contradict_its_responses():
    """Part of why the held-out MathVista target is missed, whatever the extractor: for more than a
    quarter of InstructBLIP's responses that already are an answer (a bare number, an option's exact
    text), which the official code returns unchanged without asking GPT, the published extraction says
    something else; it was made from other responses than those published. No other run shows this."""
    stale = agreement.mathvista_stale_extractions("heldout")
    contradicting, answers = stale["instruct_blip2_vicuna_13b"]
    assert answers > 500 and contradicting / answers > 0.25
    assert sum(bad for model, (bad, _) in stale.items() if model != "instruct_blip2_vicuna_13b") == 0
    dev = agreement.mathvista_stale_extractions("dev")
    assert sum(bad for bad, _ in dev.values()) <= 1


def test_mathvista_official_agreement_on_heldout_models_does_not_regress(mathvista_heldout):
    """What the rules achieve on the held-out models (92.7% when measured; development 97.3%)."""
    by_group, _ = mathvista_heldout
    assert agreement.pooled(by_group).agreement >= 0.927


@pytest.mark.xfail(strict=True, reason="missed: held-out agreement is 92.7%, below 97%. instruct_blip2 (62% on "
                   "general-vqa, 6.1 points below the official accuracy; 84% on math, 3.3 below) has published "
                   "extractions partly made from other responses (see the test above), gpt4 zero-shot (79% on "
                   "general-vqa: refusals, which GPT-4 extracts inconsistently) and llavar (92%, 2.2 below) "
                   "miss too; see benchmarks/official_evidence/README.md")
def test_mathvista_official_agreement_target_on_heldout_models(mathvista_heldout):
    by_group, _ = mathvista_heldout
    assert agreement.pooled(by_group).agreement >= agreement.MATHVISTA_MIN_AGREEMENT
    for group, tally in by_group.items():
        assert abs(tally.gap) <= agreement.MATHVISTA_MAX_ACCURACY_GAP, group
