"""Stage one of a paper: every closed-set decision, asked as a short question and scored.

After the fixed instructions and the paper block (both byte-identical across a paper's
questions, so the server processes them once and reuses its KV cache), each question asks
for a one-word answer, and the answer is read from the log-probabilities of the first answer
token (`llm.Backend.choose`). The questions are Jinja macros in `prompts/questions.j2`; the
subject question's wording comes from the taxonomy file.

Asked per paper: about the subject or not; the category among the subject's classes; for each
candidate name in the abstract, whether it is a dataset; for each sentence, whether it states
a finding; then, for the names accepted as datasets, whether the paper introduces them.

Each answer is cached on its own, before calibration (`AnswerStore`), so that a new
calibration file or a decisions-only eval re-uses it without asking the model again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field

from .decisions import BINARY
from .llm import Backend
from .prompts import PromptSet
from .schemas import Usage
from .spans import not_a_dataset
from .taxonomy import Taxonomy

QUESTIONS = "questions.j2"
#: The scored pipeline's prompt files (loaded with `prompts.load_prompts(directory, DECISION_TEMPLATES)`).
DECISION_TEMPLATES = ("decide_system.j2", "paper.j2", QUESTIONS)


@dataclass(frozen=True)
class Question:
    key: str  # unique within a paper: "subject", "category", "dataset:<name>", "finding:<n>", "introduced:<name>"
    text: str
    options: tuple[str, ...]


class Answer(BaseModel):
    """A question's answer as the server gave it: top first-token alternatives, or a generated pick."""

    top: list[tuple[str, float]] | None = None
    picked: str | None = None


class RawDecisions(BaseModel):
    """Every answer of one paper, before calibration (what is cached)."""

    answers: dict[str, Answer] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    requests: int = 0

    def merge(self, other: RawDecisions) -> RawDecisions:
        return RawDecisions(
            answers={**self.answers, **other.answers},
            usage=self.usage + other.usage,
            requests=self.requests + other.requests,
        )


class AnswerStore(Protocol):
    """Where answers to questions are kept apart from any calibration (`scored.SubAnswers`)."""

    def get_answer(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Answer | None: ...

    def put_answer(self, messages: list[dict[str, str]], options: tuple[str, ...], answer: Answer) -> None: ...


def dataset_candidates(names: Sequence[str]) -> list[str]:
    return [n for n in names if not not_a_dataset(n)]


class QuestionSet:
    """Renders a paper's questions from the prompt files and the taxonomy."""

    def __init__(self, prompts: PromptSet, taxonomy: Taxonomy) -> None:
        self.prompts = prompts
        self.taxonomy = taxonomy

    def system(self) -> str:
        return self.prompts.render("decide_system.j2", taxonomy=self.taxonomy).rstrip("\n")

    def paper_block(self, title: str, sentences: Sequence[str]) -> str:
        return self.prompts.render("paper.j2", title=title, sentences=list(sentences))

    def _ask(self, macro: str, *args: object) -> str:
        return self.prompts.macro(QUESTIONS, macro, *args)

    def first_round(self, names: Sequence[str], n_sentences: int, *, findings: bool = False) -> list[Question]:
        """The first round; `findings` adds one question per sentence. The pipeline does not ask
        them: on gold they chose claim sentences no better than position alone (claim recall 0.633
        against 0.627, `evals/ablation-decisions.md`) and were most of a paper's questions."""
        t = self.taxonomy
        qs: list[Question] = []
        if t.subject is not None:
            qs.append(Question("subject", self._ask("subject", t.subject.question), BINARY))
        options = tuple(t.subject_ids)
        qs.append(Question("category", self._ask("category", list(options)), options))
        qs += [Question(f"dataset:{n}", self._ask("dataset", n), BINARY) for n in dataset_candidates(names)]
        if findings:
            qs += [Question(f"finding:{i}", self._ask("finding", i), BINARY) for i in range(1, n_sentences + 1)]
        return qs

    def second_round(self, datasets: Sequence[str]) -> list[Question]:
        return [Question(f"introduced:{n}", self._ask("introduced", n), BINARY) for n in datasets]


async def ask_all(
    backend: Backend,
    system: str,
    paper_block: str,
    questions: Sequence[Question],
    on_answer: Callable[[Question, Answer], None] | None = None,
    store: AnswerStore | None = None,
) -> RawDecisions:
    """Ask `questions` one after another after the same prefix (one server slot reuses it).

    An answer `store` already holds is not asked again (and costs no request or tokens).
    """
    raw = RawDecisions()
    for q in questions:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": paper_block + "\n" + q.text}]
        kept = store.get_answer(messages, q.options) if store is not None else None
        if kept is not None:
            raw.answers[q.key] = kept
            if on_answer is not None:
                on_answer(q, kept)
            continue
        choice = await backend.choose(messages, q.options)
        answer = Answer(top=[(t, lp) for t, lp in choice.top] if choice.top is not None else None, picked=choice.picked)
        raw.answers[q.key] = answer
        raw.usage = raw.usage + choice.usage
        raw.requests += choice.stats.requests
        if store is not None:
            store.put_answer(messages, q.options, answer)
        if on_answer is not None:
            on_answer(q, answer)
    return raw
