"""One paper in, one verified record out.

The model never copies quotes: it cites abstract sentences by number, and the code
resolves each number to the verbatim sentence. That costs far fewer output tokens (the
dominant cost on a CPU) and makes a wrong quote impossible. Names the model must copy
(method, datasets) are checked against the abstract; a failed check goes back to the model
as a re-ask, and after the last re-ask the paper gets a recorded failure, never a record
with made-up parts.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from .cache import ResponseCache, cache_key, canonical_json
from .errors import ExtractionFailed, LLMError, SummarizerError
from .llm import Backend, make_backend
from .prompts import PromptSet, load_prompts
from .schemas import (
    MAX_CLAIMS,
    MAX_SECONDARY,
    MAX_SUMMARY_WORDS,
    Failure,
    Paper,
    PaperRecord,
    Provenance,
    Result,
    Usage,
    find_name,
    normalise_ws,
)
from .settings import Settings
from .taxonomy import NOT_ALIGNMENT, Taxonomy, load_taxonomy

# --------------------------------------------------------------------------------------
# Sentences

_ABBREVIATIONS = frozenset("e.g i.e et al etc vs cf fig figs eq eqs sec no approx resp incl dr mr ms prof st".split())
_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """Split an abstract into sentences that are verbatim substrings of it (whitespace aside)."""
    text = normalise_ws(text)
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        candidate = text[start : match.start()].rstrip()
        last_word = candidate.rsplit(" ", 1)[-1].rstrip(".").lstrip("([{\"'").lower()
        # "et al.", "e.g.", initials ("J. Smith") and decimals do not end a sentence.
        if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def truncate_abstract(abstract: str, max_chars: int) -> tuple[str, str | None]:
    """Cut an over-long abstract at a sentence end so it fits the model's context."""
    if len(abstract) <= max_chars:
        return abstract, None
    cut = abstract[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    if end > max_chars // 2:
        cut = cut[: end + 1]
    return cut, f"abstract truncated from {len(abstract):,} to {len(cut):,} characters to fit the model's context"


# --------------------------------------------------------------------------------------
# What the model answers (built from the taxonomy so decoding is constrained to its ids)

# Validators need the paper's sentences. instructor would render the messages as Jinja
# templates if a `context` were passed (an abstract with "{{" would break or be rewritten),
# so the context travels in a task-local variable instead.
_PAPER_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("paper_context", default=None)


class DatasetAnswer(BaseModel):
    name: str = Field(max_length=80, description="name exactly as written in the abstract")
    role: Literal["introduced", "used"]
    sentence: int = Field(description="number of the sentence that names it")


class ClaimAnswer(BaseModel):
    statement: str = Field(max_length=220, description="a key finding, in your words")
    sentence: int = Field(description="number of the sentence that supports it")


class AnswerBase(BaseModel):
    """Shared checks of every answer model; subclasses add the taxonomy's enums."""

    @model_validator(mode="after")
    def _check_against_paper(self) -> AnswerBase:
        ctx = _PAPER_CONTEXT.get()
        if ctx is None:
            return self
        sentences: list[str] = ctx["sentences"]
        abstract: str = ctx["abstract"]
        n = len(sentences)
        problems: list[str] = []

        def check_sentence(what: str, number: int | None) -> None:
            if number is not None and not 1 <= number <= n:
                problems.append(f"{what}: sentence {number} does not exist (the abstract has sentences 1-{n})")

        data = self.__dict__
        words = len(str(data["summary"]).split())
        if words > MAX_SUMMARY_WORDS:
            problems.append(f"summary has {words} words; write at most {MAX_SUMMARY_WORDS}")
        name = data["method_name"]
        if name is not None and find_name(name, abstract) is None:
            problems.append(f"method_name {name!r} does not appear in the abstract: copy it exactly, or use null")
        check_sentence("method_sentence", data["method_sentence"])
        for d in data["datasets"]:
            if find_name(d.name, abstract) is None:
                problems.append(f"dataset {d.name!r} does not appear in the abstract: copy names exactly, or drop it")
            check_sentence(f"dataset {d.name!r}", d.sentence)
        for i, c in enumerate(data["claims"], 1):
            check_sentence(f"claim {i}", c.sentence)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def build_answer_model(taxonomy: Taxonomy) -> type[AnswerBase]:
    categories: Any = Literal[tuple(taxonomy.category_ids)]
    contributions: Any = Literal[tuple(taxonomy.contribution_ids)]
    # Field order is the order of generation: the label comes after the reasoning that
    # should decide it, and the summary comes first so the model has read the paper.
    model = create_model(
        "PaperAnswer",
        __base__=AnswerBase,
        summary=(str, Field(max_length=420, description=f"at most {MAX_SUMMARY_WORDS} words")),
        contribution_type=(contributions, ...),
        method_name=(str | None, Field(max_length=120)),
        method_description=(str, Field(max_length=300)),
        method_sentence=(int | None, ...),
        datasets=(list[DatasetAnswer], Field(max_length=8)),
        claims=(list[ClaimAnswer], Field(min_length=1, max_length=MAX_CLAIMS)),
        category_reasoning=(str, Field(max_length=300)),
        about_ai_alignment=(bool, ...),
        primary_category=(categories, ...),
        secondary_categories=(list[categories], Field(max_length=MAX_SECONDARY)),
    )
    return model


def answer_to_record(
    paper: Paper, answer: AnswerBase, sentences: list[str], abstract: str, taxonomy: Taxonomy
) -> PaperRecord:
    """Resolve sentence numbers to verbatim quotes and validate the final record."""
    a: dict[str, Any] = answer.__dict__

    def quote(number: int | None) -> str | None:
        return sentences[number - 1] if number is not None else None

    primary = a["primary_category"]
    if not a["about_ai_alignment"] and taxonomy.has_negative_class:
        # The yes/no question is easier for a small model than the nine-way label; when it
        # says "not about alignment", the label must agree.
        primary = NOT_ALIGNMENT
    seen: set[str] = set()
    datasets: list[dict[str, Any]] = []
    for d in a["datasets"]:
        name = find_name(d.name, abstract) or d.name
        if name.casefold() in seen:
            continue
        seen.add(name.casefold())
        datasets.append({"name": name, "role": d.role, "evidence": quote(d.sentence)})
    data = {
        "paper_id": paper.id,
        "title": paper.title,
        "summary": a["summary"],
        "contribution_type": a["contribution_type"],
        "method": {
            "name": a["method_name"],
            "description": a["method_description"],
            "evidence": quote(a["method_sentence"]),
        },
        "datasets": datasets,
        "claims": [{"statement": c.statement, "evidence": quote(c.sentence)} for c in a["claims"]],
        "category": {
            "primary": primary,
            "secondary": a["secondary_categories"],
            "rationale": a["category_reasoning"],
        },
    }
    return PaperRecord.model_validate(data, context={"abstract": abstract, **taxonomy.validation_context()})


# --------------------------------------------------------------------------------------
# The extractor


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Prepared:
    """Everything decided before a call: rendered messages, cache key, warnings."""

    paper: Paper
    abstract: str
    sentences: list[str]
    messages: list[dict[str, str]]
    key: str
    warnings: list[str]


class Extractor:
    """Turns papers into results. Async core; `extract_sync` is the thin sync wrapper.

    Use as an async context manager (or call `aclose`) so the embedded server stops.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        backend: Backend | None = None,
        cache: ResponseCache | None = None,
        prompts: PromptSet | None = None,
        taxonomy: Taxonomy | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.taxonomy = taxonomy or load_taxonomy(self.settings.resolved_taxonomy_path)
        self.prompts = prompts or load_prompts(self.settings.prompts_dir)
        self.backend = backend or make_backend(self.settings)
        if cache is None and self.settings.use_cache:
            cache = ResponseCache(self.settings.cache_dir)
        self.cache = cache
        self.answer_model = build_answer_model(self.taxonomy)
        # Rendered once: byte-identical across papers, so llama.cpp re-uses its KV cache.
        self.system_prompt = self.prompts.render("system.j2", taxonomy=self.taxonomy)

    @cached_property
    def schema_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.answer_model.model_json_schema()).encode()).hexdigest()

    def key_parts(self, title: str, abstract: str) -> dict[str, Any]:
        return {
            "backend": self.backend.identity,
            "prompt": self.prompts.content_hash,
            "taxonomy": self.taxonomy.content_hash,
            "schema": self.schema_hash,
            "sampling": self.settings.sampling(),
            "paper": {"title": title, "abstract": abstract},
        }

    def key_for(self, paper: Paper) -> str:
        """The cache key of `paper`, without rendering prompts (cheap: for planning and re-runs)."""
        abstract, _ = truncate_abstract(paper.abstract, self.settings.max_abstract_chars)
        return cache_key(self.key_parts(paper.title, abstract))

    def prepare(self, paper: Paper) -> Prepared:
        abstract, warning = truncate_abstract(paper.abstract, self.settings.max_abstract_chars)
        sentences = split_sentences(abstract)
        if not sentences:
            raise ExtractionFailed("the abstract is empty")
        user = self.prompts.render("user.j2", title=paper.title, sentences=sentences)
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]
        key = cache_key(self.key_parts(paper.title, abstract))
        return Prepared(paper, abstract, sentences, messages, key, [warning] if warning else [])

    def cached(self, prepared: Prepared) -> Result | None:
        if self.cache is None:
            return None
        hit = self.cache.get(prepared.key)
        if hit is None:
            return None
        result = Result.model_validate(hit)
        result.provenance.cache_hit = True
        return result

    async def extract(self, paper: Paper) -> Result:
        """Return a verified record for `paper` or raise an `LLMError` saying why not."""
        started, t0 = _now(), time.perf_counter()
        prepared = self.prepare(paper)
        hit = self.cached(prepared)
        if hit is not None:
            return hit
        token = _PAPER_CONTEXT.set({"sentences": prepared.sentences, "abstract": prepared.abstract})
        try:
            completion = await self.backend.complete(
                prepared.messages,
                self.answer_model,
                max_reasks=self.settings.max_reasks,
                sampling=_request_sampling(self.settings),
            )
        finally:
            _PAPER_CONTEXT.reset(token)
        stats = completion.stats
        try:
            record = answer_to_record(paper, completion.value, prepared.sentences, prepared.abstract, self.taxonomy)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ExtractionFailed(
                f"the answer passed the model checks but not the record checks: {exc}",
                attempts=stats.requests,
                reasks=max(stats.model_calls - 1, 0),
                last_completion=completion.raw,
                usage=completion.usage.model_dump(),
            ) from exc
        record.warnings.extend(prepared.warnings)
        provenance = Provenance(
            backend=self.backend.identity["backend"],
            model=self.backend.label,
            prompt_hash=self.prompts.content_hash[:16],
            taxonomy_hash=self.taxonomy.content_hash[:16],
            schema_hash=self.schema_hash[:16],
            cache_key=prepared.key,
            cache_hit=False,
            usage=completion.usage,
            attempts=stats.requests,
            reasks=max(stats.model_calls - 1, 0),
            latency_s=round(time.perf_counter() - t0, 3),
            started_at=started,
            finished_at=_now(),
        )
        result = Result(record=record, provenance=provenance)
        if self.cache is not None:
            self.cache.set(prepared.key, result.model_dump(mode="json"))
        return result

    async def extract_or_failure(self, paper: Paper) -> Result | Failure:
        """Like `extract`, but a paper that cannot be done becomes a `Failure` with its reason."""
        try:
            return await self.extract(paper)
        except LLMError as exc:
            return Failure(
                paper_id=paper.id,
                title=paper.title,
                error=type(exc).__name__,
                reason=exc.message,
                attempts=exc.attempts,
                reasks=exc.reasks,
                usage=Usage.model_validate(exc.usage) if exc.usage else Usage(),
                last_completion=exc.last_completion,
                source=paper.source,
                line=paper.line,
                finished_at=_now(),
            )
        except SummarizerError:
            raise

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.cache is not None:
            self.cache.close()

    async def __aenter__(self) -> Extractor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _request_sampling(settings: Settings) -> dict[str, Any]:
    sampling = {k: v for k, v in settings.sampling().items() if k in ("temperature", "top_p", "max_tokens", "seed")}
    if sampling.get("seed") is None:
        sampling.pop("seed", None)
    return sampling


async def summarize(paper: Paper, settings: Settings | None = None) -> Result:
    """Extract one paper with a fresh extractor (the per-paper CLI's path)."""
    async with Extractor(settings) as extractor:
        return await extractor.extract(paper)


def summarize_sync(paper: Paper, settings: Settings | None = None) -> Result:
    import asyncio

    return asyncio.run(summarize(paper, settings))
