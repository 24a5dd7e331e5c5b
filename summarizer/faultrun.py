"""Fault-injection runs of `summarizer tag`, and an audit of what they leave behind.

Shared by the reliability tests and `benchmarks/faults.py`, so both check the same
promise: every input paper ends as exactly one valid record in records.jsonl or one
failure with a reason in failures.jsonl; none lost, none duplicated, no torn line, and
every request the server saw is accounted to exactly one paper. The runs themselves go
through the real `summarizer tag` path (`run_tag`, or the CLI in a subprocess that can be
killed) against `testserver.ScriptedServer`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .export import FAILURES, RECORDS
from .schemas import Failure, Paper, PaperRecord, Result
from .settings import PROJECT_ROOT, Settings
from .sources import read_inputs
from .taxonomy import load_taxonomy
from .testserver import MISSING_DATASET, MISSING_NAME

SEEDS_DIR = PROJECT_ROOT / "examples" / "seeds"


def make_inputs(path: Path, n: int, *, tag: str = "fault", start: int = 0) -> list[Paper]:
    """Write papers `start`..`start + n - 1` (distinct titles over the seed abstracts) as JSONL."""
    seeds = read_inputs(sorted(SEEDS_DIR.glob("*.txt")))
    papers = []
    for i in range(start, start + n):
        seed = seeds[i % len(seeds)]
        papers.append(Paper.from_text(f"{seed.title} [{tag} {i}]", seed.abstract))
    with path.open("w", encoding="utf-8") as fh:
        for paper in papers:
            fh.write(json.dumps({"title": paper.title, "abstract": paper.abstract}) + "\n")
    return papers


def run_env(**settings: Any) -> dict[str, str]:
    """This process's environment without ambient OPENAI_*/SUMMARIZER_* values, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SUMMARIZER_"))}
    env.update({f"SUMMARIZER_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def tag_command(inputs: Path, outdir: Path, base_url: str, cache_dir: Path, *extra: str) -> list[str]:
    """`summarizer tag` against an OpenAI-compatible server, run as `python -m summarizer.cli`."""
    return [
        sys.executable, "-m", "summarizer.cli", "tag", str(inputs), "-o", str(outdir), "--backend", "openai",
        "--base-url", base_url, "--model", "scripted", "--cache-dir", str(cache_dir), *extra,
    ]  # fmt: skip


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------------------------------
# kill -9 and resume


@dataclass(frozen=True)
class Start:
    """One start of the command: how many records before and after, and how it ended."""

    number: int
    records_before: int
    records_after: int
    returncode: int
    seconds: float
    notices: list[str]

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def kill_and_resume(
    command: Sequence[str], outdir: Path, *, papers: int, kills: int, rng: random.Random, env: dict[str, str]
) -> list[Start]:
    """Start `command` (a `tag` run with `--log-format jsonl`), SIGKILL it `kills` times at random
    points, starting it again after each kill, then let the last start run to the end."""
    records = outdir / RECORDS
    starts: list[Start] = []
    for number in range(1, kills + 2):
        before = count_lines(records)
        last = number == kills + 1
        # A random point in what is left, away from both ends so that the kill lands mid-run.
        target = before + rng.randint(1, max(1, (papers - before) * 2 // 3))
        log = outdir.parent / f"{outdir.name}.start-{number}.jsonl"
        # Events go to a file: a pipe nobody reads would fill up and stall the run.
        with log.open("wb") as sink:
            proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.DEVNULL)
        clock = time.monotonic()
        if not last:
            while proc.poll() is None and count_lines(records) < target:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))  # then at a random moment, not just after a write
            proc.send_signal(signal.SIGKILL)
        returncode = proc.wait(timeout=600)
        events = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x.endswith("}")]
        notices = [str(e["message"]) for e in events if e.get("event") == "notice"]
        seconds = time.monotonic() - clock
        starts.append(Start(number, before, count_lines(records), returncode, seconds, notices))
    return starts


# --------------------------------------------------------------------------------------
# The audit


@dataclass
class Audit:
    """What a run directory holds, measured against the papers that went in."""

    papers: int
    records: int = 0
    failures: int = 0
    lost: list[str] = field(default_factory=list)  # in neither file
    duplicated: list[str] = field(default_factory=list)  # twice in a file, or in both files
    unexpected: list[str] = field(default_factory=list)  # ids that were never an input
    invalid: list[str] = field(default_factory=list)  # lines that are not a valid record or failure
    torn: bool = False  # a last line without its newline
    failure_reasons: Counter[str] = field(default_factory=Counter)  # by error type
    attempts: int = 0  # requests accounted to papers: fresh records' plus failures'
    max_attempts: int = 0
    cache_hits: int = 0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.invalid or self.torn)

    def problems(self) -> str:
        return (
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, "
            f"invalid {len(self.invalid)} {self.invalid[:3]}, torn {self.torn}"
        )


def audit_run(outdir: Path, papers: Sequence[Paper], settings: Settings | None = None) -> Audit:
    """Check every line of records.jsonl and failures.jsonl against the input papers.

    A record is valid when it parses, its paper was an input, and it passes the record
    checks again against that paper's abstract (evidence verbatim, names in the abstract,
    taxonomy ids); a failure is valid when it parses and says why.
    """
    by_id = {p.id: p for p in papers}
    taxonomy = load_taxonomy((settings or Settings()).resolved_taxonomy_path)
    context = taxonomy.validation_context()
    audit = Audit(papers=len(by_id))
    seen: Counter[str] = Counter()
    for name in (RECORDS, FAILURES):
        raw = (outdir / name).read_bytes() if (outdir / name).exists() else b""
        audit.torn = audit.torn or not (raw == b"" or raw.endswith(b"\n"))
        for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
            where = f"{name}:{number}"
            try:
                pid, attempts = (
                    _check_record(line, by_id, context, audit) if name == RECORDS else _check_failure(line, audit)
                )
            except (ValueError, ValidationError, KeyError) as exc:
                audit.invalid.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            seen[pid] += 1
            if pid not in by_id:
                audit.unexpected.append(pid)
            audit.attempts += attempts
            audit.max_attempts = max(audit.max_attempts, attempts)
    audit.lost = sorted(set(by_id) - set(seen))
    audit.duplicated = sorted(pid for pid, n in seen.items() if n > 1)
    return audit


def _check_record(line: str, by_id: dict[str, Paper], context: dict[str, Any], audit: Audit) -> tuple[str, int]:
    result = Result.model_validate_json(line)
    record = result.record
    paper = by_id.get(record.paper_id)
    if paper is None:
        return record.paper_id, 0
    PaperRecord.model_validate(record.model_dump(mode="json"), context={"abstract": paper.abstract, **context})
    if record.method.name == MISSING_NAME or MISSING_DATASET in {d.name for d in record.datasets}:
        raise ValueError(f"paper {record.paper_id}: a name that is not in the abstract became a record")
    audit.records += 1
    prov = result.provenance
    audit.cache_hits += prov.cache_hit
    return record.paper_id, 0 if prov.cache_hit else prov.attempts


def _check_failure(line: str, audit: Audit) -> tuple[str, int]:
    failure = Failure.model_validate_json(line)
    if not failure.reason.strip() or not failure.error:
        raise ValueError(f"paper {failure.paper_id}: a failure without a reason")
    audit.failures += 1
    audit.failure_reasons[failure.error] += 1
    return failure.paper_id, failure.attempts
