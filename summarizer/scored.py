"""A paper's record with its closed-set decisions scored over the generated answer.

The paper's one generated JSON answer (the same request, prompt and worked examples as
`decisions = "generated"`, so its cached answer is shared) gives the free text and the choices a
small model makes well when it writes: the summary, the contribution type, the method and the
claims. Then `decide.py` asks one-token questions after the fixed instructions and the paper
block and reads the answers from log-probabilities; `calibration.py` turns them into calibrated
decisions, which replace the generated ones: about the subject or not, the category, which
names are datasets and whether the paper introduces them. The record carries each decision's
probability and `needs_review` with its reasons.

Why not a shorter writing request after the questions' prefix: measured on gold (step 2), a
writing request without the worked examples chose the method's name right for 0.446 of papers
against 0.800 and the contribution type for 0.677 against 0.815, and 4 of 65 papers failed its
summary checks (`evals/scored/report.md` at that commit against `evals/baseline.json`).

This is several requests per paper: cheap on a local server that keeps the paper's prefix,
but a paid API bills each request's whole prompt, so `Settings.decisions` scores only where
questions are cheap (`auto`, the default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .cache import ResponseCache, cache_key
from .calibration import SHARES, Calibration, Decisions, apply, load_calibrations
from .decide import DECISION_TEMPLATES, Answer, QuestionSet, RawDecisions, ask_all
from .decisions import YES
from .llm import Backend
from .prompts import PromptSet
from .schemas import Confidence, Paper, PaperRecord
from .similarity import class_similarity
from .spans import sentence_containing
from .taxonomy import Taxonomy

#: Every prompt file the scored questions render (hashed into the cache key with the generated request's).
SCORED_TEMPLATES = DECISION_TEMPLATES
#: Said in a record whose decisions could not be scored.
NO_LOGPROBS = "decisions generated, not scored: the server returned no log-probabilities"


class SubAnswers:
    """The paper's question answers, cached apart from the record and from any calibration.

    A record's key holds the calibration, so a new calibration misses the record cache; its
    answers are found here, and only what the new calibration asks for that was never asked (a
    newly accepted dataset's second question) goes to the model. Keys hold the backend identity,
    the messages exactly as sent, and the options.
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
        raw = await ask_all(backend, self.system, block, first[:1], store=store)
        if raw.answers[first[0].key].top is None:
            # No log-probabilities: the record keeps its generated labels, so asking the other
            # questions (each a generated request on such a server) would buy nothing.
            return raw
        raw = raw.merge(await ask_all(backend, self.system, block, first[1:], store=store))
        accepted = [d.name for d in self._apply(raw, names, sentences).accepted_datasets]
        if accepted:
            second = self.questions.second_round(accepted)
            raw = raw.merge(await ask_all(backend, self.system, block, second, store=store))
        return raw

    def _apply(
        self, raw: RawDecisions, names: tuple[str, ...], sentences: list[str], title: str | None = None
    ) -> Decisions:
        # The similarity reads what the model was shown: a sentence withheld as addressed to an
        # AI tagger must not move the label through the other signal either.
        similarity = class_similarity(self.taxonomy, title, " ".join(sentences)) if title is not None else None
        n = len(sentences)
        return apply(raw, self.taxonomy, names, n, self.calibration, similarity=similarity, share=self.share)

    async def run(
        self,
        backend: Backend,
        paper: Paper,
        sentences: list[str],
        names: tuple[str, ...],
        store: SubAnswers | None = None,
    ) -> tuple[RawDecisions, Decisions]:
        raw = await self.decide(backend, paper.title, sentences, names, store)
        return raw, self._apply(raw, names, sentences, paper.title)

    def overlay(self, generated: PaperRecord, d: Decisions, sentences: list[str], abstract: str) -> PaperRecord:
        """The generated record with its category, datasets, confidence and review flag from `d`.

        Where nothing was scored (a server without log-probabilities answers each question with a
        generated pick) the generated labels stay, and the record says so.
        """
        data = generated.model_dump(mode="json")
        context = {"abstract": abstract, **self.taxonomy.validation_context()}
        if not d.category.available:
            data["confidence"] = None
            data["needs_review"] = True
            data["review_reasons"] = [NO_LOGPROBS]
            return PaperRecord.model_validate(
                data, context={"abstract": abstract, **self.taxonomy.validation_context()}
            )
        method = generated.method.name

        def evidence_for(name: str) -> str:
            number = sentence_containing(name, sentences)
            return sentences[number - 1] if number is not None else name

        outside = d.primary == self.taxonomy.outside
        data["datasets"] = [
            {
                "name": x.name,
                "role": "introduced" if x.introduced is not None and x.introduced.choice == YES else "used",
                "evidence": evidence_for(x.name),
            }
            for x in d.accepted_datasets
            if x.name != method
        ]
        # No secondary classes: the generated ones were chosen beside the generated primary.
        data["category"] = {"primary": d.primary, "secondary": [], "rationale": self.rationale(d)}
        data["confidence"] = self.confidence(d, outside).model_dump(mode="json")
        data["needs_review"] = bool(d.review)
        data["review_reasons"] = d.review
        return PaperRecord.model_validate(data, context=context)

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
