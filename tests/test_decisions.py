"""Scored decisions: option mapping, calibration, review flags and fitting (no model)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from summarizer.calibration import (
    Binary,
    Calibration,
    ChoicePrior,
    Findings,
    Sample,
    apply,
    category_prior,
    fit,
    load_calibrations,
    save_calibration,
)
from summarizer.decide import DECISION_TEMPLATES, Answer, QuestionSet, RawDecisions, ask_all
from summarizer.decisions import NO, YES, option_logprobs
from summarizer.fakes import FakeBackend
from summarizer.prompts import load_prompts
from summarizer.taxonomy import Subject, Taxonomy, load_taxonomy

ROOT = Path(__file__).resolve().parent.parent
BASE = load_taxonomy(ROOT / "prompts/taxonomy.toml")
TAX = Taxonomy(
    **{
        **BASE.model_dump(exclude={"content_hash"}),
        "subject": Subject(question="Is it about X?", outside="not_alignment"),
    }
)


def test_options_are_matched_by_text_prefix_and_missing_ones_get_a_floor() -> None:
    top = [("Yes", -0.2), (" yes", -2.0), ("No", -1.9), ("Maybe", -5.0)]
    lp = option_logprobs(top, (YES, NO))
    assert lp[YES] == pytest.approx(math.log(math.exp(-0.2) + math.exp(-2.0)))
    assert lp[NO] == pytest.approx(-1.9)
    lp = option_logprobs(
        [("learning", -0.1), ("values", -3.0)], ("learning_from_feedback", "values_and_ethics", "governance")
    )
    assert lp["learning_from_feedback"] == pytest.approx(-0.1)
    assert lp["governance"] < -3.0  # absent from the top list: below everything listed


def raw(subject: float, category: dict[str, float]) -> RawDecisions:
    """Answers with log-odds `subject` for Yes and the given category log-probabilities."""
    return RawDecisions(
        answers={
            "subject": Answer(
                top=[(YES, math.log(1 / (1 + math.exp(-subject)))), (NO, math.log(1 / (1 + math.exp(subject))))]
            ),
            "category": Answer(top=list(category.items())),
        }
    )


def test_the_prior_removes_a_majority_label_bias() -> None:
    answers = raw(3.0, {"learning": math.log(0.6), "interpret": math.log(0.3)})
    uncalibrated = apply(answers, TAX, (), 0, None)
    assert uncalibrated.primary == "learning_from_feedback" and not uncalibrated.calibrated
    prior = {o: 0.01 for o in TAX.subject_ids} | {"learning_from_feedback": 0.8, "interpretability": 0.05}
    cal = Calibration(model="m", category=ChoicePrior(prior=prior, alpha=1.0))
    calibrated = apply(answers, TAX, (), 0, cal)
    assert calibrated.primary == "interpretability" and calibrated.category.calibrated


def test_the_subject_threshold_decides_the_outside_class_and_close_calls_are_flagged() -> None:
    cal = Calibration(model="m", subject=Binary(threshold=1.5))
    inside = apply(raw(3.0, {"learning": -0.1}), TAX, (), 0, cal)
    outside = apply(raw(0.5, {"learning": -0.1}), TAX, (), 0, cal)
    close = apply(raw(1.6, {"learning": -0.1}), TAX, (), 0, cal)
    assert inside.primary == "learning_from_feedback" and outside.primary == "not_alignment"
    assert close.primary == "learning_from_feedback"
    assert any("threshold" in r for r in close.review) and not any("threshold" in r for r in inside.review)


def test_no_logprobs_means_a_generated_choice_without_confidence() -> None:
    answers = RawDecisions(answers={"subject": Answer(picked=YES), "category": Answer(picked="governance")})
    d = apply(answers, TAX, (), 0, None)
    assert d.primary == "governance" and d.category.confidence is None
    assert any("no log-probabilities" in r for r in d.review)


def test_findings_rank_by_score_plus_position() -> None:
    answers = RawDecisions(
        answers={f"finding:{i}": Answer(top=[(YES, -0.5), (NO, -1.0)]) for i in range(1, 6)}
        | {"finding:2": Answer(top=[(YES, -0.1), (NO, -3.0)])}
    )
    flat = apply(answers, TAX, (), 5, Calibration(model="m", finding=Findings(position_weight=0.0)))
    assert flat.findings[0][0] == 2
    late = apply(answers, TAX, (), 5, Calibration(model="m", finding=Findings(position_weight=5.0)))
    assert late.claim_sentences(2) == [4, 5]


def test_fit_uses_labels_only_from_dev_and_separates_the_subject() -> None:
    pool = [Sample(raw(2.0, {"learning": -0.2, "values": -2.0}), (), 0) for _ in range(4)]
    dev = [
        Sample(raw(lo, {"learning": -0.2, "values": -2.0}), (), 0, gold={"primary": label, "datasets": []})
        for lo, label in [
            (2.5, "learning_from_feedback"),
            (2.2, "learning_from_feedback"),
            (1.0, "not_alignment"),
            (1.2, "not_alignment"),
        ]
    ]
    cal = fit("m", TAX, pool, dev, names_match=lambda a, b: a == b, claim_found=lambda s, ns: (0, 0))
    assert 1.2 < cal.subject.threshold < 2.2
    assert cal.category.prior == category_prior(pool, TAX.subject_ids)
    assert cal.fitted["subject_dev_balanced_accuracy"] == 1.0


def test_calibration_file_round_trips_one_entry_per_model(tmp_path: Path) -> None:
    path = tmp_path / "calibration.json"
    save_calibration(path, Calibration(model="a", subject=Binary(threshold=1.0)))
    save_calibration(path, Calibration(model="b"))
    save_calibration(path, Calibration(model="a", subject=Binary(threshold=2.0)))
    loaded = load_calibrations(path)
    assert [c.model for c in loaded.calibrations] == ["a", "b"]
    entry = loaded.for_model("a")
    assert entry is not None and entry.subject.threshold == 2.0
    assert entry.content_hash != Calibration(model="a").content_hash


async def test_questions_share_the_paper_prefix_and_come_from_the_prompt_files() -> None:
    prompts = load_prompts(ROOT / "prompts", DECISION_TEMPLATES)
    asked = QuestionSet(prompts, TAX).first_round(("HH-RLHF", "GPT-4"), 3)
    assert [q.key for q in asked] == ["subject", "category", "dataset:HH-RLHF"]  # claims are chosen by position
    qs = QuestionSet(prompts, TAX).first_round(("HH-RLHF", "GPT-4"), 3, findings=True)
    assert [q.key for q in qs] == ["subject", "category", "dataset:HH-RLHF", "finding:1", "finding:2", "finding:3"]
    assert "Is it about X?" in qs[0].text
    fake = FakeBackend(chooser=lambda messages, options: [(options[0], -0.1)])
    block = prompts.render("paper.j2", title="T", sentences=["a.", "b.", "c."])
    result = await ask_all(fake, "SYSTEM", block, qs)
    assert result.requests == len(qs) and set(result.answers) == {q.key for q in qs}
    assert all(m[0]["content"] == "SYSTEM" and m[1]["content"].startswith(block) for m in fake.calls)
