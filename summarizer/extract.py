"""One paper in, one verified record out.

The model never copies quotes: it cites abstract sentences by number, and the code
resolves each number to the verbatim sentence. That costs far fewer output tokens (the
dominant cost on a CPU) and makes a wrong quote impossible. Names the model must copy
(method, datasets) are checked against the abstract; a failed check goes back to the model
as a re-ask, and after the last re-ask the paper gets a recorded failure, never a record
with made-up parts.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from typing import Any, Literal, Optional

from pydantic import Field, ValidationError, create_model

from .answers import AnswerBase, choice_of
from .cache import KEY_VERSION, ResponseCache, canonical_json
from .coldstart import Listener, listen
from .errors import ExtractionFailed, LLMError, PromptError, SummarizerError
from .guard import withheld_sentences
from .llm import Backend, make_backend
from .prompts import Example, PromptSet, load_prompts
from .schemas import (
    MAX_CLAIMS,
    MAX_SECONDARY,
    Failure,
    Paper,
    PaperRecord,
    PaperSource,
    Provenance,
    Result,
    Usage,
    read_back,
)
from .scored import SCORED_TEMPLATES, ScoredPipeline, SubAnswers
from .settings import Settings
from .spans import candidate_names, not_a_dataset, sentence_containing, split_sentences
from .taxonomy import NOT_ALIGNMENT, Taxonomy, load_taxonomy

# The prompt files, taxonomy and schema template are hashed into the cache key, but the code
# between them and the model (sentence splitting, candidate names, the guard, per-paper enums,
# turning an answer into a record) is not. Bump this when that code changes what a paper's
# messages or record are; tests/test_cache_keys.py holds a digest of every seed paper's rendered
# prompt and schema and fails until the version and digest are updated together.
RENDER_VERSION = 2
#: The same for the scored pipeline (`scored.py`): its questions and how decisions overlay the answer.
SCORED_RENDER_VERSION = 5


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


def build_answer_model(taxonomy: Taxonomy, names: tuple[str, ...], n_sentences: int) -> type[AnswerBase]:
    """The response schema for one paper: every choice the model makes is an enum.

    Categories and contribution types come from the taxonomy; method and dataset names from
    the abstract's candidate names; evidence from its sentence numbers. Decoding constrained
    to this schema cannot produce a name or a citation that is not in the abstract.
    """
    datasets = tuple(n for n in names if not not_a_dataset(n))
    return _answer_model(tuple(taxonomy.category_ids), tuple(taxonomy.contribution_ids), names, datasets, n_sentences)


@lru_cache(maxsize=512)
def _answer_model(
    category_ids: tuple[str, ...],
    contribution_ids: tuple[str, ...],
    names: tuple[str, ...],
    dataset_names: tuple[str, ...],
    n_sentences: int,
) -> type[AnswerBase]:
    categories = choice_of(category_ids)
    contributions = choice_of(contribution_ids)
    # Findings sit late in an abstract and background early: of 166 gold claims, 10 cite
    # one of the first three sentences. A small model left free cites sentence 1 by habit,
    # so claims may only cite sentences after the first third.
    first_claim = 1 + n_sentences // 3
    sentence = choice_of(tuple(range(first_claim, max(n_sentences, 1) + 1)))
    name = choice_of(names) if names else None
    dataset_fields: dict[str, Any] = {
        "name": (choice_of(dataset_names) if dataset_names else str, ...),
        "role": (Literal["introduced", "used"], ...),
    }
    dataset = create_model("DatasetAnswer", **dataset_fields)
    claim = create_model(
        "ClaimAnswer",
        sentence=(sentence, Field(description="number of a sentence that states a finding")),
        statement=(str, Field(max_length=200, description="that finding in at most 15 words")),
    )
    # Field order is generation order: the summary first (the model reads the paper), the
    # label last, after the reasoning that should decide it.
    fields: dict[str, Any] = {
        "summary": (str, Field(max_length=700)),
        "contribution_type": (contributions, ...),
        "method_name": (Optional[name] if names else None, ...),  # noqa: UP045 (a runtime type)
        "method_description": (str, Field(max_length=300)),
        "datasets": (list[dataset], Field(max_length=8 if dataset_names else 0)),
        "claims": (list[claim], Field(min_length=1, max_length=MAX_CLAIMS)),
        "category_reasoning": (str, Field(max_length=240)),
        "about_ai_alignment": (bool, ...),
        "primary_category": (categories, ...),
        "secondary_categories": (list[categories], Field(max_length=MAX_SECONDARY)),  # type: ignore[valid-type]
    }
    return create_model("PaperAnswer", __base__=AnswerBase, **fields)


def answer_to_record(
    paper: Paper, answer: AnswerBase, sentences: list[str], abstract: str, taxonomy: Taxonomy
) -> PaperRecord:
    """Resolve cited sentences and names to verbatim text and validate the final record."""
    a: dict[str, Any] = answer.__dict__

    def evidence_for(name: str) -> str:
        number = sentence_containing(name, sentences)
        return sentences[number - 1] if number is not None else name

    primary = a["primary_category"]
    if not a["about_ai_alignment"] and taxonomy.has_negative_class:
        # The yes/no question is easier for a small model than the nine-way label; when it
        # says "not about alignment", the label must agree.
        primary = NOT_ALIGNMENT
    method = a["method_name"]
    seen: set[str] = set()
    datasets: list[dict[str, Any]] = []
    for d in a["datasets"]:
        if d.name.casefold() in seen or d.name == method:
            continue
        seen.add(d.name.casefold())
        datasets.append({"name": d.name, "role": d.role, "evidence": evidence_for(d.name)})
    claims: list[dict[str, Any]] = []
    for c in a["claims"]:
        if all(c.sentence != other["n"] for other in claims):
            claims.append({"n": c.sentence, "statement": c.statement, "evidence": sentences[c.sentence - 1]})
    data = {
        "paper_id": paper.id,
        "title": paper.title,
        "summary": a["summary"],
        "contribution_type": a["contribution_type"],
        "method": {
            "name": method,
            "description": a["method_description"],
            "evidence": evidence_for(method) if method else None,
        },
        "datasets": datasets,
        "claims": [{"statement": c["statement"], "evidence": c["evidence"]} for c in claims],
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
    sentences: list[str]  # as the model is shown them, numbered from 1: withheld ones left out
    names: tuple[str, ...]  # candidate names among those sentences
    answer_model: type[AnswerBase]
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
        self._started = False
        self.scored: ScoredPipeline | None = None
        mode = self.settings.decisions
        if mode == "scored" or (mode == "auto" and self.backend.cheap_questions):
            self.scored = ScoredPipeline.for_model(
                load_prompts(self.settings.prompts_dir, SCORED_TEMPLATES),
                self.taxonomy,
                self.settings.resolved_calibration_path,
                self.backend.label,
                self.settings.expected_share,
            )
        # Rendered once: byte-identical across papers, so llama.cpp re-uses its KV cache.
        self.system_prompt = self.prompts.render("system.j2", taxonomy=self.taxonomy)
        # Worked examples follow the system prompt, fixed and in file order, so they are part
        # of the prefix every paper shares (processed once per server, not once per paper).
        self.example_messages = [m for ex in self.prompts.examples for m in self._example_turn(ex)]

    def _example_turn(self, example: Example) -> list[dict[str, str]]:
        """An example as a user turn and the assistant's answer, checked against its schema."""
        sentences = split_sentences(example.abstract)
        names = tuple(candidate_names(example.abstract))
        model = build_answer_model(self.taxonomy, names, len(sentences))
        try:
            answer = model.model_validate(example.answer)
        except ValidationError as exc:
            raise PromptError(
                f"{example.where}: the example's answer does not fit the answer schema "
                f"(taxonomy ids, the abstract's names and sentence numbers): {exc}"
            ) from exc
        user = self._render_paper(example.title, sentences, names)
        return [{"role": "user", "content": user}, {"role": "assistant", "content": answer.model_dump_json()}]

    def _render_paper(self, title: str, sentences: list[str], names: tuple[str, ...]) -> str:
        not_datasets = {n for n in names if not_a_dataset(n)}
        return self.prompts.render("user.j2", title=title, sentences=sentences, names=names, not_datasets=not_datasets)

    @cached_property
    def schema_hash(self) -> str:
        # Per-paper schemas differ only in their enums of names and sentence numbers, which
        # the paper text (in the key) determines; this template pins everything else.
        template = build_answer_model(self.taxonomy, ("<name>",), 3)
        return hashlib.sha256(canonical_json(template.model_json_schema()).encode()).hexdigest()

    @property
    def prompt_hash(self) -> str:
        """The hash of the prompt files this extractor renders (with scored decisions: both sets)."""
        if self.scored is None:
            return self.prompts.content_hash
        both = self.prompts.content_hash + self.scored.prompts.content_hash
        return hashlib.sha256(both.encode()).hexdigest()

    async def start(self) -> None:
        """Complete the backend's identity before any key is made (idempotent).

        With no model configured, a server's model is known only once it is asked; a key made
        before would hold no model, and another model behind the same URL would be served the
        first one's records.
        """
        if self._started:
            return
        await self.backend.resolve()
        self.__dict__.pop("_key_frames", None)
        self._started = True

    @property
    def cacheable(self) -> bool:
        """Whether records may be read from and written to the cache: only under a known model."""
        return self.cache is not None and bool(self.backend.identity.get("model"))

    def key_parts(self, title: str, abstract: str, *, generated: bool = False) -> dict[str, Any]:
        """What the record of a paper depends on; `generated`: the generated answer alone (the
        record of `decisions = "generated"`, which scored decisions start from)."""
        parts: dict[str, Any] = {
            "backend": self.backend.identity,
            "prompt": self.prompts.content_hash,
            "taxonomy": self.taxonomy.content_hash,
            "schema": self.schema_hash,
            "code": RENDER_VERSION,
            "sampling": self.settings.sampling(),
            "paper": {"title": title, "abstract": abstract},
        }
        if self.scored is not None and not generated:
            # Generated keys keep their layout, so answers recorded for them stay valid.
            parts.update(
                prompt=self.prompt_hash,
                decisions=self.scored.key_part(),
                code=[RENDER_VERSION, SCORED_RENDER_VERSION],
                sampling={**self.settings.sampling(), "decisions": "scored"},
            )
        return parts

    def key_for(self, paper: Paper, *, generated: bool = False) -> str:
        """The cache key of `paper`'s record, without rendering prompts (cheap: for planning and
        re-runs); `generated`: of its generated answer alone (the same as `key_for` without scoring)."""
        abstract, _ = truncate_abstract(paper.abstract, self.settings.max_abstract_chars)
        prefix, suffix = self._key_frames[generated or self.scored is None]
        paper_json = canonical_json({"abstract": abstract, "title": paper.title})
        return hashlib.sha256((prefix + paper_json + suffix).encode("utf-8")).hexdigest()

    @cached_property
    def _key_frames(self) -> dict[bool, tuple[str, str]]:
        """The key documents around the paper (scored, generated), serialised once (re-runs key
        thousands of papers).

        Splitting the canonical JSON at a placeholder gives byte-for-byte the same document as
        `cache_key(self.key_parts(...))`, so keys do not depend on which path computed them.
        """
        marker = "\u0000paper\u0000"
        frames: dict[bool, tuple[str, str]] = {}
        for generated in (False, True):
            parts = self.key_parts("", "", generated=generated)
            document = canonical_json({"v": KEY_VERSION, **parts, "paper": marker})
            prefix, suffix = document.split(canonical_json(marker))
            frames[generated] = (prefix, suffix)
        return frames

    def prepare(self, paper: Paper) -> Prepared:
        abstract, warning = truncate_abstract(paper.abstract, self.settings.max_abstract_chars)
        sentences = split_sentences(abstract)
        if not sentences:
            raise ExtractionFailed("the abstract is empty")
        warnings = [warning] if warning else []
        withheld = withheld_sentences(sentences, self._identifiers)
        if withheld:
            # Left out and the rest renumbered: the model sees the paper as if the sentences
            # were never there. A placeholder in their place was itself something the model
            # reacted to (in the hostile suite it moved a label to not_alignment).
            if len(withheld) == len(sentences):
                raise ExtractionFailed(
                    f"every sentence of the abstract ({len(sentences)}) addresses an AI tagger, not the reader; "
                    "nothing is left to tag"
                )
            warnings.append(
                f"withheld from the model {len(withheld)} sentence(s) addressed to an AI tagger, "
                f"not the reader (sentence {', '.join(map(str, withheld))})"
            )
            sentences = [s for i, s in enumerate(sentences, 1) if i not in withheld]
        # Names come only from what the model is shown, so a withheld sentence cannot plant one.
        names = tuple(candidate_names(" ".join(sentences) if withheld else abstract))
        user = self._render_paper(paper.title, sentences, names)
        messages = [
            {"role": "system", "content": self.system_prompt},
            *self.example_messages,
            {"role": "user", "content": user},
        ]
        key = self.key_for(paper)
        model = build_answer_model(self.taxonomy, names, len(sentences))
        return Prepared(paper, abstract, sentences, names, model, messages, key, warnings)

    @cached_property
    def _identifiers(self) -> frozenset[str]:
        return frozenset(
            i.casefold() for i in (*self.taxonomy.category_ids, *self.taxonomy.contribution_ids) if "_" in i
        )

    def cached(self, prepared: Prepared) -> Result | None:
        if self.cache is None or not self.cacheable:
            return None
        hit = self.cache.get(prepared.key)
        context = {"abstract": prepared.paper.abstract, **self.taxonomy.validation_context()}
        result = read_back(hit, paper_id=prepared.paper.id, context=context) if hit is not None else None
        if result is None:  # absent, damaged or tampered with: a miss, and the fresh record overwrites it
            return None
        result.provenance.cache_hit = True
        return result

    async def extract(self, paper: Paper) -> Result:
        """Return a verified record for `paper` or raise an `LLMError` saying why not."""
        started, t0 = _now(), time.perf_counter()
        await self.start()
        prepared = self.prepare(paper)
        hit = self.cached(prepared)
        if hit is not None:
            hit.source = PaperSource.of(paper)  # this input's identity, not the one that filled the cache
            return hit
        if self.scored is None:
            result = await self._generate(prepared, started, t0)
        else:
            result = await self._score(prepared, started, t0)
        result.source = PaperSource.of(paper)
        return result

    async def _generate(self, prepared: Prepared, started: str, t0: float) -> Result:
        """The one generated answer, as a record (cached under `prepared.key`)."""
        completion = await self.backend.complete(
            prepared.messages,
            prepared.answer_model,
            max_reasks=self.settings.max_reasks,
            sampling=_request_sampling(self.settings),
        )
        stats = completion.stats
        answer: AnswerBase = completion.value  # type: ignore[assignment]  # built from prepared.answer_model
        try:
            record = answer_to_record(prepared.paper, answer, prepared.sentences, prepared.abstract, self.taxonomy)
        except ValidationError as exc:
            raise ExtractionFailed(
                f"the answer passed the model checks but not the record checks: {exc}",
                attempts=stats.requests,
                reasks=max(stats.model_calls - 1, 0),
                last_completion=completion.raw,
                usage=completion.usage.model_dump(),
            ) from exc
        record.warnings.extend(prepared.warnings)
        result = self._result(prepared.key, record, completion.usage, stats.requests, stats.model_calls, started, t0)
        self._store(prepared.key, result)
        return result

    async def _score(self, prepared: Prepared, started: str, t0: float) -> Result:
        """The generated answer (shared with `decisions = "generated"`, so either mode's run
        re-uses the other's) with its closed-set decisions replaced by scored ones."""
        assert self.scored is not None
        generated = replace(prepared, key=self.key_for(prepared.paper, generated=True))
        base = self.cached(generated) or await self._generate(generated, started, t0)
        store = SubAnswers(self.cache, self.backend.identity) if self.cache is not None and self.cacheable else None
        raw, decisions = await self.scored.run(
            self.backend, prepared.paper, prepared.sentences, prepared.names, store=store
        )
        record = self.scored.overlay(base.record, decisions, prepared.sentences, prepared.abstract)
        made = base.provenance if not base.provenance.cache_hit else None
        result = self._result(
            prepared.key,
            record,
            raw.usage + (made.usage if made else Usage()),
            raw.requests + (made.attempts if made else 0),
            1 + (made.reasks if made else 0),
            started,
            t0,
        )
        self._store(prepared.key, result)
        return result

    def _result(
        self, key: str, record: PaperRecord, usage: Usage, attempts: int, model_calls: int, started: str, t0: float
    ) -> Result:
        provenance = Provenance(
            backend=self.backend.identity["backend"],
            model=self.backend.label,
            prompt_hash=self.prompt_hash[:16],
            taxonomy_hash=self.taxonomy.content_hash[:16],
            schema_hash=self.schema_hash[:16],
            cache_key=key,
            cache_hit=False,
            usage=usage,
            attempts=attempts,
            reasks=max(model_calls - 1, 0),
            latency_s=round(time.perf_counter() - t0, 3),
            started_at=started,
            finished_at=_now(),
        )
        return Result(record=record, provenance=provenance)

    def _store(self, key: str, result: Result) -> None:
        if self.cache is not None and self.cacheable:
            # Without the identity: the cached record is shared by every input holding this paper.
            self.cache.set(key, result.model_dump(mode="json", exclude={"source"}))

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
                identity=PaperSource.of(paper),
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


async def summarize(paper: Paper, settings: Settings | None = None, *, on_cold_start: Listener | None = None) -> Result:
    """Extract one paper with a fresh extractor (the per-paper CLI's path).

    `on_cold_start` is told of the embedded backend's slow start-up steps as they begin and end.
    """
    async with Extractor(settings) as extractor:
        if on_cold_start is not None:
            listen(extractor.backend, on_cold_start)
        return await extractor.extract(paper)


def summarize_sync(paper: Paper, settings: Settings | None = None, *, on_cold_start: Listener | None = None) -> Result:
    import asyncio

    return asyncio.run(summarize(paper, settings, on_cold_start=on_cold_start))
