"""Candidate names: what the model may pick for method_name and datasets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from summarizer.extract import Extractor, build_answer_model
from summarizer.fakes import FakeBackend
from summarizer.schemas import Paper
from summarizer.settings import Settings
from summarizer.spans import candidate_names, not_a_dataset
from summarizer.taxonomy import load_taxonomy

ABSTRACT = (
    "We release PiKa-SFT, built with Magpie prompts. It beats LLM-based judges and human-AI teams on "
    "AlpacaEval 2.0, Arena-Hard and AIME 24/25 when tuning Llama-3-8B-Instruct and StableVicuna 13B, "
    "and ranks first on the Open LLM Leaderboard. Key results hold in F1 and BLEU. "
    "Code is at github.com/SJY8460/PiKa and https://huggingface.co/datasets/x/y."
)


def test_links_and_compound_adjectives_are_not_names() -> None:
    names = candidate_names(ABSTRACT)
    assert not [n for n in names if "github.com" in n or "huggingface" in n]
    assert "LLM-based" not in names and "human-AI" not in names
    assert {"PiKa-SFT", "Magpie", "AlpacaEval 2.0", "Arena-Hard"} <= set(names)


def test_a_run_of_capitalised_words_stops_at_a_full_stop() -> None:
    names = candidate_names(ABSTRACT)
    assert "Open LLM Leaderboard" in names
    assert not [n for n in names if ". " in n]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("GPT-4o", True),
        ("ChatGPT", True),
        ("Llama-3-8B-Instruct", True),
        ("LLaMa3-8B", True),
        ("StableVicuna 13B", True),
        ("Claude 3 Opus", True),
        ("F1", True),
        ("BERTScore", True),
        ("MATH500", False),
        ("AlpacaEval 2.0", False),
        ("Arena-Hard", False),
        ("PRISM", False),
        ("MT-Bench", False),
        ("LlamaIndex", False),
    ],
)
def test_models_and_metrics_are_not_datasets(name: str, expected: bool) -> None:
    assert not_a_dataset(name) is expected


def test_the_schema_admits_a_model_as_the_method_but_not_as_a_dataset() -> None:
    model = build_answer_model(load_taxonomy(Settings().resolved_taxonomy_path), ("GPT-4o", "MATH500"), 3)
    base = {
        "summary": "s",
        "contribution_type": "new_method",
        "method_description": "d",
        "claims": [{"sentence": 2, "statement": "x"}],
        "category_reasoning": "r",
        "about_ai_alignment": False,
        "primary_category": "not_alignment",
        "secondary_categories": [],
    }
    ok = model.model_validate({**base, "method_name": "GPT-4o", "datasets": [{"name": "MATH500", "role": "used"}]})
    assert ok.__dict__["method_name"] == "GPT-4o"
    with pytest.raises(ValidationError, match="datasets"):
        model.model_validate({**base, "method_name": None, "datasets": [{"name": "GPT-4o", "role": "used"}]})


def test_the_prompt_marks_models_and_metrics() -> None:
    ex = Extractor(Settings(use_cache=False), backend=FakeBackend())
    user = ex.prepare(Paper.from_text("T", ABSTRACT)).messages[-1]["content"]
    assert "- Llama-3-8B-Instruct (a model or metric, not a dataset)" in user
    assert "- Magpie\n" in user
