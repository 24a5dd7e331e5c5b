"""Ranked output: the digest and the run report list scored records by P(on-topic), highest first.

Records without the probability (generated decisions) keep each output's usual order, so a
run with none of them renders as it always has.
"""

from __future__ import annotations

import re

import pytest

from summarizer.digest import render_digest
from summarizer.ranking import on_topic_label, ranked, review_label
from summarizer.report import render_run_report
from summarizer.schemas import PaperRecord, Provenance, Result, Usage, paper_id

# (title, category, P(on-topic) or None, review reasons or None when not flagged). The usual
# order (category by size, then title) is B, D, F (governance: 3), A, C (interpretability: 2), E.
PAPERS: list[tuple[str, str, float | None, list[str] | None]] = [
    ("A probing study", "interpretability", 0.41, ["subject 0.41 is near the gate"]),
    ("B lab rules", "governance", 0.12, None),
    ("C circuits <b>found</b> | *here*", "interpretability", 0.93, None),
    ("D more rules", "governance", None, None),
    ("E feedback", "learning_from_feedback", 0.41, ["category margin 0.05", "runner-up *close*"]),
    ("F off topic", "governance", 0.02, None),
]
# By P: C 0.93; A and E tie at 0.41 (A first, as in the usual order); B 0.12; F 0.02; D has none.
RANKED = ["C", "A", "E", "B", "F", "D"]
USUAL = ["B", "D", "F", "A", "C", "E"]


def make(title: str, category: str, p: float | None, reasons: list[str] | None, *, scored: bool = True) -> Result:
    record = PaperRecord.model_validate({
        "paper_id": paper_id(title), "title": title, "summary": f"About {title}.", "contribution_type": "new_method",
        "method": {"name": None, "description": "What it does.", "evidence": None},
        "claims": [{"statement": "A finding.", "evidence": "A sentence."}],
        "category": {"primary": category, "secondary": [], "rationale": "Because."},
        "confidence": {"subject": p, "category": 0.7} if scored else None,
        "needs_review": reasons is not None, "review_reasons": reasons or [],
    })  # fmt: skip
    provenance = Provenance(
        backend="fake", model="fake:m", prompt_hash="p", taxonomy_hash="t", schema_hash="s", cache_key="k",
        cache_hit=False, usage=Usage(prompt_tokens=1, completion_tokens=1), started_at="a", finished_at="b",
    )  # fmt: skip
    return Result(record=record, provenance=provenance)


def scored() -> list[Result]:
    return [make(*paper) for paper in PAPERS]


def unscored(*, confidence: bool = False) -> list[Result]:
    # `confidence=True`: a Confidence object whose subject is None (decided without log-probabilities).
    return [make(t, c, None, None, scored=confidence) for t, c, _, _ in PAPERS]


def digest_order(digest: str) -> list[str]:
    return re.findall(r"^- \*\*(.)", digest, flags=re.MULTILINE)


def report_order(page: str) -> list[str]:
    ids = re.findall(r'<article class="card" id="p-([0-9a-f]+)"', page)
    by_id = {paper_id(t): t for t, _, _, _ in PAPERS}
    return [by_id[i][0] for i in ids]


def test_ranked_sorts_by_probability_keeps_ties_and_puts_unknown_last() -> None:
    results = scored()
    assert [r.record.title[0] for r in ranked(results)] == ["C", "A", "E", "B", "F", "D"]
    # Without any probability the input order is kept exactly, whatever it is.
    shuffled = list(reversed(unscored()))
    assert ranked(shuffled) == shuffled


def test_labels() -> None:
    flagged, plain, unknown = scored()[4], scored()[1], scored()[3]
    assert on_topic_label(flagged.record) == "P(on-topic) 0.41"
    assert on_topic_label(unknown.record) == "P(on-topic) unknown"
    assert review_label(flagged.record) == "needs review: category margin 0.05; runner-up *close*"
    assert review_label(plain.record) == ""


def test_digest_lists_scored_records_by_probability_with_markers() -> None:
    digest = render_digest(scored())
    assert digest_order(digest) == RANKED
    assert "## Papers by P(on-topic), highest first (6)" in digest
    assert "2 of 6 flagged for review." in digest
    assert not re.search(r"^## interpretability", digest, flags=re.MULTILINE), "one list, not one per category"
    assert "| governance | 3 |" in digest  # the category summary table stays
    entries = re.split(r"^- ", digest, flags=re.MULTILINE)[1:]
    by_letter = {e[2]: e for e in entries}
    assert "  - P(on-topic) 0.93 · Category: interpretability" in by_letter["C"]
    assert "  - P(on-topic) unknown · Category: governance" in by_letter["D"]
    assert "  - **Needs review**: category margin 0.05; runner-up \\*close\\*" in by_letter["E"]
    assert "  - **Needs review**: subject 0.41 is near the gate" in by_letter["A"]
    for letter in "BCDF":
        assert "Needs review" not in by_letter[letter]
    # Paper text is escaped in the ranked list as everywhere else.
    assert "C circuits &lt;b&gt;found&lt;/b&gt; \\| \\*here\\*" in by_letter["C"]


@pytest.mark.parametrize("confidence", [False, True])
def test_digest_without_probabilities_is_the_usual_category_listing(confidence: bool) -> None:
    digest = render_digest(unscored(confidence=confidence))
    assert digest_order(digest) == USUAL
    headings = re.findall(r"^## (.+) \((\d+)\)$", digest, flags=re.MULTILINE)
    assert headings == [("governance", "3"), ("interpretability", "2"), ("learning\\_from\\_feedback", "1")]
    assert "P(on-topic)" not in digest and "review" not in digest.lower()
    # A Confidence without a subject probability changes nothing.
    assert digest == render_digest(unscored(confidence=not confidence))


def test_digest_marks_a_flagged_record_even_without_a_probability() -> None:
    results = unscored()
    results[0] = make(*PAPERS[0][:2], None, ["server gave no log-probabilities"])
    digest = render_digest(results)
    assert digest_order(digest) == USUAL
    assert "  - **Needs review**: server gave no log-probabilities" in digest


def test_report_cards_follow_the_probability_with_badges_and_visible_reasons() -> None:
    page = render_run_report(scored())
    assert report_order(page) == RANKED
    assert "listed by P(on-topic), highest first" in page
    cards = dict(zip(report_order(page), page.split('<article class="card"')[1:], strict=True))
    assert '<span class="badge topic"' in cards["C"] and ">P(on-topic) 0.93</span>" in cards["C"]
    assert ">P(on-topic) unknown</span>" in cards["D"]
    assert '<p class="review-note">needs review: category margin 0.05; runner-up *close*</p>' in cards["E"]
    assert '<p class="review-note">needs review: subject 0.41 is near the gate</p>' in cards["A"]
    assert all("review-note" not in cards[x] for x in "BCDF")
    # The filter script's data follows the same order, so filtering never reshuffles the cards.
    data_ids = re.findall(r'"id":"([0-9a-f]+)"', page)
    assert data_ids == re.findall(r'<article class="card" id="p-([0-9a-f]+)"', page)


def test_report_without_probabilities_keeps_the_category_order() -> None:
    page = render_run_report(unscored())
    assert report_order(page) == USUAL
    assert "badge topic" not in page and '<p class="review-note"' not in page and "listed by P(on-topic)" not in page
