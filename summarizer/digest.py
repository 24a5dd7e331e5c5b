"""The run's Markdown digest (digest.md): every paper with its summary, method and datasets.

Rebuilt from records.jsonl with the other exports (`summarizer export OUTDIR`); kept apart
from export.py, which holds the crash-safe run files and the tabular exports.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from .ranking import is_ranked, on_topic_label, ranked
from .schemas import Failure, PaperSource, Result, normalise_ws, web_link

# Characters that Markdown (CommonMark/GFM) or HTML would read as syntax. `&`, `<` and `>`
# become entities so no tag or entity from a paper can reach a renderer; the rest get a
# backslash. Escaping only inline text is enough because paper text never starts a line.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def md_escape(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", html.escape(normalise_ws(text), quote=False))


def render_digest(results: Sequence[Result], failures: Sequence[Failure] = (), *, title: str = "Paper digest") -> str:
    by_category: dict[str, list[Result]] = {}
    for result in results:
        by_category.setdefault(result.record.category.primary, []).append(result)
    counts = Counter({cat: len(items) for cat, items in by_category.items()})
    order = sorted(counts, key=lambda c: (-counts[c], c))
    today = datetime.now(UTC).date().isoformat()
    out: list[str] = [f"# {md_escape(title)}", ""]
    failed = f" · {len(failures)} failed" if failures else ""
    plural = "category" if len(counts) == 1 else "categories"
    out += [f"{len(results)} papers in {len(counts)} {plural}{failed} · {today}", ""]
    if order:
        out += ["| Category | Papers |", "|---|---:|"]
        out += [f"| {md_escape(cat)} | {counts[cat]} |" for cat in order]
        out.append("")
    if is_ranked(results):
        usual = [r for cat in order for r in sorted(by_category[cat], key=lambda r: r.record.title.casefold())]
        flagged = sum(r.record.needs_review for r in results)
        out += [f"## Papers by P(on-topic), highest first ({len(results)})", ""]
        out += [f"{flagged} of {len(results)} flagged for review.", ""]
        for result in ranked(usual):
            out += _digest_entry(result, one_list=True)
        out.append("")
    else:
        for cat in order:
            out += [f"## {md_escape(cat)} ({counts[cat]})", ""]
            for result in sorted(by_category[cat], key=lambda r: r.record.title.casefold()):
                out += _digest_entry(result)
            out.append("")
    if failures:
        out += [f"## Failed ({len(failures)})", ""]
        for f in sorted(failures, key=lambda f: f.title.casefold()):
            title, identity = f"**{md_escape(f.title)}**", identity_line(f.identity) if f.identity else ""
            title = f"[{title}](<{f.identity.link}>)" if f.identity and f.identity.link else title
            out.append(f"- {title}: {md_escape(f.error)}" + (f" ({identity})" if identity else ""))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _digest_entry(result: Result, *, one_list: bool = False) -> list[str]:
    r, src = result.record, result.source
    title = f"**{md_escape(r.title)}**"
    link = src.link if src else None
    if link:
        title = f"[{title}](<{link}>)"
    lines = [f"- {title}: {md_escape(r.summary)}"]
    if one_list:  # across categories: each entry names its own
        lines.append(f"  - {on_topic_label(r)} · Category: {md_escape(r.category.primary)}")
    if r.needs_review:
        lines.append(f"  - **Needs review**: {md_escape('; '.join(r.review_reasons) or 'no reason given')}")
    if src is not None and (identity := identity_line(src)):
        lines.append(f"  - Source: {identity}")
    method = md_escape(r.method.description)
    if r.method.name:
        method = f"**{md_escape(r.method.name)}**: {method}"
    lines.append(f"  - Method: {method}")
    if r.datasets:
        lines.append("  - Datasets: " + "; ".join(f"{md_escape(d.name)} ({d.role})" for d in r.datasets))
    return lines


def short_authors(authors: Sequence[str] | None, limit: int = 5) -> str:
    names = [normalise_ws(a) for a in authors or [] if a.strip()]
    return ", ".join(names) if len(names) <= limit else ", ".join(names[:3]) + " et al."


def identity_line(src: PaperSource) -> str:
    """Authors · date · id · DOI · URL, escaped for Markdown; a URL that is not a link stays text."""
    parts = [md_escape(short_authors(src.authors))] if src.authors else []
    parts += [md_escape(v) for v in (src.date, f"id {src.id}" if src.id else None) if v]
    if src.doi:
        parts.append(md_escape(f"DOI {src.doi}"))
    if src.url and web_link(src.url) is None:  # not http(s): shown, never linked
        parts.append(md_escape(f"URL {src.url}"))
    return " · ".join(p for p in parts if p)
