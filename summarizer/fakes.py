"""A queue-fed fake model for tests and benchmarks of everything around the model.

`FakeBackend` answers from a queue (or a function of the request) and validates exactly as
the real path does, re-asks included, so batch, cache and export code can be tested without
a server. It is never the only proof that a path works: the integration tests run the real
`openai` client and instructor against a real llama.cpp server.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ExtractionFailed
from .llm import CallStats, Choice, Completion
from .schemas import Usage

Answer = dict[str, Any] | BaseException
Responder = Callable[[list[dict[str, str]]], Answer]
#: Scripts a one-token question: the top (token, log-probability) list for the question's
#: messages and options, or None for a server that returns no log-probabilities.
Chooser = Callable[[list[dict[str, str]], tuple[str, ...]], list[tuple[str, float]] | None]

_SENTENCE_LINE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
_TITLE_LINE = re.compile(r"^Title: (.*)$", re.MULTILINE)


def sentences_of(messages: list[dict[str, str]]) -> list[str]:
    """The numbered abstract sentences as the default user prompt presents them."""
    return [m.group(2) for m in _SENTENCE_LINE.finditer(messages[-1]["content"])]


NOT_A_DATASET_NOTE = " (a model or metric, not a dataset)"  # as prompts/user.j2 marks such names


def names_of(messages: list[dict[str, str]], *, datasets_only: bool = False) -> list[str]:
    """The candidate names the default user prompt lists for the model to choose from
    (with `datasets_only`, those the dataset field admits: not the ones marked as models or metrics)."""
    content = messages[-1]["content"]
    if "Names in the abstract" not in content:
        return []
    listed = content.split("Names in the abstract", 1)[1].splitlines()[1:]
    names = []
    for line in listed:
        if not line.startswith("- "):
            break
        if line.startswith("- (none") or (datasets_only and line.endswith(NOT_A_DATASET_NOTE)):
            continue
        names.append(line[2:].removesuffix(NOT_A_DATASET_NOTE))
    return names


def valid_answer(messages: list[dict[str, str]], *, category: str = "learning_from_feedback") -> dict[str, Any]:
    """A schema-valid answer for whatever paper the messages carry (content is not meaningful)."""
    sentences = sentences_of(messages)
    title = _TITLE_LINE.search(messages[-1]["content"])
    first = sentences[0] if sentences else ""
    return {
        "summary": " ".join(first.split()[:40]) or "A paper.",
        "contribution_type": "new_method",
        "method_name": None,
        "method_description": f"Studies {title.group(1) if title else 'the problem'}."[:300],
        "datasets": [],
        "claims": [{"sentence": len(sentences) or 1, "statement": "The paper reports its main finding."}],
        "category_reasoning": "The paper is about aligning models with human preferences.",
        "about_ai_alignment": category != "not_alignment",
        "primary_category": category,
        "secondary_categories": [],
    }


class FakeBackend:
    """Queue-fed model: each call pops the next answer; an exception in the queue is raised."""

    def __init__(
        self,
        answers: list[Answer] | None = None,
        *,
        responder: Responder | None = None,
        delay_s: float = 0.0,
        usage: Usage | None = None,
        model: str = "fake-model",
        chooser: Chooser | None = None,
        cheap_questions: bool = False,
    ) -> None:
        self.chooser = chooser
        self.cheap_questions = cheap_questions
        self.queue: deque[Answer] = deque(answers or [])
        self.responder = responder
        self.delay_s = delay_s
        self.usage = usage or Usage(prompt_tokens=100, completion_tokens=50)
        self.model = model
        self.calls: list[list[dict[str, str]]] = []
        self.closed = False

    @property
    def identity(self) -> dict[str, str]:
        return {"backend": "fake", "model": self.model}

    @property
    def label(self) -> str:
        return f"fake:{self.model}"

    async def resolve(self) -> None:
        return None

    @property
    def max_concurrency(self) -> int | None:
        return None

    def _next(self, messages: list[dict[str, str]]) -> Answer:
        if self.queue:
            return self.queue.popleft()
        if self.responder is not None:
            return self.responder(messages)
        raise AssertionError("FakeBackend queue is empty and no responder was given")

    async def choose(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Choice:
        """Scripted by `chooser`; without one, every option equally likely."""
        self.calls.append(messages)
        stats = CallStats(requests=1, model_calls=1)
        top = self.chooser(messages, options) if self.chooser is not None else [(o, -1.0) for o in options]
        if top is None:
            return Choice(top=None, usage=self.usage, stats=stats, picked=options[0])
        return Choice(top=tuple(top), usage=self.usage, stats=stats)

    async def complete(
        self,
        messages: list[dict[str, str]],
        response_model: type[BaseModel],
        *,
        max_reasks: int,
        sampling: dict[str, Any],
    ) -> Completion:
        stats = CallStats()
        total = Usage()
        last_error: ValidationError | None = None
        for _ in range(max_reasks + 1):
            self.calls.append(messages)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            answer = self._next(messages)
            stats.requests += 1
            if isinstance(answer, BaseException):
                raise answer
            stats.model_calls += 1
            total = total + self.usage
            try:
                value = response_model.model_validate(answer)
            except ValidationError as exc:
                last_error = exc
                continue
            return Completion(value=value, usage=total, stats=stats, raw=None)
        raise ExtractionFailed(
            f"no valid answer after {stats.model_calls} attempt(s): {last_error}",
            attempts=stats.requests,
            reasks=max(stats.model_calls - 1, 0),
            usage=total.model_dump(),
        )

    async def aclose(self) -> None:
        self.closed = True
