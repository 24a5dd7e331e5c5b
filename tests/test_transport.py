"""The real transport path against a scripted, fault-injecting OpenAI-compatible server.

Every test here runs the actual `openai` client, instructor's patch and re-asks, tenacity's
transport retries and the extractor's validation, over HTTP on loopback: nothing in the
model path is faked, only the server's answers are scripted (`summarizer.testserver`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

from summarizer.cache import canonical_json
from summarizer.errors import ConfigError, ExtractionFailed, ServiceError
from summarizer.extract import Extractor, split_sentences
from summarizer.fakes import names_of, sentences_of, valid_answer
from summarizer.schemas import Failure, Paper, Result, normalise_ws
from summarizer.settings import Settings
from summarizer.sources import read_papers
from summarizer.spans import candidate_names
from summarizer.testserver import MISSING_DATASET, MISSING_NAME, Faults, ScriptedServer, paper_messages

SEEDS = Path(__file__).parent.parent / "examples" / "seeds"
PAPERS = read_papers(SEEDS / "000_8bcbaaa93f595634.txt")
PAPER = PAPERS[0]
SENTINEL = "sk-test-SENTINEL-1234"


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: a developer's OPENAI_* / SUMMARIZER_* must not leak in."""
    import os

    for name in list(os.environ):
        if name.startswith(("SUMMARIZER_", "OPENAI_")):
            monkeypatch.delenv(name)


def settings_for(server: ScriptedServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": server.base_url,
        "backend": "openai",
        "model": "scripted",
        "instructor_mode": "json",
        "cache_dir": tmp_path / "cache",
        "timeout_s": 2.0,
        "max_retries": 3,
        "retry_max_wait_s": 0.02,
        "max_reasks": 2,
    }
    values.update(overrides)
    return Settings(**values)


async def run(settings: Settings, paper: Paper = PAPER) -> Result | Failure:
    async with Extractor(settings) as extractor:
        return await extractor.extract_or_failure(paper)


def ok(outcome: Result | Failure) -> Result:
    assert isinstance(outcome, Result), f"expected a record, got {outcome!r}"
    return outcome


def failed(outcome: Result | Failure) -> Failure:
    assert isinstance(outcome, Failure), f"expected a failure, got {outcome!r}"
    return outcome


def assert_verbatim(result: Result, paper: Paper) -> None:
    """Every evidence string is one of the abstract's sentences, verbatim (whitespace aside)."""
    abstract = normalise_ws(paper.abstract)
    sentences = set(split_sentences(paper.abstract))
    record = result.record
    evidence = [c.evidence for c in record.claims] + [d.evidence for d in record.datasets]
    if record.method.evidence is not None:
        evidence.append(record.method.evidence)
    assert evidence
    for quote in evidence:
        assert quote in abstract
        assert quote in sentences
    for name in [record.method.name, *(d.name for d in record.datasets)]:
        assert name is None or name in abstract


def rich_responder(request: dict[str, Any]) -> dict[str, Any]:
    """A valid answer that uses every part: a method name, a dataset, several claims, all from the abstract."""
    messages = paper_messages(request["messages"])
    sentences = sentences_of(messages)
    answer = valid_answer(messages)
    named = names_of(messages)
    if named:
        answer["method_name"] = named[0]
    if datasets := names_of(messages, datasets_only=True):
        answer["datasets"] = [{"name": datasets[-1], "role": "used"}]
    citable = list(range(1 + len(sentences) // 3, len(sentences) + 1))[-4:]  # claims cite the last two thirds
    answer["claims"] = [{"sentence": i, "statement": f"Finding {i}."} for i in citable]
    return answer


# --------------------------------------------------------------------------------------
# Transport retries


async def test_429_waits_for_retry_after(tmp_path: Path) -> None:
    with ScriptedServer(script=[("status", 429, {"Retry-After": "0.4"})]) as server:
        started = time.monotonic()
        result = ok(await run(settings_for(server, tmp_path, retry_max_wait_s=5.0)))
        elapsed = time.monotonic() - started
        first, second = server.hits
    assert server.outcomes == ["429", "ok"]
    assert (result.provenance.attempts, result.provenance.reasks) == (2, 0)
    assert elapsed >= 0.39
    # The header decided the wait, not the exponential backoff (which starts at 1 s).
    assert 0.39 <= second.at - first.at < 1.0


async def test_long_retry_after_is_capped_by_retry_max_wait(tmp_path: Path) -> None:
    with ScriptedServer(script=[("status", 429, {"Retry-After": "30"})]) as server:
        started = time.monotonic()
        result = ok(await run(settings_for(server, tmp_path, retry_max_wait_s=0.3)))
        elapsed = time.monotonic() - started
        gap = server.hits[1].at - server.hits[0].at
    assert result.provenance.attempts == 2
    assert 0.29 <= gap < 5.0
    assert elapsed < 5.0


@pytest.mark.parametrize("code", [408, 500, 502, 503])
async def test_408_and_5xx_are_retried(tmp_path: Path, code: int) -> None:
    with ScriptedServer(script=[("status", code), ("status", code)]) as server:
        result = ok(await run(settings_for(server, tmp_path)))
        assert server.outcomes == ["4xx" if code == 408 else "5xx"] * 2 + ["ok"]
    assert (result.provenance.attempts, result.provenance.reasks) == (3, 0)


@pytest.mark.parametrize("action", [("reset",), ("cut_body",)], ids=["reset", "body-cut-short"])
async def test_dropped_connection_is_retried(tmp_path: Path, action: tuple[str]) -> None:
    with ScriptedServer(script=[action]) as server:
        result = ok(await run(settings_for(server, tmp_path)))
    assert server.outcomes == [action[0], "ok"]
    assert result.provenance.attempts == 2


async def test_hang_past_timeout_is_retried(tmp_path: Path) -> None:
    with ScriptedServer(script=[("hang", 3.0)]) as server:
        started = time.monotonic()
        result = ok(await run(settings_for(server, tmp_path, timeout_s=0.3)))
        elapsed = time.monotonic() - started
    assert server.outcomes == ["hang", "ok"]
    assert result.provenance.attempts == 2
    assert 0.3 <= elapsed < 2.5  # the client gave up at its timeout, not at the server's 3 s


async def test_transport_retries_and_reasks_are_counted_apart(tmp_path: Path) -> None:
    script = [("status", 429, {"Retry-After": "0"}), ("reset",), ("bad_schema",), ("status", 503), ("ok",)]
    with ScriptedServer(script=script) as server:
        result = ok(await run(settings_for(server, tmp_path)))
    # Five requests reached the server; two of them were answers the model gave (one re-ask).
    assert len(server.requests) == 5
    assert (result.provenance.attempts, result.provenance.reasks) == (5, 1)


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        (("status", 503), "HTTP 503"),
        (("status", 429, {"Retry-After": "0"}), "HTTP 429"),
        (("hang", 2.0), "timed out"),
        (("reset",), "connection failed"),
    ],
    ids=["503", "429", "timeout", "reset"],
)
async def test_transport_budget_exhausted_is_a_failure(tmp_path: Path, action: tuple[Any, ...], reason: str) -> None:
    with ScriptedServer(script=[action] * 10) as server:
        failure = failed(await run(settings_for(server, tmp_path, max_retries=2, timeout_s=0.3)))
        sent = len(server.requests)
    assert failure.error == "TransportError"
    assert reason in failure.reason and "3 request(s)" in failure.reason
    assert failure.attempts == 3 == sent  # max_retries + 1, and not one more
    assert failure.reasks == 0


@pytest.mark.parametrize("code", [400, 422])
async def test_other_4xx_is_not_retried(tmp_path: Path, code: int) -> None:
    with ScriptedServer(script=[("status", code)]) as server:
        failure = failed(await run(settings_for(server, tmp_path)))
        sent = len(server.requests)
    assert sent == 1
    assert failure.error == "TransportError"
    assert failure.reason.startswith(f"HTTP {code}")
    assert (failure.attempts, failure.reasks) == (1, 0)


@pytest.mark.parametrize("code", [401, 403, 404])
async def test_a_refused_key_or_address_is_a_run_level_error_not_a_paper_failure(tmp_path: Path, code: int) -> None:
    # No other paper could do better: the batch must stop, not log one failure per paper.
    with ScriptedServer(script=[("status", code)]) as server:
        with pytest.raises(ServiceError) as refused:
            await run(settings_for(server, tmp_path))
        sent, base_url = len(server.requests), server.base_url
    assert sent == 1 and refused.value.status == code
    assert f"HTTP {code}" in refused.value.message and base_url in refused.value.message


# --------------------------------------------------------------------------------------
# Validation re-asks


@pytest.mark.parametrize("mode", ["json", "json_schema", "md_json", "llamacpp_json", "tools"])
async def test_bad_schema_then_good_is_one_reask(tmp_path: Path, mode: str) -> None:
    with ScriptedServer(script=[("bad_schema",)]) as server:
        result = ok(await run(settings_for(server, tmp_path, instructor_mode=mode)))
        first, second = server.requests
    assert (result.provenance.attempts, result.provenance.reasks) == (2, 1)
    # The re-ask carries the rejected answer and the validation errors back to the model.
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert "claims" in second["messages"][-1]["content"]
    assert "primary_category" in second["messages"][-1]["content"]
    assert_verbatim(result, PAPER)


async def test_bad_answers_past_max_reasks_fail_with_the_reason(tmp_path: Path) -> None:
    with ScriptedServer(script=[("bad_schema",)] * 10) as server:
        failure = failed(await run(settings_for(server, tmp_path, max_reasks=2)))
        sent = len(server.requests)
    assert failure.error == "ExtractionFailed"
    assert "no valid answer after 3 attempt(s)" in failure.reason
    assert "claims" in failure.reason and "primary_category" in failure.reason
    assert (failure.attempts, failure.reasks) == (3, 2) and sent == 3
    assert failure.last_completion is not None and "no_such_category" in failure.last_completion
    assert failure.usage.prompt_tokens > 0  # paid-for tokens are accounted even without a record


async def test_name_not_in_abstract_is_rejected_and_reasked(tmp_path: Path) -> None:
    with ScriptedServer(script=[("bad_quote",)]) as server:
        result = ok(await run(settings_for(server, tmp_path)))
        reask = server.requests[1]["messages"][-1]["content"]
    assert result.provenance.reasks == 1
    # Names are enums of the abstract's candidate names: the error lists the allowed ones.
    assert "method_name" in reask and MISSING_NAME in reask and "Input should be" in reask
    assert "datasets" in reask and MISSING_DATASET in reask
    assert result.record.method.name != MISSING_NAME
    assert MISSING_DATASET not in [d.name for d in result.record.datasets]


async def test_name_not_in_abstract_never_becomes_a_record(tmp_path: Path) -> None:
    with ScriptedServer(script=[("bad_quote",)] * 10) as server:
        failure = failed(await run(settings_for(server, tmp_path, max_reasks=1)))
    assert failure.error == "ExtractionFailed"
    assert "method_name" in failure.reason and "Input should be" in failure.reason
    assert (failure.attempts, failure.reasks) == (2, 1)


@pytest.mark.parametrize("mode", ["json", "tools"])
async def test_truncated_and_empty_content_are_reasked(tmp_path: Path, mode: str) -> None:
    with ScriptedServer(script=[("truncated",), ("empty",)]) as server:
        result = ok(await run(settings_for(server, tmp_path, max_reasks=2, instructor_mode=mode)))
    assert server.outcomes == ["truncated", "empty", "ok"]
    assert (result.provenance.attempts, result.provenance.reasks) == (3, 2)
    assert_verbatim(result, PAPER)


async def test_truncated_and_empty_content_never_become_a_record(tmp_path: Path) -> None:
    with ScriptedServer(script=[("truncated",), ("empty",)] * 5) as server:
        settings_ = settings_for(server, tmp_path, max_reasks=1)
        async with Extractor(settings_) as extractor:
            failure = failed(await extractor.extract_or_failure(PAPER))
            assert extractor.cache is not None
            assert extractor.cache.get(extractor.prepare(PAPER).key) is None  # nothing cached either
    assert failure.error == "ExtractionFailed"
    assert "json" in failure.reason.lower()
    assert (failure.attempts, failure.reasks) == (2, 1)


async def test_answer_cut_at_max_tokens_fails_without_reask(tmp_path: Path) -> None:
    with ScriptedServer(script=[("length",)]) as server:
        failure = failed(await run(settings_for(server, tmp_path)))
        sent = len(server.requests)
    assert failure.error == "ExtractionFailed"
    assert "max_tokens=900" in failure.reason
    assert failure.attempts == 1 == sent


# --------------------------------------------------------------------------------------
# Records, modes, templating, secrets


async def test_every_evidence_string_is_verbatim(tmp_path: Path) -> None:
    with ScriptedServer(responder=rich_responder) as server:
        async with Extractor(settings_for(server, tmp_path)) as extractor:
            outcomes = await asyncio.gather(*(extractor.extract_or_failure(p) for p in PAPERS))
    for paper, outcome in zip(PAPERS, outcomes, strict=True):
        result = ok(outcome)
        assert (result.record.method.name is not None) == bool(candidate_names(paper.abstract))
        n = len(split_sentences(paper.abstract))
        assert len(result.record.claims) == min(n - n // 3, 4)
        assert_verbatim(result, paper)


async def test_tools_mode_works_through_the_same_server(tmp_path: Path) -> None:
    with ScriptedServer(script=[("bad_schema",)], responder=rich_responder) as server:
        result = ok(await run(settings_for(server, tmp_path, instructor_mode="tools")))
        first, second = server.requests
    assert first["tools"][0]["function"]["name"] and "response_format" not in first
    assert second["messages"][-1]["role"] == "tool"  # the re-ask went back as a tool result
    assert (result.provenance.attempts, result.provenance.reasks) == (2, 1)
    assert result.provenance.usage.completion_tokens > 0
    assert_verbatim(result, PAPER)


@pytest.mark.parametrize("mode", ["json", "tools"])
async def test_paper_text_is_never_rendered_as_a_template(tmp_path: Path, mode: str) -> None:
    paper = Paper.from_text(
        "Templates {{ title }} in titles",
        "We study {{ 7*7 }} injection in prompts. The abstract also says {% if %} and {{ config }} without "
        "closing them. Results hold on all inputs.",
    )
    with ScriptedServer(script=[("bad_schema",)]) as server:
        result = ok(await run(settings_for(server, tmp_path, instructor_mode=mode), paper))
        requests = server.requests
    assert len(requests) == 2  # the first answer and the re-ask
    paper_turn = len(requests[0]["messages"]) - 1  # after the system prompt and worked examples
    for request in requests:
        user = request["messages"][paper_turn]["content"]
        for literal in ("Templates {{ title }} in titles", "{{ 7*7 }}", "{% if %}", "{{ config }}"):
            assert literal in user
        assert "49" not in user
    assert requests[1]["messages"][: paper_turn + 1] == requests[0]["messages"]
    assert_verbatim(result, paper)


async def test_api_key_never_leaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script = [("status", 401), ("bad_schema",), ("bad_schema",), ("status", 503), ("ok",)]
    with ScriptedServer(script=script) as server:
        settings_ = settings_for(server, tmp_path, api_key=SENTINEL, max_retries=0, max_reasks=1)
        async with Extractor(settings_) as extractor:
            with pytest.raises(ServiceError) as auth:
                await extractor.extract(PAPER)
            with pytest.raises(ExtractionFailed) as invalid:
                await extractor.extract(PAPER)
            failure = failed(await extractor.extract_or_failure(PAPER))
            result = ok(await extractor.extract_or_failure(PAPER))
            key_material = canonical_json(extractor.key_parts(PAPER.title, PAPER.abstract))
        sent = [hit.headers.get("authorization") for hit in server.hits]
    assert sent == [f"Bearer {SENTINEL}"] * 5  # the key was really in play
    texts = [
        failure.model_dump_json(),
        result.model_dump_json(),
        key_material,
        caplog.text,
        repr(settings_),
        *("".join(traceback.format_exception(e.value)) for e in (auth, invalid)),
        *(str(e.value) + repr(e.value) for e in (auth, invalid)),
    ]
    for text in texts:
        assert SENTINEL not in text
    assert "HTTP 401" in auth.value.message


def test_credentials_in_the_base_url_are_refused_without_being_echoed(tmp_path: Path) -> None:
    # openai's debug log prints the base URL, so user:password@ in it cannot be made safe.
    base_url = f"http://user:{SENTINEL}@127.0.0.1:9/v1"
    with pytest.raises(ConfigError) as refused:
        Extractor(Settings(base_url=base_url, backend="openai", model="m", cache_dir=tmp_path))
    assert "credentials" in refused.value.message and SENTINEL not in str(refused.value) + repr(refused.value)


def test_credentials_in_the_base_url_query_are_refused_and_stay_out_of_cache_keys(tmp_path: Path) -> None:
    from summarizer.llm import redact_url

    base_url = f"http://127.0.0.1:9/v1?api-key={SENTINEL}"
    # openai's debug log prints the base URL: a query string is refused like user:password@.
    with pytest.raises(ConfigError) as refused:
        Extractor(Settings(base_url=base_url, backend="openai", model="m", api_key=SENTINEL, cache_dir=tmp_path))
    assert "query string" in refused.value.message and SENTINEL not in str(refused.value) + repr(refused.value)
    # And the URL that goes into identities and cache keys never had it anyway.
    assert redact_url(base_url) == "http://127.0.0.1:9/v1"


async def test_model_is_resolved_from_the_server(tmp_path: Path) -> None:
    with ScriptedServer(model="served-model") as server:
        result = ok(await run(settings_for(server, tmp_path, model=None)))
        assert server.requests[0]["model"] == "served-model"
    assert result.provenance.model == "openai:served-model"


# --------------------------------------------------------------------------------------
# Load and chaos


async def test_64_concurrent_requests_are_served_in_parallel(tmp_path: Path) -> None:
    papers = [
        Paper.from_text(f"Concurrent paper number {i}", f"We study case {i} of concurrency. It works on CaseSet{i}.")
        for i in range(64)
    ]
    with ScriptedServer(delay_s=0.5) as server:
        async with Extractor(settings_for(server, tmp_path, timeout_s=10.0)) as extractor:
            started = time.monotonic()
            outcomes = await asyncio.gather(*(extractor.extract_or_failure(p) for p in papers))
            elapsed = time.monotonic() - started
    assert all(isinstance(o, Result) for o in outcomes)
    assert server.counts["ok"] == 64
    assert server.peak_in_flight >= 32
    assert elapsed < 8.0  # served one at a time it would take 32 s


async def test_chaos_every_paper_is_a_verified_record_or_a_failure(tmp_path: Path) -> None:
    # One of each fault first (whichever requests come first get them), then seeded random faults.
    kinds = ["429", "5xx", "reset", "hang", "truncated", "bad_schema", "bad_quote", "empty", "slow", "cut_body"]
    script: list[tuple[Any, ...]] = [
        ("status", 429, {"Retry-After": "0.01"}), ("status", 502), ("reset",), ("hang", 2.0), ("truncated",),
        ("bad_schema",), ("bad_quote",), ("empty",), ("slow", 0.05), ("cut_body",),
    ]  # fmt: skip
    faults = Faults(
        rate_429=0.1, retry_after_s=0.01, rate_5xx=0.1, rate_reset=0.05, rate_hang=0.05, hang_s=2.0,
        rate_truncated=0.05, rate_bad_schema=0.1, rate_bad_quote=0.1, rate_empty=0.05,
        rate_slow=0.05, slow_s=0.05, seed=11,
    )  # fmt: skip
    papers = [Paper.from_text(f"{p.title} (copy {i})", p.abstract) for i, p in enumerate(PAPERS * 3)]
    with ScriptedServer(script=script, faults=faults, responder=rich_responder) as server:
        settings_ = settings_for(server, tmp_path, timeout_s=0.4, max_retries=3, max_reasks=2)
        async with Extractor(settings_) as extractor:
            outcomes = await asyncio.gather(*(extractor.extract_or_failure(p) for p in papers))
        sent = len(server.requests)
        counts = dict(server.counts)
    assert all(counts.get(kind, 0) >= 1 for kind in kinds), counts
    assert sum(counts.values()) == sent
    attempts = 0
    for paper, outcome in zip(papers, outcomes, strict=True):
        attempts += outcome.provenance.attempts if isinstance(outcome, Result) else outcome.attempts
        if isinstance(outcome, Result):
            assert_verbatim(outcome, paper)
            assert outcome.record.method.name != MISSING_NAME
        else:
            assert outcome.error in ("TransportError", "ExtractionFailed") and outcome.reason
    assert attempts == sent  # every request the server saw is accounted to exactly one paper


def test_faults_are_seeded_and_validated() -> None:
    faults = Faults(rate_429=0.2, rate_5xx=0.2, rate_reset=0.2, rate_empty=0.2, seed=3)
    rng_a, rng_b = random.Random(3), random.Random(3)
    first = [faults.draw(rng_a) for _ in range(60)]
    second = [faults.draw(rng_b) for _ in range(60)]
    assert first == second
    assert {a[0] for a in first} >= {"status", "reset", "empty", "ok"}
    with pytest.raises(ValueError):
        Faults(rate_429=0.6, rate_5xx=0.6)
