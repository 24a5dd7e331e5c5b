"""Prompts are files: Jinja templates in `prompts/`, rendered strictly.

A missing variable fails at render time, and rendering happens before any model call, so a
broken template never costs a request. The set's content hash goes into every cache key:
editing a prompt re-runs the papers it affects, and nothing else does. Values put into a
template are data: `neutralise` defuses any prompt structure they carry (delimiters, chat
turns, line breaks).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .errors import PromptError

TEMPLATES = ("system.j2", "user.j2")
# Optional worked examples, shown to the model as earlier turns of the conversation: one
# JSON object per line with a paper's "title" and "abstract" and the "answer" it should get.
EXAMPLES = "examples.jsonl"

# --------------------------------------------------------------------------------------
# Interpolated values are data
#
# The templates' own text is the only prompt structure. A paper's text must not be able to
# close the <paper> delimiter, open a new chat turn, or start a line of its own (where
# "System:" or "</paper>" would read as prompt structure). This matters beyond style:
# llama-cpp-python tokenises the rendered chat prompt with special tokens enabled, so a
# literal "<|im_end|>" in an abstract would become Qwen's real end-of-turn token. Each
# marker keeps its letters and loses its syntax ("‹/paper›", "‹|im_start|›"), so the model
# still reads what the paper says. No gold or dev paper contains one (tests/test_hostile.py
# checks their prompts are byte-identical), so the committed replay store stays valid.

_LINE_BREAKS = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")
# Invisible characters an attacker could slip inside a tag ("<\u200b/paper>").
_GAP = r"[\s\u00ad\u200b-\u200f\u2060-\u2064\ufeff]*"
# The delimiter in any spelling: attributes, look-alike brackets, an unclosed "</paper", and
# "</paperX" (a model reads a tag where a tokenizer sees none).
_PAPER_TAG = re.compile(rf"[<＜﹤]({_GAP}/?{_GAP}paper[^<>＜＞﹤﹥\n]*)([>＞﹥]?)", re.IGNORECASE)
# The one-token tags of common chat templates: Llama-2/Mistral, Gemma, Qwen's tool and
# thinking tags. Only whole tags: "<summary>" or "<s" in text are left alone.
_TAG_NAMES = "s|bos|eos|system|user|assistant|start_of_turn|end_of_turn|tool_call|tool_response|think"
_CHAT_TAG = re.compile(rf"[<＜﹤]({_GAP}/?{_GAP}(?:{_TAG_NAMES}){_GAP})([>＞﹥])", re.IGNORECASE)
# ChatML and Llama-3 special tokens (<|im_start|>, <|eot_id|>) and DeepSeek's full-width bars.
_SPECIAL_TOKEN = re.compile(r"<([|｜][^<>|｜\s]{1,64}[|｜])>")
_INST = re.compile(r"\[(/?INST)\]", re.IGNORECASE)
_SYS = re.compile(r"<<(/?SYS)>>", re.IGNORECASE)


def _defuse_tag(match: re.Match[str]) -> str:
    return "‹" + match.group(1) + ("›" if match.group(2) else "")


def neutralise(value: Any) -> Any:
    """A template value with prompt structure defused; anything but a string is returned as is."""
    if not isinstance(value, str):
        return value
    text = _LINE_BREAKS.sub(" ", value)
    text = _SYS.sub(r"‹‹\1››", text)
    text = _PAPER_TAG.sub(_defuse_tag, text)
    text = _CHAT_TAG.sub(_defuse_tag, text)
    text = _SPECIAL_TOKEN.sub(r"‹\1›", text)
    return _INST.sub(r"［\1］", text)


_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # prompts are plain text for a model, not HTML
    finalize=neutralise,  # every {{ value }}, never the template's own text
)


@dataclass(frozen=True)
class Example:
    """A worked example: a paper and the answer it should get, from `examples.jsonl`."""

    title: str
    abstract: str
    answer: dict[str, Any]
    where: str  # "path:line", for errors about it


@dataclass(frozen=True)
class PromptSet:
    directory: Path
    sources: dict[str, str]
    content_hash: str
    examples: tuple[Example, ...] = ()
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

    def macro(self, name: str, macro: str, *args: Any) -> str:
        """Call one macro of a template (the questions are macros of one file)."""
        try:
            function = getattr(self._compiled[name].module, macro)
            return str(function(*args)).strip()
        except KeyError as exc:
            raise PromptError(f"prompt template {name!r} is not in {self.directory}") from exc
        except AttributeError as exc:
            raise PromptError(f"prompt {self.directory / name} has no macro {macro!r}") from exc
        except jinja2.UndefinedError as exc:
            raise PromptError(f"prompt {self.directory / name} uses an undefined variable: {exc.message}") from exc


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
    examples: tuple[Example, ...] = ()
    path = directory / EXAMPLES
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        examples = _parse_examples(path, text)
        sources[EXAMPLES] = text
        digest.update(EXAMPLES.encode() + b"\0" + text.encode("utf-8") + b"\0")
    return PromptSet(
        directory=directory, sources=sources, content_hash=digest.hexdigest(), examples=examples, _compiled=compiled
    )


def _parse_examples(path: Path, text: str) -> tuple[Example, ...]:
    examples: list[Example] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptError(f"{where}: not a JSON object: {exc.msg}") from exc
        if not isinstance(item, dict):
            raise PromptError(f"{where}: not a JSON object")
        missing = [k for k in ("title", "abstract", "answer") if k not in item]
        if missing:
            raise PromptError(f"{where}: example lacks {', '.join(missing)}")
        if not isinstance(item["title"], str) or not isinstance(item["abstract"], str):
            raise PromptError(f"{where}: title and abstract must be strings")
        if not isinstance(item["answer"], dict):
            raise PromptError(f"{where}: answer must be a JSON object")
        examples.append(Example(item["title"], item["abstract"], item["answer"], where))
    return tuple(examples)
