from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from summarizer.schemas import PaperRecord, find_name, find_verbatim, normalise_title, paper_id

ABSTRACT = (
    "We propose Intervened Preference Optimization (IPO), a method for alignment.  It improves\n"
    "win rate on AlpacaEval 2.0 by 5 points. Results hold on Arena-Hard."
)
CTX = {
    "abstract": ABSTRACT,
    "category_ids": ["learning_from_feedback", "not_alignment"],
    "contribution_ids": ["new_method", "survey"],
}


def record(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "paper_id": "abc",
        "title": "IPO",
        "summary": "A preference optimisation method.",
        "contribution_type": "new_method",
        "method": {
            "name": "Intervened Preference Optimization (IPO)",
            "description": "It optimises.",
            "evidence": None,
        },
        "datasets": [{"name": "AlpacaEval 2.0", "role": "used", "evidence": "win rate on AlpacaEval 2.0 by 5 points."}],
        "claims": [
            {"statement": "Better win rate.", "evidence": "It improves win rate on AlpacaEval 2.0 by 5 points."}
        ],
        "category": {"primary": "learning_from_feedback", "secondary": [], "rationale": "Preference optimisation."},
    }
    data.update(changes)
    return data


def test_valid_record_passes_with_whitespace_differences() -> None:
    rec = PaperRecord.model_validate(record(), context=CTX)
    assert rec.claims[0].evidence.startswith("It improves")


def test_quote_not_in_abstract_is_rejected() -> None:
    bad = record(claims=[{"statement": "x", "evidence": "It improves win rate by 50 points."}])
    with pytest.raises(ValidationError, match="not a verbatim substring"):
        PaperRecord.model_validate(bad, context=CTX)


def test_method_name_must_appear_and_takes_the_abstracts_spelling() -> None:
    rec = PaperRecord.model_validate(
        record(method={"name": "intervened preference optimization (ipo)", "description": "d", "evidence": None}),
        context=CTX,
    )
    assert rec.method.name == "Intervened Preference Optimization (IPO)"
    with pytest.raises(ValidationError, match="name"):
        PaperRecord.model_validate(
            record(method={"name": "Super Optimiser", "description": "d", "evidence": None}), context=CTX
        )


def test_dataset_name_must_appear() -> None:
    bad = record(datasets=[{"name": "MATH500", "role": "used", "evidence": "Results hold on Arena-Hard."}])
    with pytest.raises(ValidationError, match="MATH500"):
        PaperRecord.model_validate(bad, context=CTX)


def test_enums_lengths_and_counts() -> None:
    with pytest.raises(ValidationError, match="unknown category"):
        PaperRecord.model_validate(record(category={"primary": "governance", "rationale": "r"}), context=CTX)
    with pytest.raises(ValidationError, match="contribution type"):
        PaperRecord.model_validate(record(contribution_type="theory"), context=CTX)
    with pytest.raises(ValidationError, match="at most 60"):
        PaperRecord.model_validate(record(summary="word " * 61), context=CTX)
    with pytest.raises(ValidationError):
        PaperRecord.model_validate(record(claims=[]), context=CTX)
    claim = {"statement": "s", "evidence": "Results hold on Arena-Hard."}
    with pytest.raises(ValidationError):
        PaperRecord.model_validate(record(claims=[claim] * 5), context=CTX)


def test_secondary_equal_to_primary_is_dropped() -> None:
    rec = PaperRecord.model_validate(
        record(
            category={"primary": "learning_from_feedback", "secondary": ["learning_from_feedback"], "rationale": "r"}
        ),
        context=CTX,
    )
    assert rec.category.secondary == []


def test_paper_id_ignores_case_spacing_and_punctuation() -> None:
    assert paper_id("DeAL: Decoding-time Alignment") == paper_id("  deal  decoding time alignment ")
    assert paper_id("DeAL: Decoding-time Alignment") != paper_id("DeAL: Decoding-time Alignment 2")
    assert normalise_title("Café — Ünïcode") == "cafe unicode"


@given(st.text(min_size=1, max_size=300), st.integers(0, 299), st.integers(1, 80))
def test_any_substring_is_found_verbatim(text: str, start: int, length: int) -> None:
    quote = text[start : start + length]
    if not quote.strip():
        return
    assert find_verbatim(quote, text) is not None
    assert find_name(quote, text) is not None


@given(st.text(max_size=200), st.text(min_size=1, max_size=50))
def test_found_quotes_are_always_in_the_text(text: str, quote: str) -> None:
    found = find_verbatim(quote, text)
    if found is not None:
        assert found in " ".join(text.split())
