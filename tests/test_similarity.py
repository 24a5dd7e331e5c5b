"""The taxonomy-similarity signal and its combination with the scored answers (no model)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from summarizer.calibration import (
    SHARES,
    Calibration,
    Combine,
    Labelled,
    apply,
    combined_category,
    combined_subject,
    fit_combine,
)
from summarizer.decide import Answer, RawDecisions
from summarizer.decisions import NO, YES, Scored
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend
from summarizer.schemas import Paper
from summarizer.settings import Settings
from summarizer.similarity import class_similarity
from summarizer.taxonomy import Label, Taxonomy, load_taxonomy

ROOT = Path(__file__).resolve().parent.parent
TAX = load_taxonomy(ROOT / "prompts/taxonomy.toml")
DPO = "We align language models to human preferences with direct preference optimisation and a reward model."


def test_similarity_points_at_the_class_whose_description_shares_the_words() -> None:
    sims = class_similarity(TAX, "Preference optimisation", DPO)
    assert set(sims) == set(TAX.subject_ids)
    assert max(sims, key=sims.__getitem__) == "learning_from_feedback"
    assert all(0.0 <= v <= 1.0 for v in sims.values())
    probing = class_similarity(TAX, "Probing", "Mechanistic interpretability with probing and steering vectors.")
    assert max(probing, key=probing.__getitem__) == "interpretability"


def test_a_users_own_taxonomy_gets_the_signal_from_its_own_descriptions() -> None:
    own = Taxonomy(
        name="mine",
        version=1,
        categories=[
            Label(id="robots", description="robot arms, grasping, manipulation"),
            Label(id="proteins", description="protein folding, structure prediction"),
        ],
        contribution_types=TAX.contribution_types,
        content_hash="mine",
    )
    sims = class_similarity(own, "Grasping", "A robot arm learns grasping and manipulation from video.")
    assert sims["robots"] > 0.2 and sims["proteins"] == 0.0


def test_the_expected_share_moves_the_gate_and_keeps_the_evidence() -> None:
    rule = Combine(gate_weight=10.0, gate_slope=2.0, gate_intercept=-6.0, fit_share=0.75)
    sims = {"a": 0.2, "b": 0.05}
    at_fit = combined_subject(1.5, sims, rule, share=0.75).p(YES)
    assert at_fit == pytest.approx(1 / (1 + math.exp(-(2.0 * (1.5 + 10.0 * 0.2) - 6.0))))
    feed, mixed, curated = (combined_subject(1.5, sims, rule, share=SHARES[m]).p(YES) for m in SHARES)
    assert feed < mixed < curated
    # Moving the share replaces the prior and keeps the likelihood ratio: the odds move by the
    # ratio of the prior odds, whatever the paper.
    odds = lambda p: p / (1 - p)  # noqa: E731
    assert odds(curated) / odds(feed) == pytest.approx(odds(0.95) / odds(0.10))


def test_similarity_can_overturn_a_close_category_answer_but_not_a_confident_one() -> None:
    rule = Combine(category_weight=20.0)
    sims = {"x": 0.0, "y": 0.3}
    close = combined_category(Scored({"x": 0.55, "y": 0.45}), sims, rule)
    assert close.choice == "y" and sum(close.probabilities.values()) == pytest.approx(1.0)
    sure = combined_category(Scored({"x": 0.99999, "y": 0.00001}), sims, rule)
    assert sure.choice == "x"


def _raw(yes_logodds: float, category: str) -> RawDecisions:
    return RawDecisions(
        answers={
            "subject": Answer(top=[(YES, -0.1), (NO, -0.1 - yes_logodds)]),
            "category": Answer(top=[(category, -0.1), ("safety_evaluation", -2.5)]),
        }
    )


def test_apply_uses_both_signals_only_with_a_combination_and_a_similarity() -> None:
    cal = Calibration(
        model="m", combine=Combine(category_weight=30.0, gate_weight=10.0, gate_slope=2.0, gate_intercept=-5.0)
    )
    raw = _raw(1.2, "interpretability")
    sims = class_similarity(TAX, "Preference optimisation", DPO)
    combined = apply(raw, TAX, (), 3, cal, similarity=sims, share=SHARES["curated"])
    assert combined.combined and combined.primary == "learning_from_feedback"
    alone = apply(raw, TAX, (), 3, cal)  # no similarity: the answers alone, as before
    assert not alone.combined and alone.primary == "interpretability"
    feed = apply(raw, TAX, (), 3, cal, similarity=sims, share=SHARES["feed"])
    assert feed.subject is not None and combined.subject is not None
    assert feed.subject.p(YES) < combined.subject.p(YES)


def test_review_flags_an_uncertain_gate_and_close_classes_and_nothing_else() -> None:
    cal = Calibration(model="m", combine=Combine(gate_slope=1.0, gate_intercept=0.0, fit_share=0.5))
    flat = {c: 0.0 for c in TAX.subject_ids}
    uncertain = apply(_raw(0.5, "interpretability"), TAX, (), 3, cal, similarity=flat, share=0.5)
    assert any("uncertain" in r for r in uncertain.review)
    sure = apply(_raw(6.0, "interpretability"), TAX, (), 3, cal, similarity=flat, share=0.5)
    assert sure.review == []
    outside = apply(_raw(-6.0, "interpretability"), TAX, (), 3, cal, similarity=flat, share=0.5)
    assert outside.primary == "not_alignment" and outside.review == []


def test_fit_combine_finds_the_signal_that_carries_the_labels() -> None:
    # The category answer is uninformative (always "interpretability"); the similarity names the
    # right class. The gate's log-odds are uninformative; the best similarity separates the sides.
    papers = []
    for i in range(40):
        on = i % 4 != 0
        right = TAX.subject_ids[i % 3]
        sims = {c: (0.3 if c == right else 0.02) if on else 0.02 for c in TAX.subject_ids}
        category = Scored({c: (0.6 if c == "interpretability" else 0.4 / 7) for c in TAX.subject_ids})
        papers.append(Labelled(1.2, category, sims, right if on else "not_alignment"))
    rule = fit_combine(papers, "not_alignment")
    assert rule.category_weight > 0 and rule.gate_weight > 0 and rule.gate_slope > 0
    assert rule.fit_share == pytest.approx(30 / 40)
    assert all(
        combined_category(p.category, p.similarity, rule).choice == p.primary
        for p in papers
        if p.primary != "not_alignment"
    )


def test_the_mix_is_in_the_scored_key_only_when_the_calibration_combines(tmp_path: Path) -> None:
    paper = Paper.from_text("Preference optimisation", DPO)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for f in (ROOT / "prompts").iterdir():
        (prompts / f.name).write_bytes(f.read_bytes())

    def key(mix: str, combine: Combine | None) -> str:
        cal = Calibration(model="fake:fake-model", combine=combine)
        (prompts / "calibration.json").write_text('{"calibrations": [' + cal.model_dump_json() + "]}")
        s = Settings(cache_dir=tmp_path / "c", prompts_dir=prompts, decisions="scored", mix=mix)  # type: ignore[arg-type]
        return Extractor(s, backend=FakeBackend()).key_for(paper)

    assert key("feed", None) == key("curated", None)
    assert key("feed", Combine()) != key("curated", Combine())
    assert Settings(mix="feed").expected_share == SHARES["feed"]
    assert Settings(mix="feed", on_topic_share=0.3).expected_share == 0.3
    generated = Settings(cache_dir=tmp_path / "c", mix="curated")
    assert Extractor(generated, backend=FakeBackend()).key_for(paper) == Extractor(
        Settings(cache_dir=tmp_path / "c"), backend=FakeBackend()
    ).key_for(paper)
