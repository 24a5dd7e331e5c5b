"""Integration: the real openai client and instructor against llama-cpp-python's server on
loopback, running real GGUF models. No network, no key."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from summarizer.extract import Extractor
from summarizer.llm import EmbeddedBackend, EmbeddedServer
from summarizer.models import tiny_model_path
from summarizer.schemas import Failure, PaperRecord, Result, find_verbatim
from summarizer.settings import Settings
from summarizer.sources import read_papers
from summarizer.taxonomy import load_taxonomy

ROOT = Path(__file__).resolve().parent.parent
SEED_002 = ROOT / "examples/seeds/002_2f4c7783e71f772c.txt"

pytestmark = pytest.mark.embedded


async def test_tiny_model_wiring_through_the_real_server(tmp_path: Path) -> None:
    settings = Settings(model_path=tiny_model_path(), cache_dir=tmp_path / "cache", max_reasks=0, max_tokens=400)
    paper = read_papers(SEED_002)[0]
    async with Extractor(settings) as ex:
        assert isinstance(ex.backend, EmbeddedBackend)
        outcome = await ex.extract_or_failure(paper)
        server = ex.backend._server
        assert server is not None and server.process is not None and server.process.poll() is None
        process = server.process
    # Quality is irrelevant for a 135M model; the path is what is tested: a real request
    # went through and came back as a verified record or a recorded failure with a reason.
    if isinstance(outcome, Result):
        assert outcome.provenance.usage.prompt_tokens > 0
        for claim in outcome.record.claims:
            assert find_verbatim(claim.evidence, paper.abstract)
    else:
        assert isinstance(outcome, Failure) and outcome.attempts >= 1 and outcome.reason
    assert process.poll() is not None, "the embedded server must stop with the extractor"


def test_server_start_failure_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 100)
    server = EmbeddedServer(bogus, startup_timeout_s=120)
    with pytest.raises(Exception, match="exited during start-up"):
        server.start()


def run_cli(*args: str) -> tuple[dict[str, object], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "summarizer.cli", *args], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), elapsed


def test_default_model_summarizes_a_seed_paper_then_hits_the_cache(tmp_path: Path) -> None:
    args = ("summarize", str(SEED_002), "--paper", "#1", "--json", "--cache-dir", str(tmp_path / "cache"))
    first, cold = run_cli(*args)
    paper = read_papers(SEED_002)[0]
    taxonomy = load_taxonomy(ROOT / "prompts/taxonomy.toml")
    record = PaperRecord.model_validate(
        first["record"], context={"abstract": paper.abstract, **taxonomy.validation_context()}
    )
    assert record.paper_id == paper.id
    quotes = [c.evidence for c in record.claims] + [d.evidence for d in record.datasets]
    assert quotes and all(find_verbatim(q, paper.abstract) for q in quotes)
    provenance = first["provenance"]
    assert isinstance(provenance, dict) and provenance["cache_hit"] is False
    second, warm = run_cli(*args)
    assert isinstance(second["provenance"], dict) and second["provenance"]["cache_hit"] is True
    assert second["record"] == first["record"]
    print(f"\nuncached: {cold:.1f}s (model latency {provenance['latency_s']}s); cached: {warm:.2f}s")


async def test_a_one_token_question_is_scored_from_the_real_servers_logprobs(tmp_path: Path) -> None:
    # The scored-decisions path: the real openai client asks for one token with top_logprobs
    # from llama-cpp-python's server; the answer is the server's distribution, not a generated pick.
    from summarizer.decisions import BINARY, normalise, option_logprobs

    settings = Settings(model_path=tiny_model_path(), cache_dir=tmp_path / "cache")
    backend = EmbeddedBackend(settings)
    try:
        messages = [
            {"role": "system", "content": "Answer with one word."},
            {"role": "user", "content": "Is the sky blue on a clear day? Answer Yes or No."},
        ]
        choice = await backend.choose(messages, BINARY)
    finally:
        await backend.aclose()
    assert choice.top is not None and choice.picked is None
    assert len(choice.top) > 2 and all(lp <= 0.0 for _, lp in choice.top)
    p = normalise(option_logprobs(choice.top, BINARY))
    assert abs(sum(p.values()) - 1.0) < 1e-9
    assert choice.usage.prompt_tokens > 0 and choice.stats.requests == 1


async def test_the_scored_pipeline_runs_against_the_real_server(tmp_path: Path) -> None:
    # The generated answer, then questions scored from the server's log-probabilities, through
    # the real openai client and instructor; quality is irrelevant for the 135M model.
    settings = Settings(
        model_path=tiny_model_path(), cache_dir=tmp_path / "cache", decisions="scored", max_reasks=0, max_tokens=300
    )
    paper = read_papers(SEED_002)[0]
    async with Extractor(settings) as ex:
        assert ex.scored is not None
        outcome = await ex.extract_or_failure(paper)
    if isinstance(outcome, Result):
        confidence = outcome.record.confidence
        assert confidence is not None and confidence.subject is not None and 0.0 <= confidence.subject <= 1.0
        assert outcome.provenance.attempts > 2  # the generated request and the questions
        assert all(find_verbatim(c.evidence, paper.abstract) for c in outcome.record.claims)
    else:
        assert isinstance(outcome, Failure) and outcome.attempts > 2 and outcome.reason
