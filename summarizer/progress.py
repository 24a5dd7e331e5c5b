"""What a batch run reports: typed events while it runs, a summary when it ends, and sinks.

The library only emits events (`batch.run_tag(..., sink=...)`); how they are shown is the
caller's choice: a rich live display for people, JSON lines for scripts and CI, or nothing.
Cache hits arrive in chunks (`CacheHits`), not one event per paper, so that a fully cached
re-run is not slowed down by its own progress reporting.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal

from .schemas import Usage

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import Progress, TaskID


@dataclass(frozen=True)
class BackendChosen:
    """The first event of every run: where its papers go (`at` None: nowhere off this machine)."""

    kind: ClassVar[str] = "backend"
    backend: str
    model: str
    at: str | None
    line: str


@dataclass(frozen=True)
class RunStarted:
    kind: ClassVar[str] = "run_started"
    outdir: str
    papers: int  # in this run's scope: de-duplicated, this shard only
    already_done: int  # in records.jsonl before this run started
    to_do: int
    concurrency: int
    model: str
    shard: str | None = None


@dataclass(frozen=True)
class InputProblem:
    kind: ClassVar[str] = "input_error"
    path: str | None
    line: int | None
    reason: str
    repaired: bool = False  # an InputWarning: the paper was kept, repaired as the reason says

    @property
    def label(self) -> str:
        return "input warning: " if self.repaired else "input error: "


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not an error (a repaired file, a reconciliation)."""

    kind: ClassVar[str] = "notice"
    message: str


ColdStep = Literal["assemble", "verify", "server"]


@dataclass(frozen=True)
class ColdStart:
    """A slow step before the first answer (the embedded model checked, its server started):
    told when it begins (`seconds` None) and when it is done, with the seconds it took."""

    kind: ClassVar[str] = "cold_start"
    step: ColdStep
    seconds: float | None
    message: str


@dataclass(frozen=True)
class CacheHits:
    kind: ClassVar[str] = "cache_hits"
    count: int


@dataclass(frozen=True)
class PaperDone:
    kind: ClassVar[str] = "paper_done"
    paper_id: str
    title: str
    cache_hit: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    latency_s: float
    attempts: int


@dataclass(frozen=True)
class PaperFailed:
    kind: ClassVar[str] = "paper_failed"
    paper_id: str
    title: str
    error: str
    reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


@dataclass(frozen=True)
class BudgetReached:
    kind: ClassVar[str] = "budget_reached"
    reason: str


@dataclass(frozen=True)
class RunFinished:
    kind: ClassVar[str] = "run_finished"
    summary: dict[str, Any]


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_BUDGET, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
Status = Literal["completed", "budget_exhausted", "interrupted", "error", "running", "dry_run"]

Event = (
    BackendChosen
    | RunStarted
    | InputProblem
    | Notice
    | ColdStart
    | CacheHits
    | PaperDone
    | PaperFailed
    | BudgetReached
    | RunFinished
)
Sink = Callable[[Event], None]


def event_dict(event: Event) -> dict[str, Any]:
    return {"event": event.kind, "ts": datetime.now(UTC).isoformat(timespec="milliseconds"), **asdict(event)}


@dataclass
class Tally:
    """Running totals derived from events: what every display shows."""

    total: int = 0
    done: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_known: bool = True
    started: float = field(default_factory=time.monotonic)

    def add(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.total = event.to_do
            self.started = time.monotonic()
        elif isinstance(event, CacheHits):
            self.done += event.count
            self.cached += event.count
        elif isinstance(event, PaperDone | PaperFailed):
            if isinstance(event, PaperDone):
                self.done += 1
                self.cached += event.cache_hit
            else:
                self.failed += 1
            self.prompt_tokens += event.prompt_tokens
            self.completion_tokens += event.completion_tokens
            if event.cost_usd is None:
                self.cost_known = False
            else:
                self.cost_usd += event.cost_usd

    @property
    def processed(self) -> int:
        return self.done + self.failed

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.processed / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        # Cache hits arrive in an early burst; what is left is mostly model calls, so the
        # ETA comes from the rate of those alone.
        elapsed = time.monotonic() - self.started
        served = self.processed - self.cached
        if served <= 0 or elapsed <= 0:
            return None
        return (self.total - self.processed) / (served / elapsed)

    def eta_text(self) -> str:
        eta = self.eta_s
        if self.processed >= self.total:
            return "eta 0:00:00"
        if eta is None:
            return "eta -:--:--"
        minutes, seconds = divmod(int(eta), 60)
        return f"eta {minutes // 60}:{minutes % 60:02d}:{seconds:02d}"

    def cost_text(self) -> str:
        return f"${self.cost_usd:,.4f}" if self.cost_known else "cost unknown"


# --------------------------------------------------------------------------------------
# What a run returns


@dataclass(frozen=True)
class ModeCost:
    """What one paper costs under a way of deciding labels (`Settings.decisions`), on average."""

    mode: str  # generated | scored
    requests: float
    usage: Usage
    cost_usd: float | None


@dataclass(frozen=True)
class Plan:
    """What a run would do (`--dry-run`): nothing is sent and nothing is written."""

    papers: int
    already_done: int
    cached: int
    to_send: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    model: str
    price_source: str | None = None  # where the price came from: local, a price table, genai-prices
    mode: str = "generated"  # how this run decides labels (Settings.decisions, resolved for its backend)
    modes: tuple[ModeCost, ...] = ()  # per paper, each way of deciding labels


@dataclass
class RunSummary:
    outdir: str
    status: Status
    papers: int = 0  # in scope: de-duplicated, this shard only
    skipped: int = 0  # already in records.jsonl when the run started
    done: int = 0  # records written by this run, cache hits included
    cached: int = 0
    failed: int = 0
    not_attempted: int = 0  # left for later by a budget stop
    usage: Usage = field(default_factory=Usage)  # spent by this run, failed attempts included
    cost_usd: float | None = 0.0
    elapsed_s: float = 0.0
    stop_reason: str | None = None
    input_errors: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the run left out and how to get it
    plan: Plan | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "budget_exhausted":
            return EXIT_BUDGET
        if self.status == "interrupted":
            return EXIT_INTERRUPTED
        return EXIT_FAILURES if self.failed else EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = {**self.usage.model_dump(), "total_tokens": self.usage.total_tokens}
        data["exit_code"] = self.exit_code
        return data


# --------------------------------------------------------------------------------------
# Sinks


def _where(event: InputProblem) -> str:
    if event.path is None:
        return ""
    return f"{event.path}:{event.line}: " if event.line is not None else f"{event.path}: "


class QuietSink:
    """Nothing on success; input problems, notices (cache trouble, a repaired run directory)
    and the budget stop still go to stderr."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: Event) -> None:
        if isinstance(event, InputProblem):
            print(f"{event.label}{_where(event)}{event.reason}", file=self.stream)
        elif isinstance(event, Notice):
            print(f"notice: {event.message}", file=self.stream)
        elif isinstance(event, BudgetReached):
            print(f"budget reached: {event.reason}", file=self.stream)

    def __enter__(self) -> QuietSink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class JsonlSink:
    """One JSON object per line and per event, flushed at once (CI logs are read live)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event_dict(event), ensure_ascii=False) + "\n")
        self.stream.flush()

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()


_TAGGING = "tagging"


class RichSink:
    """A live progress bar with rate, ETA, cache hits, failures, tokens and cost (on stderr)."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.tally = Tally()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> RichSink:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.stop()
            self._progress = None

    def _refresh(self) -> None:
        if self._progress is None or self._task is None:
            return
        t = self.tally
        stats = (
            f"cached {t.cached} · failed {t.failed} · {t.prompt_tokens + t.completion_tokens:,} tok · {t.cost_text()}"
        )
        rate, eta = f"{t.rate:,.1f}/s", t.eta_text()
        self._progress.update(self._task, completed=t.processed, total=t.total, rate=rate, eta=eta, stats=stats)

    def _say(self, label: str, style: str, text: str) -> None:
        from rich.text import Text

        self.console.print(Text.assemble((label, style), text), highlight=False)

    def __call__(self, event: Event) -> None:
        self.tally.add(event)
        if isinstance(event, RunStarted) and self._progress is not None:
            self._task = self._progress.add_task(_TAGGING, total=event.to_do, rate="", eta="", stats="")
            if event.already_done:
                self._say("resuming: ", "cyan", f"{event.already_done} papers already done in {event.outdir}")
        # Paper text and paths are shown as plain Text: a title holding "[bold]" is not markup.
        elif isinstance(event, InputProblem):
            self._say(event.label, "yellow", f"{_where(event)}{event.reason}")
        elif isinstance(event, PaperFailed):
            self._say("failed: ", "red", f"{event.title[:80]}: {event.error}: {event.reason[:160]}")
        elif isinstance(event, BudgetReached):
            self._say("budget reached: ", "yellow", event.reason)
        elif isinstance(event, Notice):
            self._say("note: ", "yellow", event.message)
        elif isinstance(event, BackendChosen):
            self._say("backend: ", "cyan", event.line.removeprefix("backend: "))
        elif isinstance(event, ColdStart):
            self._cold_start(event)
        self._refresh()

    def _cold_start(self, event: ColdStart) -> None:
        from rich.markup import escape

        # While a step runs the progress line says what it is waiting for; its time stays on screen.
        if event.seconds is None and self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=escape(event.message))
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=_TAGGING)
        self._say("starting: ", "cyan", event.message)


LogFormat = Literal["rich", "jsonl", "quiet"]


def make_sink(log_format: LogFormat, *, quiet: bool = False) -> RichSink | JsonlSink | QuietSink:
    """The display the CLI uses; a context manager so a live display always ends cleanly."""
    if log_format == "jsonl":
        return JsonlSink()
    if quiet or log_format == "quiet":
        return QuietSink()
    return RichSink()


def render_summary(summary: RunSummary) -> RenderableType:
    """The end-of-run (or dry-run) report for people."""
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    plan = summary.plan
    if plan is not None:
        cost = "unknown (no price for this model)" if plan.cost_usd is None else f"${plan.cost_usd:,.4f}"
        cost += f" (price: {plan.price_source})" if plan.price_source else ""
        rows = [
            ("dry run", f"{plan.papers} papers with {plan.model}"),
            ("already done", str(plan.already_done)),
            ("cached", f"{plan.cached} (free)"),
            ("would send", str(plan.to_send)),
            ("est. tokens", f"{plan.prompt_tokens:,} in + {plan.completion_tokens:,} out (before re-asks)"),
            ("est. cost", cost),
        ]
        for m in plan.modes:
            each = "unknown" if m.cost_usd is None else f"${m.cost_usd:,.5f}"
            chosen = " (this run)" if m.mode == plan.mode else ""
            rows.append((
                f"per paper, {m.mode}",
                f"{m.requests:.1f} requests, ~{m.usage.prompt_tokens:,} in + {m.usage.completion_tokens:,} out tokens, "
                f"{each}{chosen}",
            ))  # fmt: skip
    else:
        cost = "unknown" if summary.cost_usd is None else f"${summary.cost_usd:,.4f}"
        rows = [
            ("status", summary.status + (f": {summary.stop_reason}" if summary.stop_reason else "")),
            ("papers", f"{summary.papers} ({summary.skipped} already done before this run)"),
            ("done", f"{summary.done} ({summary.cached} from cache)"),
            ("failed", str(summary.failed)),
            ("not attempted", str(summary.not_attempted)),
            ("tokens", f"{summary.usage.prompt_tokens:,} in + {summary.usage.completion_tokens:,} out"),
            ("cost", cost),
            ("time", f"{summary.elapsed_s:.1f}s"),
            ("output", summary.outdir),
        ]
        rows += [(kind, path) for kind, path in summary.outputs.items()]
        rows += [("note", note) for note in summary.notes]
        if summary.input_errors:
            rows.append(("input errors", f"{len(summary.input_errors)} (listed in manifest.json)"))
        if summary.status in ("budget_exhausted", "interrupted") or summary.failed:
            rows.append(("resume", "run the same command again: done papers are skipped, failed ones retried"))
    for label, value in rows:
        table.add_row(label, Text(value))
    return table
