"""A paper's record with every closed-set decision scored and only free text generated.

Stage one (`decide.py`) asks one-token questions after the fixed instructions and the paper
block and reads the answers from log-probabilities; `calibration.py` turns them into
calibrated decisions: about the subject or not, the category, which names are datasets and
whether the paper introduces them, which sentences state its findings. Stage two is one
generation after the same prefix (so the server reuses the paper's KV cache): the summary, the
contribution type, the method's name among the abstract's names, the method description, and
one claim statement for each finding sentence chosen in stage one, written from that sentence.
A claim therefore always cites the sentence it was written from.

This is many requests per paper: cheap on a local server that keeps the paper's prefix, but a
paid API bills each request's whole prompt, so `Settings.decisions` defaults to this pipeline
only on the embedded backend (`Settings.resolved_decisions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field, create_model, model_validator

from .answers import choice_of, trim_to_sentences
from .cache import ResponseCache, cache_key
from .calibration import SHARES, Calibration, Decisions, apply, load_calibrations
from .decide import DECISION_TEMPLATES, Answer, QuestionSet, RawDecisions, ask_all
from .decisions import YES
from .llm import Backend, CallStats, Completion
from .prompts import PromptSet
from .schemas import MAX_CLAIMS, MAX_SUMMARY_WORDS, Confidence, Paper, PaperRecord, Usage, normalise_ws
from .similarity import class_similarity
from .spans import sentence_containing
from .taxonomy import Taxonomy

WRITE = "write.j2"
CLAIM = "claim.j2"
#: Every prompt file the scored pipeline renders (all of them hashed into the cache key).
SCORED_TEMPLATES = (*DECISION_TEMPLATES, WRITE, CLAIM)
CLAIM_MAX_TOKENS = 80


class ClaimStatement(BaseModel):
    statement: str = Field(min_length=3, max_length=200)

    @model_validator(mode="after")
    def _has_words(self) -> ClaimStatement:
        # The record rejects an empty statement after whitespace is normalised; rejecting it
        # here turns that into a re-ask instead of a failed paper.
        if not normalise_ws(self.statement):
            raise ValueError("statement: write the finding in words")
        return self


def fit_words(text: str, max_words: int) -> str:
    """Whole leading sentences within `max_words`; a first sentence that is itself longer is cut
    at a clause boundary and marked with an ellipsis (a re-ask for length rarely helps a 1.5B model:
    5 of 65 gold papers failed three times in a row)."""
    text = " ".join(text.split())
    kept = trim_to_sentences(text, max_words)
    if kept:
        return kept
    words = text.split()[:max_words]
    cut = " ".join(words)
    clause = max(cut.rfind(", "), cut.rfind("; "))
    if clause > len(cut) // 2:
        cut = cut[:clause]
    return cut.rstrip(",;: ") + " …"


class WrittenBase(BaseModel):
    @model_validator(mode="after")
    def _fit(self) -> WrittenBase:
        summary = str(self.__dict__["summary"])
        # Right after the paper block a small model sometimes copies the title as the summary.
        if len(summary.split()) < 8:
            raise ValueError("summary: write a sentence of 20 to 40 words on what the paper does and finds")
        self.__dict__["summary"] = fit_words(summary, MAX_SUMMARY_WORDS)
        # The record requires a description (Method.description has min_length 1); an empty or
        # blank one is re-asked here rather than failing the paper after the last request.
        description = normalise_ws(str(self.__dict__["method_description"]))
        if not any(ch.isalnum() for ch in description):
            raise ValueError("method_description: write one sentence on what the method or the paper does")
        self.__dict__["method_description"] = fit_words(description, 40)
        return self


@lru_cache(maxsize=512)
def write_model(contribution_ids: tuple[str, ...], names: tuple[str, ...]) -> type[WrittenBase]:
    """The schema of stage two: free text, plus two choices generation makes well.

    The contribution type comes last: asked right after the summary it was new_method for 59
    of 65 gold papers; after the method's name (null when the paper proposes nothing) and
    description, the model has stated what the paper does before it labels it.
    """
    name = choice_of(names) if names else None
    fields: dict[str, Any] = {
        "summary": (str, Field(max_length=700)),
        "method_name": (Optional[name] if names else None, ...),  # noqa: UP045 (a runtime type)
        "method_description": (str, Field(max_length=300)),
        "contribution_type": (choice_of(contribution_ids), ...),
    }
    return create_model("WrittenAnswer", __base__=WrittenBase, **fields)


class SubAnswers:
    """The paper's single answers, cached apart from the record and from any calibration.

    A record's key holds the calibration, so a new calibration misses the record cache; its
    questions, writing request and claim statements are found here and only what the new
    calibration asks for that was never asked (a newly accepted dataset's second question, a
    newly chosen claim sentence) goes to the model. Keys hold the backend identity, the messages
    exactly as sent, and the options or response schema and sampling.
    """

    def __init__(self, cache: ResponseCache, identity: dict[str, Any]) -> None:
        self.cache = cache
        self.identity = identity

    def _key(self, kind: str, messages: list[dict[str, str]], spec: Any) -> str:
        return cache_key({"sub": kind, "backend": self.identity, "messages": messages, "spec": spec})

    def get_answer(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Answer | None:
        hit = self.cache.get(self._key("answer", messages, list(options)))
        return Answer.model_validate(hit) if hit is not None else None

    def put_answer(self, messages: list[dict[str, str]], options: tuple[str, ...], answer: Answer) -> None:
        self.cache.set(self._key("answer", messages, list(options)), answer.model_dump(mode="json"))

    async def complete(
        self,
        backend: Backend,
        messages: list[dict[str, str]],
        model: type[BaseModel],
        *,
        max_reasks: int,
        sampling: dict[str, Any],
    ) -> Completion:
        key = self._key("completion", messages, [model.model_json_schema(), sampling, max_reasks])
        hit = self.cache.get(key)
        if hit is not None:
            # Validated when it was written; re-validating would re-trim already trimmed text.
            return Completion(value=model.model_construct(**hit), usage=Usage(), stats=CallStats())
        completion = await backend.complete(messages, model, max_reasks=max_reasks, sampling=sampling)
        self.cache.set(key, completion.value.model_dump(mode="json"))
        return completion


@dataclass(frozen=True)
class ScoredOutcome:
    """Both stages of a paper, before the record is built (`ScoredPipeline.to_record`)."""

    completion: Completion  # the writing request (summary, method)
    raw: RawDecisions  # the questions; its usage and requests also count the claim requests
    decisions: Decisions
    claims: list[int]  # the finding sentences the claim statements were written from
    statements: list[str]


async def _complete(
    backend: Backend,
    messages: list[dict[str, str]],
    model: type[BaseModel],
    *,
    max_reasks: int,
    sampling: dict[str, Any],
) -> Completion:
    return await backend.complete(messages, model, max_reasks=max_reasks, sampling=sampling)


class ScoredPipeline:
    def __init__(
        self, prompts: PromptSet, taxonomy: Taxonomy, calibration: Calibration | None, share: float = SHARES["mixed"]
    ) -> None:
        self.prompts = prompts
        self.taxonomy = taxonomy
        self.calibration = calibration
        self.share = share  # the expected share of papers about the subject (Settings.expected_share)
        self.questions = QuestionSet(prompts, taxonomy)
        # Byte-identical across papers and across a paper's questions: the server's KV cache
        # keeps it, and each paper's block after it.
        self.system = self.questions.system()

    @classmethod
    def for_model(
        cls, prompts: PromptSet, taxonomy: Taxonomy, calibration_path: Path, model: str, share: float
    ) -> ScoredPipeline:
        return cls(prompts, taxonomy, load_calibrations(calibration_path).for_model(model), share)

    @property
    def combined(self) -> bool:
        return self.calibration is not None and self.calibration.combine is not None

    def describe(self, mix: str | None) -> str:
        """The run's first words on how it decides (`mix`: the preset named, None: a share given)."""
        if not self.combined:
            how = "calibrated" if self.calibration is not None else "uncalibrated (no calibration for this model)"
            return f"decisions: scored from log-probabilities, {how}"
        named = f"{mix}, " if mix else ""
        return (
            f"decisions: scored and combined with the taxonomy similarity; expected on-topic share "
            f"{self.share:.2f} ({named}set with --mix feed|mixed|curated)"
        )

    def key_part(self) -> dict[str, Any]:
        part: dict[str, Any] = {"calibration": self.calibration.content_hash if self.calibration else None}
        if self.combined:
            # Only the combined gate reads the share: a calibration without it decides the same at any share.
            part["share"] = self.share
        return part

    def claim_count(self, n_sentences: int) -> int:
        wanted = self.calibration.finding.count if self.calibration else 3
        return max(1, min(wanted, n_sentences, MAX_CLAIMS))

    async def decide(
        self,
        backend: Backend,
        title: str,
        sentences: list[str],
        names: tuple[str, ...],
        store: SubAnswers | None = None,
    ) -> RawDecisions:
        block = self.questions.paper_block(title, sentences)
        first = self.questions.first_round(names, len(sentences))
        raw = await ask_all(backend, self.system, block, first, store=store)
        accepted = [d.name for d in self._apply(raw, names, len(sentences)).accepted_datasets]
        if accepted:
            second = self.questions.second_round(accepted)
            raw = raw.merge(await ask_all(backend, self.system, block, second, store=store))
        return raw

    def _apply(
        self, raw: RawDecisions, names: tuple[str, ...], n_sentences: int, paper: Paper | None = None
    ) -> Decisions:
        similarity = class_similarity(self.taxonomy, paper.title, paper.abstract) if paper is not None else None
        return apply(raw, self.taxonomy, names, n_sentences, self.calibration, similarity=similarity, share=self.share)

    def write_messages(self, title: str, sentences: list[str], names: tuple[str, ...]) -> list[dict[str, str]]:
        block = self.questions.paper_block(title, sentences)
        request = self.prompts.render(WRITE, taxonomy=self.taxonomy, names=names)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": block + "\n" + request}]

    async def run(
        self,
        backend: Backend,
        paper: Paper,
        sentences: list[str],
        names: tuple[str, ...],
        *,
        max_reasks: int,
        sampling: dict[str, Any],
        store: SubAnswers | None = None,
    ) -> ScoredOutcome:
        raw = await self.decide(backend, paper.title, sentences, names, store)
        decisions = self._apply(raw, names, len(sentences), paper)
        claims = decisions.claim_sentences(self.claim_count(len(sentences)))
        model = write_model(tuple(self.taxonomy.contribution_ids), names)
        complete = store.complete if store is not None else _complete
        completion = await complete(
            backend, self.write_messages(paper.title, sentences, names), model, max_reasks=max_reasks, sampling=sampling
        )
        statements: list[str] = []
        claim_sampling = {**sampling, "max_tokens": CLAIM_MAX_TOKENS}
        for n in claims:
            written = await complete(
                backend,
                self.claim_messages(sentences[n - 1]),
                ClaimStatement,
                max_reasks=max_reasks,
                sampling=claim_sampling,
            )
            statements.append(normalise_ws(written.value.statement))  # type: ignore[attr-defined]
            raw.usage = raw.usage + written.usage
            raw.requests += written.stats.requests
        return ScoredOutcome(completion, raw, decisions, claims, statements)

    def claim_messages(self, sentence: str) -> list[dict[str, str]]:
        """A claim is written from its sentence alone: with the whole paper in view, the model
        restated the neighbouring sentences instead."""
        request = self.prompts.render(CLAIM, sentence=sentence)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": request}]

    def to_record(
        self,
        paper: Paper,
        outcome: ScoredOutcome,
        sentences: list[str],
        abstract: str,
    ) -> PaperRecord:
        a: dict[str, Any] = outcome.completion.value.__dict__
        d = outcome.decisions
        method = a["method_name"]

        def evidence_for(name: str) -> str:
            number = sentence_containing(name, sentences)
            return sentences[number - 1] if number is not None else name

        outside = d.primary == self.taxonomy.outside
        datasets = [
            {
                "name": x.name,
                "role": "introduced" if x.introduced is not None and x.introduced.choice == YES else "used",
                "evidence": evidence_for(x.name),
            }
            for x in d.accepted_datasets
            if x.name != method
        ]
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
            "claims": [
                {"statement": statement, "evidence": sentences[n - 1]}
                for n, statement in zip(outcome.claims, outcome.statements, strict=True)
            ],
            "category": {"primary": d.primary, "secondary": [], "rationale": self.rationale(d)},
            "confidence": self.confidence(d, outside),
            "needs_review": bool(d.review),
            "review_reasons": d.review,
        }
        return PaperRecord.model_validate(data, context={"abstract": abstract, **self.taxonomy.validation_context()})

    def confidence(self, d: Decisions, outside: bool) -> Confidence:
        ranked = d.category.ranked() if d.category.available else []
        return Confidence(
            subject=round(d.subject.p(YES), 4) if d.subject is not None and d.subject.available else None,
            category=None if outside or not ranked else round(ranked[0][1], 4),
            runner_up=None if outside or len(ranked) < 2 else ranked[1][0],
            runner_up_p=None if outside or len(ranked) < 2 else round(ranked[1][1], 4),
            datasets={x.name: round(x.is_dataset.p(YES), 4) for x in d.datasets if x.is_dataset.available},
            calibration=self.calibration.content_hash[:16] if self.calibration else None,
        )

    def rationale(self, d: Decisions) -> str:
        """Written by code from the scores: the model did not generate the label, so it gets no say in why."""
        parts: list[str] = []
        if d.subject is not None:
            p = f"{d.subject.p(YES):.2f}" if d.subject.available else "unknown (generated)"
            parts.append(f"P(about the subject) = {p}")
            if d.combined and d.subject.available:
                parts[-1] += f" at an expected share of {self.share:.2f}"
        if d.combined:
            parts.append("answers combined with the taxonomy similarity")
        if d.primary == self.taxonomy.outside:
            parts.insert(0, f"Scored outside the subject, so {d.primary}")
        else:
            ranked = d.category.ranked()
            shown = ", ".join(f"{c} {p:.2f}" for c, p in ranked[:3]) if d.category.available else d.category.choice
            parts.insert(0, f"Scored category {d.primary} (top: {shown})")
        if not d.calibrated:
            parts.append("uncalibrated")
        return "; ".join(parts) + "."
