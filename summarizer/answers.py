"""What the model answers: the checks every generated answer gets that a schema cannot express."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, model_validator

from .schemas import MAX_SUMMARY_WORDS, strip_controls
from .spans import split_sentences


def trim_to_sentences(text: str, max_words: int) -> str:
    """The longest run of whole leading sentences within `max_words` (the text if it fits)."""
    if len(text.split()) <= max_words:
        return text
    kept: list[str] = []
    for sentence in split_sentences(text):
        if len(" ".join([*kept, sentence]).split()) > max_words:
            break
        kept.append(sentence)
    return " ".join(kept)


class AnswerBase(BaseModel):
    """Checks of every answer that the schema cannot express; subclasses add the enums."""

    @model_validator(mode="after")
    def _check_against_paper(self) -> AnswerBase:
        summary = str(self.__dict__["summary"])
        # A small model overruns word limits; dropping whole trailing sentences of its own
        # summary keeps it faithful. Only a first sentence that is itself too long is re-asked.
        trimmed = trim_to_sentences(summary, MAX_SUMMARY_WORDS)
        if not trimmed:
            raise ValueError(
                f"summary's first sentence has {len(summary.split())} words; write at most {MAX_SUMMARY_WORDS}"
            )
        self.__dict__["summary"] = trimmed
        # The record rejects these when nothing is left once control characters are stripped; rejected
        # here, a blank one is re-asked instead of failing the paper after its last request
        # (1 of 12 dev papers: an empty method description). Only answers the record would have
        # refused are affected, and those were never cached, so no cached record changes.
        blank = [name for name in ("method_description", "category_reasoning") if _blank(self.__dict__.get(name))]
        blank += [
            f"claims[{i}].statement" for i, c in enumerate(self.__dict__.get("claims") or []) if _blank(c.statement)
        ]
        if blank:
            raise ValueError(f"{', '.join(blank)}: write it in words; it was empty")
        return self


def _blank(value: object) -> bool:
    """What the record refuses (nothing left once control characters and escapes are stripped)."""
    return isinstance(value, str) and not strip_controls(value)


def choice_of(values: tuple[Any, ...]) -> Any:
    return Literal[values]
