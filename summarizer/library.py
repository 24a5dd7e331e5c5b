"""Exports for the tools researchers keep papers in: per-paper Markdown notes and BibTeX.

Both are derived from records.jsonl like the other exports (`summarizer export OUTDIR
--format notes|bibtex`) and written atomically. Notes come from a Jinja template the user
may replace (`--template`); its front matter is YAML, and the `yaml` filter quotes each
value so that a title with a colon, a quote or a newline stays one string.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .digest import md_escape
from .errors import ConfigError, OutputError
from .export import atomic_write
from .schemas import PaperSource, Result, normalise_ws, strip_controls

NOTES_DIR = "notes"
BIBTEX_FILE = "records.bib"
DEFAULT_NOTE_TEMPLATE = Path(__file__).with_name("templates") / "note.md.j2"


# --------------------------------------------------------------------------------------
# YAML front matter

# Characters YAML does not allow raw in a document (PyYAML refuses them) or reads as a line
# break (NEL, the Unicode separators): JSON leaves these raw when ensure_ascii is off.
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")


def yaml_value(value: Any) -> str:
    """`value` as one YAML flow value: strings double-quoted, lists in brackets, None as null.

    A JSON string is a valid YAML double-quoted scalar with the same escapes, so quotes,
    colons, `#` and newlines in a title cannot end the value or start a new key.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    text = json.dumps(str(value), ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def tag(value: str) -> str:
    """A tag Obsidian accepts: no spaces or punctuation but `_`, `-` and `/`."""
    return re.sub(r"[^\w/-]+", "-", normalise_ws(value)).strip("-")


# --------------------------------------------------------------------------------------
# Notes


def _slug(text: str, limit: int = 60) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")[:limit].rstrip("-")


def note_name(result: Result) -> str:
    """A file name safe on every system: ASCII slug of the title and the paper id, nothing else."""
    pid = re.sub(r"[^A-Za-z0-9_-]", "", result.record.paper_id)[:32] or "paper"
    return f"{_slug(result.record.title) or 'paper'}-{pid}.md"


def note_context(result: Result) -> dict[str, Any]:
    """What a note template sees (README, "Notes and BibTeX")."""
    r, src = result.record, result.source or PaperSource()
    tags = [tag(t) for t in (r.category.primary, *r.category.secondary, r.contribution_type)]
    return {
        "title": r.title,
        "authors": src.authors or [],
        "date": src.date,
        "url": src.url,
        "doi": src.doi,
        "link": src.link,
        "input_id": src.id,
        "paper_id": r.paper_id,
        "category": r.category.primary,
        "secondary": r.category.secondary,
        "contribution_type": r.contribution_type,
        "tags": [t for t in dict.fromkeys(tags) if t],
        "summary": r.summary,
        "method": r.method,
        "datasets": r.datasets,
        "claims": r.claims,
        "rationale": r.category.rationale,
        "needs_review": r.needs_review,
        "record": r,
        "provenance": result.provenance,
    }


def load_note_template(path: Path | None) -> jinja2.Template:
    template = path or DEFAULT_NOTE_TEMPLATE
    # Sandboxed: note templates get shared like themes, and one should not reach Python internals.
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(template.parent),
        autoescape=False,  # Markdown, not HTML: the template escapes with `md` and `yaml`
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["yaml"] = yaml_value
    env.filters["md"] = lambda v: md_escape(str(v)) if v is not None else ""
    try:
        return env.get_template(template.name)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"note template {template} not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"note template {template}, line {exc.lineno}: {exc.message}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read note template {template}: {exc}") from None


def write_notes(directory: Path, results: Sequence[Result], template: Path | None = None) -> Path:
    """One Markdown note per paper in DIRECTORY/notes/; a re-export overwrites them."""
    compiled = load_note_template(template)
    folder = directory / NOTES_DIR
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}", path=folder) from exc
    used: set[str] = set()
    for result in results:
        name = note_name(result)
        stem, n = name[:-3], 1
        while name.casefold() in used:  # ids cleaned of odd characters could meet; case-insensitive disks too
            n += 1
            name = f"{stem}-{n}.md"
        used.add(name.casefold())
        try:
            text = compiled.render(note_context(result))
        except jinja2.TemplateError as exc:
            where = template or DEFAULT_NOTE_TEMPLATE
            raise ConfigError(f"note template {where}: {exc}") from None
        atomic_write(folder / name, text)
    return folder


# --------------------------------------------------------------------------------------
# BibTeX

_LATEX = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "^": r"\^{}",
    "_": r"\_", "%": r"\%", "~": r"\~{}", "<": r"\textless{}", ">": r"\textgreater{}",
}  # fmt: skip
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_:.-]+")
# A URL or DOI is read verbatim by biblatex and hyperref, so it is not LaTeX-escaped; only what
# would unbalance the braces or end the value is percent-encoded.
_VERBATIM_UNSAFE = re.compile(r"[{}\\\s]")


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(c, c) for c in normalise_ws(strip_controls(text)))


def _verbatim(text: str) -> str:
    return _VERBATIM_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text.strip())


def bibtex_key(result: Result, used: set[str]) -> str:
    """The input's id where it has one (cleaned to key characters), else author-year-word; unique."""
    r, src = result.record, result.source or PaperSource()
    key = _KEY_UNSAFE.sub("_", src.id or "").strip("_.:-")[:64]
    if not key:
        surname = _slug((src.authors or [""])[0].split()[-1] if (src.authors or [""])[0].split() else "")
        year = (src.date or "")[:4] if (src.date or "")[:4].isdigit() else ""
        words = [w for w in _slug(r.title).split("-") if len(w) > 3] or ["paper"]
        key = (surname.replace("-", "") + year + words[0])[:64]
    unique, n = key, 0
    while unique.casefold() in used:  # BibTeX keys compare case-insensitively
        n += 1
        unique = f"{key}{chr(ord('a') + n - 1)}" if n <= 26 else f"{key}-{n}"
    used.add(unique.casefold())
    return unique


def bibtex_entry(result: Result, key: str) -> str:
    r, src = result.record, result.source or PaperSource()
    keywords = [r.category.primary, *r.category.secondary, r.contribution_type]
    keywords += [n for n in (r.method.name, *(d.name for d in r.datasets)) if n]
    fields: list[tuple[str, str]] = [("title", latex_escape(r.title))]
    if src.authors:
        fields.append(("author", " and ".join(latex_escape(a) for a in src.authors if a.strip())))
    if src.date:
        if src.date[:4].isdigit():
            fields.append(("year", src.date[:4]))
        fields.append(("date", latex_escape(src.date)))
    if src.doi:
        fields.append(("doi", _verbatim(src.doi)))
    if src.link:
        fields.append(("url", _verbatim(src.link)))
    if src.arxiv_id:
        fields += [("eprint", src.arxiv_id), ("archiveprefix", "arXiv")]
    fields += [
        ("category", latex_escape(r.category.primary)),
        ("keywords", ", ".join(latex_escape(k).replace(",", " ") for k in dict.fromkeys(keywords))),
        ("annote", latex_escape(r.summary)),
    ]
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@misc{{{key},\n{body}\n}}\n"


def to_bibtex(results: Sequence[Result]) -> str:
    used: set[str] = set()
    return "\n".join(bibtex_entry(r, bibtex_key(r, used)) for r in results)


def write_bibtex(directory: Path, results: Sequence[Result]) -> Path:
    path = directory / BIBTEX_FILE
    atomic_write(path, to_bibtex(results))
    return path
