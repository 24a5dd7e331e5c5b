"""The tagging scheme as data: loaded from a TOML file, hashed into every cache key."""

from __future__ import annotations

import hashlib
import tomllib
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

NOT_ALIGNMENT = "not_alignment"


class Label(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str


class Subject(BaseModel):
    """The taxonomy's subject gate: a yes/no question, and the class of papers outside it.

    The question is asked of every paper and scored (see `decide.py`); a paper it puts outside
    the subject gets `outside` as its category, whatever the category question says. The
    wording lives here, not in code, so a user's own taxonomy gets its own gate.
    """

    model_config = ConfigDict(frozen=True)
    question: str = Field(min_length=1)
    outside: str


class Taxonomy(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    rules: list[str] = Field(default_factory=list)
    categories: list[Label] = Field(min_length=2)
    contribution_types: list[Label] = Field(min_length=1)
    fields: dict[str, str] = Field(default_factory=dict)
    subject: Subject | None = None
    content_hash: str = ""

    @model_validator(mode="after")
    def _unique_ids(self) -> Taxonomy:
        for kind, labels in (("category", self.categories), ("contribution type", self.contribution_types)):
            ids = [label.id for label in labels]
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} ids: {dupes}")
        if self.subject is not None and self.subject.outside not in [c.id for c in self.categories]:
            raise ValueError(f"subject.outside {self.subject.outside!r} is not a category id")
        return self

    @cached_property
    def category_ids(self) -> list[str]:
        return [c.id for c in self.categories]

    @cached_property
    def contribution_ids(self) -> list[str]:
        return [c.id for c in self.contribution_types]

    @property
    def has_negative_class(self) -> bool:
        return NOT_ALIGNMENT in self.category_ids

    @property
    def outside(self) -> str | None:
        """The category of papers outside the subject, when the taxonomy has a subject gate."""
        return self.subject.outside if self.subject is not None else None

    @cached_property
    def subject_ids(self) -> list[str]:
        """The categories a paper about the subject can get (all of them without a gate)."""
        return [c for c in self.category_ids if c != self.outside]

    def validation_context(self) -> dict[str, list[str]]:
        return {"category_ids": self.category_ids, "contribution_ids": self.contribution_ids}


def load_taxonomy(path: Path) -> Taxonomy:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read taxonomy file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"taxonomy file {path} is not valid TOML: {exc}") from exc
    try:
        return Taxonomy(**data, content_hash=hashlib.sha256(raw).hexdigest())
    except ValidationError as exc:
        raise ConfigError(f"taxonomy file {path} is invalid: {exc}") from exc
