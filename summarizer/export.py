"""The run directory's files: crash-safe logs, and the exports derived from them.

records.jsonl is the source of truth. It only ever gains whole lines: a failed write is
cut back, and a line torn by a crash is cut off before the next run appends. Everything
else is derived from it and can be rebuilt at any time (`summarizer export OUTDIR`): CSV,
Parquet and a Markdown digest. Every derived file is written to a temporary name and
renamed, so a reader never sees half of one and a crash leaves the previous one in place.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .digest import render_digest
from .errors import OutputError
from .schemas import Failure, PaperSource, Result, normalise_ws

RECORDS = "records.jsonl"
REJECTED = "records.rejected.jsonl"  # records.jsonl lines that failed the record checks on a resume
FAILURES = "failures.jsonl"
MANIFEST = "manifest.json"
CSV_FILE = "records.csv"
PARQUET_FILE = "records.parquet"
DIGEST_FILE = "digest.md"
FORMATS = ("csv", "parquet", "md")  # written by every run, and by `export` unless told which
LIBRARY_FORMATS = ("notes", "bibtex")  # only on request: summarizer.library


# --------------------------------------------------------------------------------------
# Run-directory files


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write `path` so that it holds either its old content or all of `data`, never a mix."""
    # A lone surrogate can only be an input file name that is not UTF-8 (listed in the
    # manifest): written as a backslash escape it is still valid UTF-8, and inside JSON that
    # escape reads back as the same name, so the report can find the file again.
    payload = data.encode("utf-8", errors="backslashreplace") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        # On a read-only or vanished directory the clean-up fails as well; the first error is the one to report.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", path=path) from exc


def overwrite_in_place(path: Path, text: str) -> bool:
    """Replace `path`'s content in its own blocks when it fits there (no new space needed); say whether done.

    Not crash-safe like `atomic_write`: the last resort for a small file on a full disk.
    """
    data = text.encode("utf-8", errors="backslashreplace")
    try:
        with open(path, "r+b") as fh:
            if len(data) > os.fstat(fh.fileno()).st_size:
                return False
            fh.write(data)
            fh.truncate(len(data))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        return False
    return True


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
    """(line number, parsed object or None when unparseable, raw line) for each non-empty line.

    A line without its newline is one a crash cut short: it is reported as unparseable even
    if it happens to parse, because its writer never finished it.
    """
    try:
        fh = open(path, "rb")  # opened here so a missing file is "no lines", not an error
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror or exc}", path=path) from exc
    with fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\n").decode("utf-8", errors="replace")
            if not line.strip():
                continue
            value: dict[str, Any] | None = None
            if raw.endswith(b"\n"):
                try:
                    parsed = json.loads(line)
                except json.JSONDecodeError:
                    parsed = None
                value = parsed if isinstance(parsed, dict) else None
            yield number, value, line


def record_id(value: dict[str, Any] | None) -> str | None:
    """The paper id of one records.jsonl object, or None when it is not a record."""
    record = value.get("record") if value else None
    pid = record.get("paper_id") if isinstance(record, dict) else None
    return pid if isinstance(pid, str) and pid else None


def failure_id(value: dict[str, Any] | None) -> str | None:
    pid = value.get("paper_id") if value else None
    return pid if isinstance(pid, str) and pid else None


def load_results(outdir: Path) -> list[Result]:
    """The run's records in file order, one per paper (the first wins); bad lines are skipped."""
    results: list[Result] = []
    seen: set[str] = set()
    for _, value, _ in iter_json_lines(outdir / RECORDS):
        pid = record_id(value)
        if pid is None or pid in seen:
            continue
        try:
            results.append(Result.model_validate(value))
        except ValidationError:
            continue
        seen.add(pid)
    return results


def load_failures(outdir: Path, *, done: set[str] | None = None) -> list[Failure]:
    """Papers that are failed now: the latest failure per paper, unless a record exists for it."""
    latest: dict[str, Failure] = {}
    for _, value, _ in iter_json_lines(outdir / FAILURES):
        pid = failure_id(value)
        if pid is None:
            continue
        try:
            latest[pid] = Failure.model_validate(value)
        except ValidationError:
            continue
    return [f for pid, f in latest.items() if not done or pid not in done]


# --------------------------------------------------------------------------------------
# Crash-safe writing: whole lines only, repaired after a crash


class LineAppender:
    """Appends whole lines; a write that fails half-way is cut back so no torn line stays."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise OutputError(f"cannot open {path}: {exc.strerror or exc}", path=path) from exc

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}", path=self.path) from exc
        self._size += len(data)

    def sync(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1


def cut_torn_tail(path: Path) -> int:
    """Drop a last line without its newline (its writer died mid-line); return the bytes dropped."""
    try:
        with open(path, "r+b") as fh:
            size = pos = fh.seek(0, os.SEEK_END)
            keep = 0
            while pos > 0:  # backwards, block by block, to the last newline
                start = max(0, pos - (1 << 16))
                fh.seek(start)
                newline = fh.read(pos - start).rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                pos = start
            if keep < size:
                fh.truncate(keep)
                os.fsync(fh.fileno())
            return size - keep
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise OutputError(f"cannot repair {path}: {exc.strerror or exc}", path=path) from exc


class FailureLog:
    """failures.jsonl as one line per currently failed paper (the latest reason)."""

    def __init__(self, path: Path, entries: dict[str, str]) -> None:
        self.path = path
        self.entries = entries
        self.dirty = False
        self._out = LineAppender(path)

    def add(self, paper_id: str, line: str) -> None:
        # Appended even when the paper is listed already: readers take the last line per
        # paper, so the file is right at once; the old line goes at the next rewrite.
        self._out.write(line.encode("utf-8"))
        self.dirty = self.dirty or paper_id in self.entries
        self.entries[paper_id] = line

    def discard(self, paper_id: str) -> None:
        if self.entries.pop(paper_id, None) is not None:
            self.dirty = True

    def flush(self) -> None:
        if self.dirty:
            self._out.close()
            try:
                atomic_write(self.path, "".join(self.entries.values()))
            finally:  # a failed rewrite leaves the old file, still appendable
                self._out = LineAppender(self.path)
            self.dirty = False

    def close(self) -> None:
        self.flush()
        self._out.close()


def file_digest(path: Path) -> dict[str, Any]:
    """The manifest's entry for an input: its hash and size, or why there is none."""
    digest = hashlib.sha256()
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            # A named pipe or a device was read once already; opening it again to hash it would
            # wait for a writer that never comes (a run hung there, deaf to SIGTERM).
            return {"path": str(path), "error": "not a regular file (a pipe or a device): not hashed"}
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        return {"path": str(path), "sha256": digest.hexdigest(), "bytes": path.stat().st_size}
    except OSError as exc:
        return {"path": str(path), "error": exc.strerror or str(exc)}


def open_run_dir(
    outdir: Path, *, valid: Callable[[dict[str, Any]], bool] | None = None
) -> tuple[set[str], LineAppender, FailureLog, list[str]]:
    """Repair what an interrupted run left; return the done ids, the two logs and what was repaired.

    A records.jsonl line counts as done only if `valid` accepts it (a record that passes the
    checks a fresh one passes); the others are moved to records.rejected.jsonl and their papers
    are done again. Callers hold the directory's lock: this rewrites files.
    """
    records_path, failures_path = outdir / RECORDS, outdir / FAILURES
    notes: list[str] = []
    for path in (records_path, failures_path):
        cut = cut_torn_tail(path)
        if cut:
            notes.append(f"{path.name}: cut off an unfinished last line ({cut} bytes) left by an interrupted run")
    done: set[str] = set()
    kept: list[str] = []
    rejected: list[str] = []
    lines = 0
    for _, value, line in iter_json_lines(records_path):
        lines += 1
        pid = record_id(value)
        if pid is not None and value is not None and valid is not None and not valid(value):
            rejected.append(line + "\n")
        elif pid is not None and pid not in done:
            done.add(pid)
            kept.append(line + "\n")
    if rejected:
        # Kept, not deleted: the line may be someone's edit, and the paper is redone anyway.
        aside = outdir / REJECTED
        try:
            with open(aside, "a", encoding="utf-8") as fh:
                fh.write("".join(rejected))
        except OSError as exc:
            raise OutputError(f"cannot write {aside}: {exc.strerror or exc}", path=aside) from exc
        notes.append(
            f"{RECORDS}: {len(rejected)} record(s) fail the record checks (an unknown category, evidence not in "
            f"the abstract, a missing field); moved to {REJECTED}, their papers are redone"
        )
    if len(kept) != lines:
        if len(kept) + len(rejected) != lines:
            notes.append(f"{RECORDS}: dropped unreadable or duplicate lines; their papers are redone")
        atomic_write(records_path, "".join(kept))
    failed: dict[str, str] = {}
    lines = 0
    for _, value, line in iter_json_lines(failures_path):
        lines += 1
        pid = failure_id(value)
        if pid is not None:
            failed[pid] = line + "\n"
    fixed = {pid: line for pid, line in failed.items() if pid not in done}
    if len(fixed) != lines:  # papers that succeeded after failing, duplicates, bad lines
        atomic_write(failures_path, "".join(fixed.values()))
    return done, LineAppender(records_path), FailureLog(failures_path, fixed), notes


# --------------------------------------------------------------------------------------
# Rows: one per paper, lists flattened for spreadsheets plus JSON columns for programs

COLUMNS: tuple[tuple[str, str], ...] = (
    ("paper_id", "string"),
    ("title", "string"),
    ("input_id", "string"),
    ("authors", "string"),
    ("date", "string"),
    ("url", "string"),
    ("doi", "string"),
    ("link", "string"),
    ("primary_category", "string"),
    ("secondary_categories", "string"),
    ("contribution_type", "string"),
    ("summary", "string"),
    ("method_name", "string"),
    ("method_description", "string"),
    ("method_evidence", "string"),
    ("datasets", "string"),
    ("datasets_json", "string"),
    ("claims", "string"),
    ("claims_json", "string"),
    ("category_rationale", "string"),
    ("confidence_subject", "float64"),
    ("confidence_category", "float64"),
    ("needs_review", "bool"),
    ("review_reasons", "string"),
    ("warnings", "string"),
    ("backend", "string"),
    ("model", "string"),
    ("prompt_hash", "string"),
    ("taxonomy_hash", "string"),
    ("schema_hash", "string"),
    ("cache_key", "string"),
    ("cache_hit", "bool"),
    ("prompt_tokens", "int64"),
    ("completion_tokens", "int64"),
    ("attempts", "int64"),
    ("reasks", "int64"),
    ("latency_s", "float64"),
    ("started_at", "string"),
    ("finished_at", "string"),
)

CLAIM_SEPARATOR = " | "


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def row(result: Result) -> dict[str, Any]:
    r, p, src = result.record, result.provenance, result.source or PaperSource()
    return {
        "paper_id": r.paper_id,
        "title": r.title,
        "input_id": src.id,
        "authors": "; ".join(src.authors or []) or None,
        "date": src.date,
        "url": src.url,
        "doi": src.doi,
        "link": src.link,
        "primary_category": r.category.primary,
        "secondary_categories": "; ".join(r.category.secondary),
        "contribution_type": r.contribution_type,
        "summary": r.summary,
        "method_name": r.method.name,
        "method_description": r.method.description,
        "method_evidence": r.method.evidence,
        "datasets": "; ".join(f"{d.name} ({d.role})" for d in r.datasets),
        "datasets_json": _dump([d.model_dump() for d in r.datasets]),
        "claims": CLAIM_SEPARATOR.join(normalise_ws(c.statement) for c in r.claims),
        "claims_json": _dump([c.model_dump() for c in r.claims]),
        "category_rationale": r.category.rationale,
        "confidence_subject": r.confidence.subject if r.confidence else None,
        "confidence_category": r.confidence.category if r.confidence else None,
        "needs_review": r.needs_review,
        "review_reasons": "; ".join(r.review_reasons),
        "warnings": "; ".join(r.warnings),
        "backend": p.backend,
        "model": p.model,
        "prompt_hash": p.prompt_hash,
        "taxonomy_hash": p.taxonomy_hash,
        "schema_hash": p.schema_hash,
        "cache_key": p.cache_key,
        "cache_hit": p.cache_hit,
        "prompt_tokens": p.usage.prompt_tokens,
        "completion_tokens": p.usage.completion_tokens,
        "attempts": p.attempts,
        "reasks": p.reasks,
        "latency_s": p.latency_s,
        "started_at": p.started_at,
        "finished_at": p.finished_at,
    }


def to_csv(results: Iterable[Result]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=[name for name, _ in COLUMNS], lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({k: _inert(v) for k, v in row(result).items()})
    return buffer.getvalue()


# C0 and C1 controls, DEL and the Unicode line and paragraph separators. csv quotes a field
# holding \n but not a lone \r, and spreadsheets (and `splitlines`) start a new row at either:
# text after one would begin a cell of its own, where a formula runs.
_CELL_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_FORMULA_START = ("=", "+", "-", "@")


def cell_text(value: str) -> str:
    """`value` as one inert spreadsheet cell: no control characters, never read as a formula."""
    text = _CELL_CONTROLS.sub(" ", value)
    # Spreadsheets skip leading blanks when they look for a formula, so test the first
    # visible character, not the first one.
    if text.lstrip()[:1] in _FORMULA_START:
        return "'" + text
    return text


def _inert(value: Any) -> Any:
    return cell_text(value) if isinstance(value, str) else value


# --------------------------------------------------------------------------------------
# The whole export


def default_formats() -> list[str]:
    """FORMATS, less Parquet where its extra is not installed: the base install still gets its CSV and digest."""
    from .extras import has_extra

    return [f for f in FORMATS if f != "parquet" or has_extra("parquet")]


def skipped_note(written: dict[str, Path]) -> list[str]:
    """What a default export left out and how to get it (nothing, or one line)."""
    from .extras import install_hint

    if "parquet" in written:
        return []
    return [f"{PARQUET_FILE} not written: Parquet needs the 'parquet' extra ({install_hint('parquet')})"]


def export_run(
    outdir: Path | str, *, formats: Sequence[str] | None = None, template: Path | None = None
) -> dict[str, Path]:
    """Regenerate the requested exports (default: `default_formats()`) from a run directory's records.jsonl.

    Parquet asked for by name without its extra is a MissingExtra, before anything is written."""
    directory = Path(outdir)
    if formats is None:
        formats = default_formats()
    if not (directory / RECORDS).is_file():
        raise OutputError(f"{directory} is not a run directory: it has no {RECORDS}")
    unknown = sorted(set(formats) - set(FORMATS) - set(LIBRARY_FORMATS))
    if unknown:
        raise OutputError(f"unknown export format(s) {unknown}; choose from {[*FORMATS, *LIBRARY_FORMATS]}")
    if template is not None and "notes" not in formats:
        raise OutputError("--template is the notes' template: use it with --format notes")
    if "parquet" in formats:
        from .extras import require_extra

        require_extra("parquet", "Parquet export")
    results = load_results(directory)
    written: dict[str, Path] = {}
    if "csv" in formats:
        written["csv"] = directory / CSV_FILE
        atomic_write(written["csv"], to_csv(results))
    if "parquet" in formats:
        from .parquet_export import to_parquet  # pyarrow: the optional 'parquet' extra

        written["parquet"] = directory / PARQUET_FILE
        atomic_write(written["parquet"], to_parquet(results))
    if "md" in formats:
        failures = load_failures(directory, done={r.record.paper_id for r in results})
        written["md"] = directory / DIGEST_FILE
        atomic_write(written["md"], render_digest(results, failures))
    if "notes" in formats or "bibtex" in formats:
        from .library import write_bibtex, write_notes  # it imports this module

        if "notes" in formats:
            written["notes"] = write_notes(directory, results, template)
        if "bibtex" in formats:
            written["bibtex"] = write_bibtex(directory, results)
    return written
