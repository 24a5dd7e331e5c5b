from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from summarizer.errors import PromptError
from summarizer.extract import Extractor, split_sentences, truncate_abstract
from summarizer.fakes import FakeBackend, sentences_of, valid_answer
from summarizer.schemas import Failure, Paper, Result, find_verbatim
from summarizer.settings import Settings
from summarizer.sources import read_papers

ROOT = Path(__file__).resolve().parent.parent


def paper() -> Paper:
    return read_papers(ROOT / "examples/seeds/000_8bcbaaa93f595634.txt")[0]


def make(tmp_path: Path, backend: FakeBackend, **settings: Any) -> Extractor:
    return Extractor(Settings(cache_dir=tmp_path / "cache", **settings), backend=backend)


def test_split_sentences_keeps_abbreviations_and_is_verbatim() -> None:
    text = "We use e.g. DPO et al. in Fig. 2. Results improve by 3.5 points! Is it good? Yes (J. Smith agrees)."
    sentences = split_sentences(text)
    assert sentences == [
        "We use e.g. DPO et al. in Fig. 2.",
        "Results improve by 3.5 points!",
        "Is it good?",
        "Yes (J. Smith agrees).",
    ]


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=80), max_size=8))
def test_every_sentence_is_a_verbatim_substring(parts: list[str]) -> None:
    text = ". ".join(parts)
    for sentence in split_sentences(text):
        assert find_verbatim(sentence, text) is not None


def test_seed_abstract_sentences() -> None:
    sentences = split_sentences(paper().abstract)
    assert sentences[0] == "AI alignment aims to make AI systems behave in line with human intentions and values."
    assert len(sentences) == 9


def test_truncation_warns_and_cuts_at_a_sentence() -> None:
    text = "First sentence here. " * 400
    cut, warning = truncate_abstract(text, 1000)
    assert len(cut) <= 1000 and cut.endswith(".")
    assert warning is not None and "truncated" in warning
    assert truncate_abstract("Short.", 1000) == ("Short.", None)


async def test_quotes_are_resolved_from_sentence_numbers(tmp_path: Path) -> None:
    def answer(messages: list[dict[str, str]]) -> dict[str, Any]:
        data = valid_answer(messages)
        data["claims"] = [{"sentence": 4, "statement": "Four principles."}]
        data["method_name"] = "RICE"
        return data

    async with make(tmp_path, FakeBackend(responder=answer)) as ex:
        result = await ex.extract(paper())
    sentences = split_sentences(paper().abstract)
    assert result.record.claims[0].evidence == sentences[3]
    assert result.record.method.name == "RICE"
    assert result.record.method.evidence == sentences[3]
    assert result.provenance.reasks == 0 and not result.provenance.cache_hit


async def test_bad_answer_is_reasked_with_the_error_then_accepted(tmp_path: Path) -> None:
    p = paper()
    backend = FakeBackend(responder=valid_answer)
    bad = valid_answer([{"role": "user", "content": "[1] x"}])
    bad["method_name"] = "Totally Invented Method"
    backend.queue.append(bad)
    async with make(tmp_path, backend) as ex:
        result = await ex.extract(p)
    assert result.provenance.reasks == 1
    assert result.record.method.name is None


async def test_out_of_range_sentence_is_rejected(tmp_path: Path) -> None:
    def answer(messages: list[dict[str, str]]) -> dict[str, Any]:
        data = valid_answer(messages)
        data["claims"] = [{"statement": "x", "sentence": len(sentences_of(messages)) + 1}]
        return data

    async with make(tmp_path, FakeBackend(responder=answer), max_reasks=1) as ex:
        outcome = await ex.extract_or_failure(paper())
    assert isinstance(outcome, Failure)
    assert outcome.error == "ExtractionFailed"
    assert "claims.0.sentence" in outcome.reason and "Input should be" in outcome.reason
    assert outcome.reasks == 1 and outcome.attempts == 2


async def test_failures_are_not_cached_and_successes_are(tmp_path: Path) -> None:
    p = paper()
    failing = FakeBackend(responder=lambda m: {"summary": "incomplete"})
    async with make(tmp_path, failing, max_reasks=0) as ex:
        assert isinstance(await ex.extract_or_failure(p), Failure)
    good = FakeBackend(responder=valid_answer)
    async with make(tmp_path, good) as ex:
        first = await ex.extract_or_failure(p)
        second = await ex.extract_or_failure(p)
    assert isinstance(first, Result) and isinstance(second, Result)
    assert not first.provenance.cache_hit and second.provenance.cache_hit
    assert len(good.calls) == 1
    assert second.record == first.record


async def test_not_about_alignment_forces_the_negative_class(tmp_path: Path) -> None:
    def answer(messages: list[dict[str, str]]) -> dict[str, Any]:
        data = valid_answer(messages)
        data["about_ai_alignment"] = False
        data["primary_category"] = "governance"
        return data

    async with make(tmp_path, FakeBackend(responder=answer)) as ex:
        result = await ex.extract(paper())
    assert result.record.category.primary == "not_alignment"


async def test_no_cache_switch(tmp_path: Path) -> None:
    backend = FakeBackend(responder=valid_answer)
    async with make(tmp_path, backend, use_cache=False) as ex:
        await ex.extract(paper())
        await ex.extract(paper())
    assert len(backend.calls) == 2
    assert not (tmp_path / "cache").exists()


async def test_prompt_with_missing_variable_fails_before_any_call(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    (prompts / "user.j2").write_text("{{ title }} {{ abstract_text }}")
    backend = FakeBackend(responder=valid_answer)
    with pytest.raises(PromptError, match="abstract_text"):
        async with Extractor(Settings(cache_dir=tmp_path / "c", prompts_dir=prompts), backend=backend) as ex:
            await ex.extract_or_failure(paper())
    assert backend.calls == []


async def test_worked_examples_come_between_the_system_prompt_and_the_paper(tmp_path: Path) -> None:
    backend = FakeBackend(responder=valid_answer)
    async with make(tmp_path, backend) as ex:
        await ex.extract(paper())
        examples = ex.prompts.examples
    messages = backend.calls[0]
    assert len(examples) >= 1
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(examples) + ["user"]
    assert paper().title in messages[-1]["content"]
    for example, (user, assistant) in zip(examples, zip(messages[1::2], messages[2::2], strict=False), strict=False):
        assert example.title in user["content"]
        assert json.loads(assistant["content"])["primary_category"] == example.answer["primary_category"]


def test_worked_examples_are_part_of_the_prompt_hash(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    with_examples = make(tmp_path, FakeBackend(), prompts_dir=prompts)
    lines = (prompts / "examples.jsonl").read_text().splitlines()
    (prompts / "examples.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    fewer = make(tmp_path, FakeBackend(), prompts_dir=prompts)
    (prompts / "examples.jsonl").unlink()
    none = make(tmp_path, FakeBackend(), prompts_dir=prompts)
    assert len({with_examples.key_for(paper()), fewer.key_for(paper()), none.key_for(paper())}) == 3
    assert [m["role"] for m in none.prepare(paper()).messages] == ["system", "user"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a | {"primary_category": "astrology"}, "astrology"),
        (lambda a: a | {"method_name": "NotInTheAbstract"}, "NotInTheAbstract"),
        (lambda a: a | {"claims": [{"sentence": 99, "statement": "x"}]}, "claims"),
    ],
)
def test_a_worked_example_that_breaks_the_schema_is_named_by_file_and_line(
    tmp_path: Path, change: Any, message: str
) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    lines = (prompts / "examples.jsonl").read_text().splitlines()
    item = json.loads(lines[1])
    item["answer"] = change(item["answer"])
    lines[1] = json.dumps(item)
    (prompts / "examples.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(PromptError, match=rf"(?s)examples.jsonl:2: .*{message}"):
        make(tmp_path, FakeBackend(), prompts_dir=prompts)


def test_a_worked_example_that_is_not_json_is_named_by_file_and_line(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    with (prompts / "examples.jsonl").open("a") as fh:
        fh.write('{"title": "T", "abstract": "A."\n')
    with pytest.raises(PromptError, match=r"examples.jsonl:\d+: not a JSON object"):
        make(tmp_path, FakeBackend(), prompts_dir=prompts)


async def test_template_syntax_in_abstract_reaches_the_model_verbatim(tmp_path: Path) -> None:
    p = Paper.from_text("Templated", "We show {{ 7*7 }} and {% if x %} literally. It works.")
    backend = FakeBackend(responder=valid_answer)
    async with make(tmp_path, backend) as ex:
        await ex.extract(p)
    assert "{{ 7*7 }}" in backend.calls[0][-1]["content"]
    assert "{% if x %}" in backend.calls[0][-1]["content"]


@pytest.mark.parametrize("field", ["method_description", "category_reasoning", "claims[0].statement"])
async def test_a_blank_field_the_record_needs_is_re_asked_not_a_failed_paper(tmp_path: Path, field: str) -> None:
    # Seen on a dev paper: an empty method description passed the answer's checks and failed
    # the record's, after the last request, so the paper failed instead of being asked again.
    answers = iter(["", "written"])

    def answer(messages: list[dict[str, str]]) -> dict[str, Any]:
        a = valid_answer(messages)
        text = next(answers)
        if field.startswith("claims"):
            a["claims"][0]["statement"] = text
        else:
            a[field] = text
        return a

    async with make(tmp_path, FakeBackend(responder=answer), max_reasks=1) as ex:
        result = await ex.extract(paper())
    assert result.provenance.reasks == 1
    record = result.record
    written = {
        "method_description": record.method.description,
        "category_reasoning": record.category.rationale,
        "claims[0].statement": record.claims[0].statement,
    }
    assert written[field] == "written"
