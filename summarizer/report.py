"""Self-contained HTML reports: a run's digest (`summarizer report`) and the eval dashboard.

Each page is one file with its CSS and JS inline and nothing fetched: it opens offline,
from a mail attachment or a CI artefact. Paper and model text only ever reaches the page
through Jinja's autoescaping (the same escaping as `html.escape`), never as markup; the
data the page's script filters on travels in a `<script type="application/json">` block
in which `<`, `>` and `&` are \\u-escaped, so an abstract holding `</script>` stays text.
A Content-Security-Policy that admits only the page's own script (by hash) is a second
line of defence: even markup that slipped through could not run or fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from .digest import short_authors
from .errors import InputError, OutputError
from .export import (
    CSV_FILE,
    DIGEST_FILE,
    FAILURES,
    MANIFEST,
    PARQUET_FILE,
    RECORDS,
    REJECTED,
    atomic_write,
    file_digest,
    load_failures,
    load_results,
)
from .ranking import is_ranked, on_topic_label, ranked, review_label
from .schemas import Failure, PaperSource, Result, normalise_ws, web_link
from .sources import read_inputs

if TYPE_CHECKING:
    from .evaluate import EvalRun
    from .scoring import PaperScore

TEMPLATES = Path(__file__).with_name("templates")
REPORT_FILE = "report.html"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


# Every page carries this in its <head>: it is how `-o` tells a report it may replace from a
# file it must not (a user's page, a run's records).
GENERATOR_TAG = b'<meta name="generator" content="summarizer report">'
# Pages written before the tag: these two lines open the <head> of every such page.
_LEGACY_HEAD = (b'<meta http-equiv="Content-Security-Policy"', b'<meta name="referrer" content="no-referrer">')
RUN_FILES = (RECORDS, FAILURES, MANIFEST, CSV_FILE, PARQUET_FILE, DIGEST_FILE, REJECTED, ".lock")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def script_json(value: Any) -> Markup:
    """JSON that is safe inside a `<script>` element: no `<`, `>` or `&` appears literally."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _JSON_ESCAPES.items():
        text = text.replace(char, escape)
    return Markup(text)


def _asset(name: str, closing: str) -> Markup:
    text = (TEMPLATES / name).read_text(encoding="utf-8")
    if closing in text.lower():  # would end the element early
        raise OutputError(f"template asset {name} contains {closing}")
    return Markup(text)


def _csp(script: str | None) -> str:
    """Nothing from the network; inline styles; only the given script (by its hash), if any."""
    if script is None:
        script_src = "'none'"
    else:
        script_src = "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


# --------------------------------------------------------------------------------------
# The run report: view model


@dataclass(frozen=True)
class Bar:
    key: str
    count: int
    pct: float


@dataclass(frozen=True)
class DatasetOption:
    key: str
    label: str
    count: int


@dataclass(frozen=True)
class Segment:
    """A run of abstract text and the claims (space-separated indices) whose evidence covers it."""

    text: str
    claims: str


@dataclass(frozen=True)
class ClaimView:
    index: int
    statement: str
    evidence: str
    in_abstract: bool


@dataclass(frozen=True)
class Card:
    record: Any  # PaperRecord; Any keeps the template's attribute access simple
    claims: list[ClaimView]
    segments: list[Segment] | None  # None: no abstract, the quotes are shown alone
    note: str | None
    byline: list[str] = field(default_factory=list)  # authors, date, input id, DOI: plain text, escaped by the template
    link: str | None = None  # an http(s) URL only (`PaperSource.link`)
    on_topic: str | None = None  # "P(on-topic) 0.83" when the run is listed by it
    review: str = ""  # "needs review: reasons" for a flagged record


@dataclass(frozen=True)
class Shown:
    short: str
    full: str


@dataclass
class Abstracts:
    """Abstracts by paper id, read back from the run's inputs, with what could not be read."""

    by_id: dict[str, str]
    notes: list[str]
    missing_inputs: list[str]


@dataclass(frozen=True)
class RunReport:
    path: Path
    papers: int
    failures: int
    notes: list[str]


def _bars(counts: Counter[str]) -> list[Bar]:
    top = max(counts.values(), default=0)
    order = sorted(counts, key=lambda k: (-counts[k], k))
    return [Bar(k, counts[k], round(100.0 * counts[k] / top, 1) if top else 0.0) for k in order]


def dataset_key(name: str) -> str:
    return normalise_ws(name).casefold()


def segment_abstract(abstract: str, quotes: Sequence[str]) -> tuple[list[Segment], list[bool]]:
    """Cut the (whitespace-normalised) abstract at every quote boundary; say which quotes were found.

    Each segment lists the quotes that cover it, so highlighting quote i is marking the
    segments that list i, and the marked text read in order is exactly the quote.
    """
    text = normalise_ws(abstract)
    spans: list[tuple[int, int, int]] = []
    found: list[bool] = []
    for i, quote in enumerate(quotes):
        needle = normalise_ws(quote)
        start = text.find(needle) if needle else -1
        found.append(start >= 0)
        if start >= 0:
            spans.append((start, start + len(needle), i))
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    segments: list[Segment] = []
    for a, b in pairwise(cuts):
        covering = " ".join(str(i) for s, e, i in spans if s <= a and b <= e)
        if segments and segments[-1].claims == covering:
            segments[-1] = Segment(segments[-1].text + text[a:b], covering)
        else:
            segments.append(Segment(text[a:b], covering))
    return segments, found


def _locate(raw: str, outdir: Path) -> Path | None:
    path = Path(raw)
    candidates = [path] if path.is_absolute() else [path, outdir / path, outdir.parent / path]
    return next((p for p in candidates if p.is_file()), None)


def load_abstracts(outdir: Path, manifest: dict[str, Any] | None) -> Abstracts:
    """The abstracts of the papers in the run's inputs (listed in the manifest), by paper id."""
    found = Abstracts({}, [], [])
    if manifest is None:
        found.notes.append(f"No {MANIFEST} in {outdir}: abstracts are unavailable; cards show evidence quotes alone.")
        return found
    for entry in manifest.get("inputs") or []:
        raw = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(raw, str):
            continue
        path = _locate(raw, outdir)
        if path is None:
            found.missing_inputs.append(raw)
            found.notes.append(f"Input {raw} is missing: its papers show their evidence quotes without the abstract.")
            continue
        if entry.get("sha256") and file_digest(path).get("sha256") != entry["sha256"]:
            found.notes.append(f"Input {raw} changed since the run; quotes no longer in an abstract are shown alone.")
        try:
            papers = read_inputs([path], on_error=lambda _: None)
        except InputError as exc:
            found.notes.append(f"Input {raw} could not be read ({exc.message}); its papers show quotes alone.")
            found.missing_inputs.append(raw)
            continue
        for paper in papers:
            found.by_id.setdefault(paper.id, paper.abstract)
    return found


def _identity(source: PaperSource | None) -> dict[str, Any]:
    if source is None:
        return {}
    byline = [short_authors(source.authors)] if source.authors else []
    byline += [v for v in (source.date, source.id and f"id {source.id}", source.doi and f"DOI {source.doi}") if v]
    if source.url and web_link(source.url) is None:  # not http(s): shown as text, never a link
        byline.append(f"URL {source.url}")
    return {"byline": [normalise_ws(b) for b in byline], "link": source.link}


def _card(result: Result, abstracts: Abstracts, *, by_topic: bool = False) -> Card:
    record = result.record
    identity = _identity(result.source)
    identity |= {"on_topic": on_topic_label(record) if by_topic else None, "review": review_label(record)}
    quotes = [c.evidence for c in record.claims]
    abstract = abstracts.by_id.get(record.paper_id)
    if abstract is None:
        why = "its input file is missing" if abstracts.missing_inputs else "it is not in the run's inputs"
        if not abstracts.by_id and not abstracts.missing_inputs:
            why = "the run's inputs are unknown"
        claims = [ClaimView(i, c.statement, c.evidence, False) for i, c in enumerate(record.claims)]
        note = f"Abstract unavailable ({why}): evidence quotes are shown alone."
        return Card(record, claims, None, note, **identity)
    segments, found = segment_abstract(abstract, quotes)
    claims = [ClaimView(i, c.statement, c.evidence, found[i]) for i, c in enumerate(record.claims)]
    return Card(record, claims, segments, None, **identity)


def _search_text(result: Result, abstract: str | None) -> str:
    r = result.record
    parts = [r.title, r.summary, r.method.name or "", r.method.description, r.category.primary, r.contribution_type]
    parts += (result.source.authors or []) if result.source else []
    parts += [d.name for d in r.datasets]
    parts += [f"{c.statement} {c.evidence}" for c in r.claims]
    parts.append(abstract or "")
    return normalise_ws(" ".join(parts))


def _shown(values: Sequence[str], width: int | None = None) -> list[Shown]:
    distinct = sorted({v for v in values if v})
    return [Shown(v[:width] if width else v, v) for v in distinct]


def _provenance(results: Sequence[Result], manifest: dict[str, Any] | None) -> list[tuple[str, list[Shown]]]:
    provs = [r.provenance for r in results]
    settings = (manifest or {}).get("settings") or {}
    models = [p.model for p in provs] or [str(settings.get("model") or "")]
    prompts = [p.prompt_hash for p in provs] or [str(settings.get("prompt_hash") or "")]
    taxonomies = [p.taxonomy_hash for p in provs] or [str(settings.get("taxonomy_hash") or "")]
    made = sorted(p.finished_at for p in provs if p.finished_at)
    dates = [made[0][:10], made[-1][:10]] if made else []
    run_dates = [str((manifest or {}).get(k) or "") for k in ("started_at", "finished_at")]
    return [
        ("Model", _shown(models)),
        ("Backend", _shown([p.backend for p in provs])),
        ("Prompt hash", _shown(prompts, 12)),
        ("Taxonomy hash", _shown(taxonomies, 12)),
        ("Schema hash", _shown([p.schema_hash for p in provs], 12)),
        ("Records made", _shown(dates)),
        ("Run started / finished", _shown(run_dates)),
    ]


def render_run_report(
    results: Sequence[Result],
    failures: Sequence[Failure] = (),
    *,
    abstracts: Abstracts | None = None,
    manifest: dict[str, Any] | None = None,
    title: str = "Paper digest",
    outdir: str = "",
) -> str:
    """The run's HTML digest: charts, filters, one card per paper, failures, provenance."""
    abstracts = abstracts or Abstracts({}, [], [])
    categories = Counter(r.record.category.primary for r in results)
    contributions = Counter(r.record.contribution_type for r in results)
    dataset_counts: Counter[str] = Counter()
    labels: dict[str, str] = {}
    for r in results:
        for key in dict.fromkeys(dataset_key(d.name) for d in r.record.datasets):
            dataset_counts[key] += 1
        for d in r.record.datasets:
            labels.setdefault(dataset_key(d.name), normalise_ws(d.name))
    datasets = [
        DatasetOption(k, labels[k], dataset_counts[k]) for k in sorted(dataset_counts, key=lambda k: (k, labels[k]))
    ]
    rank = {k: i for i, k in enumerate(sorted(categories, key=lambda k: (-categories[k], k)))}
    ordered = ranked(sorted(results, key=lambda r: (rank[r.record.category.primary], r.record.title.casefold())))
    cards = [_card(r, abstracts, by_topic=is_ranked(results)) for r in ordered]
    data = {
        "papers": [
            {
                "id": r.record.paper_id,
                "category": r.record.category.primary,
                "contribution": r.record.contribution_type,
                "datasets": sorted({dataset_key(d.name) for d in r.record.datasets}),
                "review": r.record.needs_review,
                "text": _search_text(r, abstracts.by_id.get(r.record.paper_id)),
            }
            for r in ordered
        ]
    }
    status = str((manifest or {}).get("status") or "unknown")
    date = str((manifest or {}).get("finished_at") or (manifest or {}).get("started_at") or "")[:10]
    script = _asset("report.js", "</script")
    cat_bars, con_bars = _bars(categories), _bars(contributions)
    return _ENV.get_template("report.html.j2").render(
        title=title,
        csp=_csp(str(script)),
        style=_asset("report.css", "</style"),
        script=script,
        results=results,
        failures=sorted(failures, key=lambda f: f.title.casefold()),
        notes=abstracts.notes,
        run={"status": status, "date": date},
        charts=[
            {"filter": "category", "caption": "Papers per primary category", "bars": cat_bars},
            {"filter": "contribution", "caption": "Papers per contribution type", "bars": con_bars},
        ],
        cat_bars=cat_bars,
        con_bars=con_bars,
        datasets=datasets,
        cards=cards,
        review_count=sum(r.record.needs_review for r in ordered),
        ranked=is_ranked(results),
        provenance=_provenance(results, manifest),
        generated_at=_now(),
        outdir=outdir,
        data_json=script_json(data),
    )


def _read_manifest(outdir: Path) -> dict[str, Any] | None:
    try:
        value = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def is_own_report(path: Path) -> bool:
    """Whether `path` is an HTML page that this module wrote (so replacing it loses nothing)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if not head.lstrip().lower().startswith(b"<!doctype html>"):
        return False
    return GENERATOR_TAG in head or all(line in head for line in _LEGACY_HEAD)


def _same_file(a: Path, b: Path) -> bool:
    # The name that atomic_write replaces (a link is replaced, not followed), or the file a
    # link or hard link leads to: either way, `a` would stand where `b` is.
    if a.parent.resolve() / a.name == b.parent.resolve() / b.name:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_report_target(target: Path, *, protected: Sequence[Path] = (), force: bool = False) -> None:
    """Refuse to write a report over a file it must not replace.

    Never over a `protected` file (a run's own files, its inputs, the report's sources), not
    even with `force`; over any other existing file only if it is a report written here, or
    with `force`.
    """
    for path in protected:
        if _same_file(target, path):
            raise OutputError(
                f"refusing to write the report over {target}: it is {path.name}, which the report is made from; "
                "choose another --output",
                path=target,
            )
    if not target.parent.is_dir():
        raise OutputError(f"cannot write {target}: folder {target.parent} does not exist", path=target)
    if os.path.lexists(target) and not force and not is_own_report(target):
        raise OutputError(
            f"refusing to replace {target}: it is not a report written by summarizer; "
            "choose another --output, or pass --force to replace it",
            path=target,
        )


def _run_protected(directory: Path, manifest: dict[str, Any] | None) -> list[Path]:
    protected = [directory / name for name in RUN_FILES]
    for entry in (manifest or {}).get("inputs") or []:
        raw = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(raw, str):
            found = _locate(raw, directory)
            protected.append(found if found is not None else Path(raw))
    return protected


def write_run_report(outdir: Path | str, output: Path | str | None = None, *, force: bool = False) -> RunReport:
    """Render OUTDIR's records, failures and inputs' abstracts to one HTML file (default OUTDIR/report.html).

    Refuses (OutputError) to write over the run's own files or inputs, and over any other file
    that is not an earlier report unless `force`.
    """
    directory = Path(outdir)
    if not (directory / RECORDS).is_file():
        raise OutputError(f"{directory} is not a run directory: it has no {RECORDS}")
    target = Path(output) if output is not None else directory / REPORT_FILE
    manifest = _read_manifest(directory)
    # Checked before the work and again just before the write (the page takes a while).
    check_report_target(target, protected=_run_protected(directory, manifest), force=force)
    results = load_results(directory)
    failures = load_failures(directory, done={r.record.paper_id for r in results})
    abstracts = load_abstracts(directory, manifest)
    title = f"Paper digest · {directory.resolve().name}"
    page = render_run_report(
        results, failures, abstracts=abstracts, manifest=manifest, title=title, outdir=str(directory)
    )
    check_report_target(target, protected=_run_protected(directory, manifest), force=force)
    atomic_write(target, page)
    return RunReport(target, len(results), len(failures), abstracts.notes)


# --------------------------------------------------------------------------------------
# The eval dashboard


def _pct(value: float) -> float:
    return round(100.0 * min(max(value, 0.0), 1.0), 2)


def _metric_rows(run: EvalRun, baseline: EvalRun | None) -> list[dict[str, Any]]:
    from .evalreport import LABELS

    rows = []
    base_metrics = baseline.summary["metrics"] if baseline is not None else {}
    for name, m in run.summary["metrics"].items():
        value, low, high = float(m["value"]), float(m["ci95"][0]), float(m["ci95"][1])
        base = float(base_metrics[name]["value"]) if name in base_metrics else None
        delta = None if base is None else round(value - base, 4)
        trend = "" if not delta else "better" if delta > 0 else "worse"  # every headline metric: higher is better
        rows.append({
            "name": name, "label": LABELS.get(name, name), "value": value, "low": low, "high": high,
            "low_pct": _pct(low), "width_pct": max(_pct(high) - _pct(low), 0.5), "value_pct": _pct(value),
            "base": base, "base_pct": _pct(base or 0.0), "delta": delta, "trend": trend,
        })  # fmt: skip
    return rows


def _matrix(confusion: dict[str, dict[str, int]]) -> dict[str, Any]:
    predicted = {p for row in confusion.values() for p in row}
    cols = sorted((predicted | set(confusion)) - {"(failed)"}) + (["(failed)"] if "(failed)" in predicted else [])
    rows = []
    for gold, row in confusion.items():
        total = sum(row.values())
        cells = [
            {
                "pred": c,
                "count": row.get(c, 0),
                "heat": round(row.get(c, 0) / total, 3) if total else 0.0,
                "diag": c == gold,
            }
            for c in cols
        ]
        rows.append({"gold": gold, "cells": cells, "total": total})
    return {"cols": cols, "rows": rows}


def _trend(field: str, before: Any, after: Any, gold_primary: str) -> str:
    if field == "pred_primary":
        was, now = before == gold_primary, after == gold_primary
        return "better" if now and not was else "worse" if was and not now else "changed"
    if isinstance(after, bool | int | float) and isinstance(before, bool | int | float):
        return "better" if after > before else "worse" if after < before else "changed"
    return "changed"


def _changes(run: EvalRun, baseline: EvalRun) -> list[dict[str, Any]]:
    from .gate import changed_papers

    gold: dict[str, PaperScore] = {p.id: p for p in run.papers}
    out = []
    for ch in changed_papers(run.papers, baseline.papers):
        fields = []
        for name in ch["fields"]:
            before, after = ch["baseline"][name], ch["current"][name]
            trend = _trend(name, before, after, gold[ch["id"]].gold_primary)
            fields.append({"name": name, "before": _plain(before), "after": _plain(after), "trend": trend})
        out.append({"id": ch["id"], "title": ch["title"], "fields": fields})
    return out


def _plain(value: Any) -> str:
    return "(none)" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def render_eval_html(run: EvalRun, baseline: EvalRun | None = None) -> str:
    """The eval dashboard: metric table with intervals, confusion heat map, changes versus the baseline."""
    from .evalreport import REVIEW_LABELS
    from .gate import COMPARED_FIELDS

    return _ENV.get_template("eval.html.j2").render(
        csp=_csp(None),
        style=_asset("report.css", "</style"),
        run=run,
        baseline=baseline,
        metrics=_metric_rows(run, baseline),
        review=run.summary.get("review"),
        review_labels=REVIEW_LABELS,
        matrix=_matrix(run.summary["confusion"]),
        changes=_changes(run, baseline) if baseline is not None else [],
        compared=COMPARED_FIELDS,
        failed=[p for p in run.papers if not p.valid],
        generated_at=_now(),
    )


def write_eval_report(
    report: Path | str, output: Path | str | None = None, *, baseline: Path | str | None = None, force: bool = False
) -> Path:
    """Render an eval's report.json (and optionally a baseline) to HTML (default: next to it, .html).

    Never over its sources; over another file only if it is an earlier report, or with `force`.
    """
    from .evaluate import load_run

    source = Path(report)
    target = Path(output) if output is not None else source.with_suffix(".html")
    sources = [source] + ([Path(baseline)] if baseline is not None else [])
    check_report_target(target, protected=sources, force=force)
    run = load_run(source)
    base = load_run(Path(baseline)) if baseline is not None else None
    atomic_write(target, render_eval_html(run, base))
    return target
