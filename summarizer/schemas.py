"""Typed records: the paper that goes in and the record that comes out.

The record's enum-like fields (category ids, contribution types) come from the taxonomy
file, which a user may replace, so they are plain strings here and are checked against
the taxonomy passed in the validation context. The model-facing response schema, which
constrains decoding to exactly those ids, is built from the taxonomy in `extract.py`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import InputError

_WS = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)

MAX_SUMMARY_WORDS = 60
MAX_CLAIMS = 4
MAX_SECONDARY = 2


def normalise_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


# Terminal escape sequences, removed whole (a lone ESC taken out would leave "[2J" behind).
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI: colours, cursor moves, clear screen
    r"|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: window titles, OSC 8 links (to BEL or ST)
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM and APC strings
    r"|\x1b[ -/]*[0-~]?"  # any other escape, and a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]?"  # the same as 8-bit C1 controls
    r"|[\x90\x98\x9d-\x9f][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
)
# What is left: C0 controls but tab and newline, DEL, C1, and the bidirectional overrides and
# isolates that reorder what a terminal or editor shows.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """`text` without terminal escape sequences or control characters (each of those becomes a space).

    Applied to every string a model generates before it is stored: model output is steerable
    by the abstract, and it is printed to terminals and written to digests and spreadsheets.
    """
    if text.isprintable():  # the fast path: nearly every string
        return text
    return _CONTROLS.sub(" ", _ESCAPES.sub("", text))


def _generated(value: Any) -> Any:
    """A `mode="before"` validator: clean a string before its length and content checks see it."""
    return strip_controls(value) if isinstance(value, str) else value


def _optional_mark(base: str) -> bool:
    """Whether ordinary spelling treats a mark on `base` as optional (an accent, a vowel point).

    True for Latin, Greek and Cyrillic accents and Hebrew and Arabic vowel points, so that
    "Café" and "Cafe" are one title. Elsewhere a mark is part of the letter (a Devanagari
    vowel sign; the kana voicing mark: ガ is not カ), and dropping it merged distinct papers.
    """
    cp = ord(base)
    # Latin to Cyrillic; Hebrew and Arabic; Arabic Supplement; Arabic Extended-A; Latin
    # Extended Additional and Greek Extended.
    return (
        cp < 0x0530 or 0x0590 <= cp < 0x0700 or 0x0750 <= cp < 0x0780 or 0x08A0 <= cp < 0x0900 or 0x1E00 <= cp < 0x2000
    )


def normalise_title(title: str) -> str:
    """Case-, accent- and punctuation-insensitive form used for ids and de-duplication."""
    if title.isascii():  # no marks to weigh: the fast path (most titles)
        return normalise_ws(_NON_WORD.sub(" ", title.casefold()).replace("_", " "))
    out: list[str] = []
    base = ""  # the letter a following combining mark belongs to
    for ch in unicodedata.normalize("NFKD", title).casefold():
        if unicodedata.category(ch).startswith("M"):
            if base and not _optional_mark(base):
                out.append(ch)
        elif ch.isalnum():
            out.append(ch)
            base = ch
        else:
            out.append(" ")
            base = ""
    return normalise_ws("".join(out))


def paper_id(title: str) -> str:
    """Stable id: the same title in any input format, casing or spacing gets the same id."""
    return hashlib.sha256(normalise_title(title).encode("utf-8")).hexdigest()[:12]


def find_verbatim(quote: str, text: str) -> str | None:
    """Return `quote` as it appears in `text` (whitespace-normalised), or None.

    Whitespace differences are forgiven because abstracts are reflowed by every source;
    nothing else is: a quote that paraphrases is not evidence.
    """
    needle = normalise_ws(quote)
    if not needle:
        return None
    hay = normalise_ws(text)
    return needle if needle in hay else None


def find_name(name: str, text: str) -> str | None:
    """Locate a short name (method, dataset) in `text`, ignoring case and spacing.

    Returns the spelling used in `text`, so that a record always carries the abstract's
    own form even when the model changed the case.
    """
    needle = normalise_ws(name)
    if not needle:
        return None
    hay = normalise_ws(text)
    if needle in hay:
        return needle
    folded_needle = needle.casefold()
    folded = hay.casefold()
    if len(folded) == len(hay):  # every character folds to one: indices line up (nearly always)
        idx = folded.find(folded_needle)
        return None if idx < 0 else hay[idx : idx + len(folded_needle)]
    # "ß" folds to "ss" and "İ" to two characters: map folded positions back to the text's.
    origin: list[int] = []
    for i, ch in enumerate(hay):
        origin.extend([i] * len(ch.casefold()))
    origin.append(len(hay))
    idx = folded.find(folded_needle)
    while idx >= 0:
        start, end = origin[idx], origin[idx + len(folded_needle) - 1] + 1
        span = hay[start:end]
        if span.casefold() == folded_needle:  # not a match that starts or ends inside one folded letter
            return span
        idx = folded.find(folded_needle, idx + 1)
    return None


class Paper(BaseModel):
    """One paper as read from an input file."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    abstract: str
    authors: list[str] | None = None
    author_count: int | None = None
    date: str | None = None
    source: str | None = None
    line: int | None = None
    # Every other field the input had; its own identity, where it had one, as "id", "url", "doi".
    metadata: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_text(cls, title: str, abstract: str, **kwargs: Any) -> Paper:
        title = normalise_ws(title)
        return cls(id=paper_id(title), title=title, abstract=abstract.strip(), **kwargs)


class PaperSource(BaseModel):
    """The input's own identity of a paper (its id, authors, date, URL, DOI), carried to every output.

    Never part of the cache key or the prompt: two inputs holding the same paper share one
    cached record, and each run attaches its own input's identity to it after the lookup.
    """

    id: str | None = None
    authors: list[str] | None = None
    date: str | None = None
    url: str | None = None
    doi: str | None = None

    @classmethod
    def of(cls, paper: Paper) -> PaperSource | None:
        """`paper`'s identity, or None when its input had none of these fields."""
        meta = paper.metadata
        source = cls(
            id=meta.get("id") or None,
            authors=paper.authors or None,
            date=paper.date or None,
            url=meta.get("url") or None,
            doi=meta.get("doi") or None,
        )
        return source if source.model_dump(exclude_none=True) else None

    @property
    def arxiv_id(self) -> str | None:
        match = _ARXIV_ID.fullmatch(self.id.strip()) if self.id else None
        return match.group(1) if match else None

    @property
    def link(self) -> str | None:
        """Where the paper can be read: its URL, else its DOI's resolver, else its arXiv page.

        Only an http(s) URL qualifies: an input's `url` can say `javascript:` as easily as anything.
        """
        url = web_link(self.url) if self.url else None
        if url is not None:
            return url
        doi = _DOI_PREFIX.sub("", self.doi.strip()) if self.doi else ""
        if doi.startswith("10.") and "/" in doi:
            return web_link("https://doi.org/" + doi)
        arxiv = self.arxiv_id
        return web_link(f"https://arxiv.org/abs/{arxiv}") if arxiv else None


_DOI_PREFIX = re.compile(r"^(?:doi:\s*|https?://(?:dx\.)?doi\.org/)", re.IGNORECASE)
_ARXIV_ID = re.compile(
    r"(?:arxiv:)?(\d{4}\.\d{4,5}(?:v\d+)?|[a-z][a-z.-]*(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?)", re.IGNORECASE
)
# Left as they are in a link: what URLs need, less what Markdown or HTML reads as syntax
# (parentheses end a Markdown link, quotes and angle brackets an attribute or a tag).
_URL_SAFE = ":/?#[]@!$&*+,;=%-._~"


def web_link(value: str) -> str | None:
    """`value` as an http(s) link safe to put in Markdown or an HTML attribute, or None if it is not one."""
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:  # an unbalanced "[" in the host
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(text, safe=_URL_SAFE)


# --------------------------------------------------------------------------------------
# The record


def _taxonomy_ids(info: ValidationInfo, kind: str) -> frozenset[str] | None:
    ctx = info.context if isinstance(info.context, dict) else None
    if ctx is None or ctx.get(kind) is None:
        return None
    return frozenset(ctx[kind])


def _abstract(info: ValidationInfo) -> str | None:
    ctx = info.context if isinstance(info.context, dict) else None
    return None if ctx is None else ctx.get("abstract")


def _verbatim_evidence(cls: type[BaseModel], value: str, info: ValidationInfo) -> str:
    abstract = _abstract(info)
    if abstract is not None and find_verbatim(value, abstract) is None:
        raise ValueError(f"evidence {value!r} is not a verbatim substring of the abstract")
    return value


class Method(BaseModel):
    name: str | None = Field(description="The paper's own method/framework name as written in the abstract, or null.")
    description: str = Field(min_length=1, max_length=400)
    evidence: str | None = None

    _clean = field_validator("description", mode="before")(_generated)

    @field_validator("name", "evidence")
    @classmethod
    def _verbatim(cls, value: str | None, info: ValidationInfo) -> str | None:
        abstract = _abstract(info)
        if value is None or abstract is None:
            return value
        found = find_name(value, abstract) if info.field_name == "name" else find_verbatim(value, abstract)
        if found is None:
            raise ValueError(f"{info.field_name} {value!r} is not a verbatim substring of the abstract")
        return found


class Dataset(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    role: Literal["introduced", "used"]
    evidence: str

    @field_validator("name")
    @classmethod
    def _name_in_abstract(cls, value: str, info: ValidationInfo) -> str:
        abstract = _abstract(info)
        if abstract is None:
            return value
        found = find_name(value, abstract)
        if found is None:
            raise ValueError(f"dataset name {value!r} is not in the abstract")
        return found

    _evidence_in_abstract = field_validator("evidence")(_verbatim_evidence)


class Claim(BaseModel):
    statement: str = Field(min_length=1, max_length=400)
    evidence: str = Field(min_length=1)

    _clean = field_validator("statement", mode="before")(_generated)

    _evidence_in_abstract = field_validator("evidence")(_verbatim_evidence)


class Category(BaseModel):
    primary: str
    secondary: list[str] = Field(default_factory=list, max_length=MAX_SECONDARY)
    rationale: str = Field(min_length=1, max_length=600)

    _clean = field_validator("rationale", mode="before")(_generated)

    @model_validator(mode="after")
    def _known_ids(self, info: ValidationInfo) -> Category:
        ids = _taxonomy_ids(info, "category_ids")
        if ids is not None:
            for value in [self.primary, *self.secondary]:
                if value not in ids:
                    raise ValueError(f"unknown category {value!r}; expected one of {sorted(ids)}")
        # A secondary label equal to the primary adds nothing and would skew per-class metrics.
        self.secondary = [s for s in dict.fromkeys(self.secondary) if s != self.primary]
        return self


class Confidence(BaseModel):
    """Calibrated probabilities of a record's scored decisions (README, "How labels are decided").

    A record has none when its labels were generated rather than scored (`decisions =
    "generated"`, or a server without log-probabilities): their confidence is then unknown. A
    field is None when its decision does not apply (the category of a paper outside the subject).
    """

    subject: float | None = Field(None, description="P(the paper is about the taxonomy's subject)")
    category: float | None = Field(None, description="P(primary) among the subject's classes")
    runner_up: str | None = Field(None, description="the next most likely category")
    runner_up_p: float | None = None
    datasets: dict[str, float] = Field(default_factory=dict, description="P(is a dataset) per listed name")
    calibration: str | None = Field(None, description="content hash of the calibration applied, if any")


class PaperRecord(BaseModel):
    """The verified, typed record for one paper: the product's unit of output."""

    paper_id: str
    title: str
    summary: str = Field(min_length=1)
    contribution_type: str
    method: Method
    datasets: list[Dataset] = Field(default_factory=list)
    claims: list[Claim] = Field(min_length=1, max_length=MAX_CLAIMS)
    category: Category
    confidence: Confidence | None = None
    needs_review: bool = False
    review_reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    _clean = field_validator("summary", "title", mode="before")(_generated)

    @field_validator("summary")
    @classmethod
    def _summary_length(cls, value: str) -> str:
        words = len(value.split())
        if words > MAX_SUMMARY_WORDS:
            raise ValueError(f"summary has {words} words; at most {MAX_SUMMARY_WORDS} allowed")
        return normalise_ws(value)

    @field_validator("contribution_type")
    @classmethod
    def _known_contribution(cls, value: str, info: ValidationInfo) -> str:
        ids = _taxonomy_ids(info, "contribution_ids")
        if ids is not None and value not in ids:
            raise ValueError(f"unknown contribution type {value!r}; expected one of {sorted(ids)}")
        return value


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class Provenance(BaseModel):
    """How a record was made; everything a reader needs to trust or reproduce it."""

    backend: str
    model: str
    prompt_hash: str
    taxonomy_hash: str
    schema_hash: str
    cache_key: str
    cache_hit: bool
    usage: Usage = Field(default_factory=Usage)
    attempts: int = 0
    reasks: int = 0
    latency_s: float = 0.0
    started_at: str
    finished_at: str


class Result(BaseModel):
    """A finished paper: a record with its provenance."""

    record: PaperRecord
    provenance: Provenance
    # The input's identity: attached per run after the cache, never stored in it (see `PaperSource`).
    source: PaperSource | None = None


def read_back(
    value: str | dict[str, Any], *, paper_id: str | None = None, context: dict[str, Any] | None = None
) -> Result | None:
    """A stored result (a cache entry, a records.jsonl line) if it passes the checks a fresh one
    passed, else None: what fails is treated as absent, and its paper is done again.

    `context` is the validation context of a fresh record: the taxonomy's ids and, where the
    paper is known, its abstract (for the evidence and names). Without them only the shape is
    checked. A file can be edited, and a cache shared: neither is trusted because we wrote it.
    """
    try:
        if isinstance(value, str):
            result = Result.model_validate_json(value, context=context)
        else:
            result = Result.model_validate(value, context=context)
    except ValidationError:
        return None
    if paper_id is not None and result.record.paper_id != paper_id:
        return None
    return result


class Failure(BaseModel):
    """A paper that got no record, with the reason; never a partial record."""

    paper_id: str
    title: str
    error: str
    reason: str
    attempts: int = 0
    reasks: int = 0
    usage: Usage = Field(default_factory=Usage)
    last_completion: str | None = None
    source: str | None = None  # the input file (a record's `source` is its identity: that is `identity` here)
    line: int | None = None
    # The input's id, authors, date, URL and DOI, as a record's `source` has them: a failed
    # paper can be found in the user's library and retried from it.
    identity: PaperSource | None = None
    finished_at: str

    # A reason can quote the model's rejected answer, and the raw answer is kept as it came.
    _clean = field_validator("reason", "last_completion", mode="before")(_generated)


M = TypeVar("M", bound=BaseModel)


def load_jsonl_models(path: Path, model: type[M], what: str) -> list[M]:
    """Every non-blank line of a JSONL file as a `model`; an `InputError` names the file and line.

    For the project's own labelled files (gold set, injection cases): one bad line stops the
    load, since a silently shorter eval set would change every figure computed from it.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", path=path) from exc
    items: list[M] = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                items.append(model.model_validate_json(line))
            except ValidationError as exc:
                raise InputError(f"invalid {what} line: {exc}", path=path, line=number) from exc
    return items
