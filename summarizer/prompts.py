"""Prompts are files: Jinja templates in `prompts/`, rendered strictly.

A missing variable fails at render time, and rendering happens before any model call, so a
broken template never costs a request. The set's content hash goes into every cache key:
editing a prompt re-runs the papers it affects, and nothing else does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .errors import PromptError

TEMPLATES = ("system.j2", "user.j2")


_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # prompts are plain text for a model, not HTML
)


@dataclass(frozen=True)
class PromptSet:
    directory: Path
    sources: dict[str, str]
    content_hash: str
    _compiled: dict[str, jinja2.Template] = field(default_factory=dict, repr=False, compare=False)

    def render(self, name: str, **variables: Any) -> str:
        try:
            template = self._compiled[name]
            return template.render(**variables).strip() + "\n"
        except KeyError as exc:
            raise PromptError(f"prompt template {name!r} is not in {self.directory}") from exc
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt {self.directory / name} uses an undefined variable: {exc.message}") from exc
        except jinja2.TemplateError as exc:
            raise PromptError(f"prompt {self.directory / name} cannot be rendered: {exc}") from exc


def load_prompts(directory: Path, names: tuple[str, ...] = TEMPLATES) -> PromptSet:
    sources: dict[str, str] = {}
    compiled: dict[str, jinja2.Template] = {}
    digest = hashlib.sha256()
    for name in names:
        path = directory / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PromptError(f"cannot read prompt template {path}: {exc.strerror or exc}") from exc
        try:
            compiled[name] = _ENV.from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise PromptError(f"prompt {path}:{exc.lineno}: {exc.message}") from exc
        sources[name] = text
        digest.update(name.encode() + b"\0" + text.encode("utf-8") + b"\0")
    return PromptSet(directory=directory, sources=sources, content_hash=digest.hexdigest(), _compiled=compiled)
