"""Batch tagging runs: many papers in, an append-only records.jsonl out, resumable, within a budget.

The run directory is the state. records.jsonl only ever gains whole lines (a failed write
is cut back; a line torn by a crash is cut off on the next start), so "the papers already
done" is simply the ids in it, and a re-run of the same command continues where the last
one stopped. failures.jsonl holds one line per paper that is failed *now*: a paper that
later succeeds is removed from it (atomic rewrite), and its papers are retried on resume.

Cache hits are the common case of a re-run and are served without rendering prompts,
validating records or creating a task per paper: key, raw cache read, one write per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec

from aiolimiter import AsyncLimiter

from .cache import RunCache, canonical_json
from .coldstart import listen
from .errors import ConfigError, InputError, InputWarning, OutputError, ServiceError, SummarizerError
from .export import (
    MANIFEST,
    RECORDS,
    FailureLog,
    LineAppender,
    atomic_write,
    export_run,
    file_digest,
    iter_json_lines,
    open_run_dir,
    overwrite_in_place,
    record_id,
    skipped_note,
)
from .extract import Extractor
from .llm import Backend, describe_backend
from .pricing import Price, estimate_usage, mode_costs, price_for
from .progress import (
    BackendChosen,
    BudgetReached,
    CacheHits,
    InputProblem,
    Notice,
    PaperDone,
    PaperFailed,
    Plan,
    RunFinished,
    RunStarted,
    RunSummary,
    Sink,
    Status,
)
from .schemas import Failure, Paper, PaperSource, Result, Usage, read_back
from .settings import Settings
from .sources import ReadOptions, read_inputs

_P = ParamSpec("_P")
_CHUNK = 512  # cache hits served per step: large enough to amortise a write, small enough to keep the loop live
_CHECKPOINT_S = 2.0  # how often the manifest and failures.jsonl are brought up to date during a run
_OPERATIONAL = (
    "requests_per_minute", "tokens_per_minute", "max_retries", "timeout_s", "use_cache", "max_cost_usd",
    "max_total_tokens",
)  # fmt: skip


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------------------
# Shards


@dataclass(frozen=True)
class Shard:
    """Paper `i` of `n` (1-based): a deterministic split by paper id, so n machines share a run."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ConfigError(f"shard {self.index}/{self.count}: need 1 ≤ i ≤ n")

    @classmethod
    def parse(cls, text: str) -> Shard:
        i, sep, n = text.partition("/")
        if not sep or not i.strip().isdigit() or not n.strip().isdigit():
            raise ConfigError(f"--shard expects i/n with 1 ≤ i ≤ n (e.g. 2/4), got {text!r}")
        return cls(int(i), int(n))

    def owns(self, paper_id: str) -> bool:
        try:
            number = int(paper_id, 16)
        except ValueError:  # ids from `read_inputs` are hex; a caller's own ids may not be
            number = int(hashlib.sha256(paper_id.encode()).hexdigest()[:12], 16)
        return number % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# --------------------------------------------------------------------------------------
# The run


class _Run:
    def __init__(
        self,
        extractor: Extractor,
        outdir: Path,
        emit: Sink,
        price: Price | None,
        summary: RunSummary,
        manifest_base: dict[str, Any],
    ) -> None:
        self.ex = extractor
        self.settings = extractor.settings
        self.outdir = outdir
        self.emit = emit
        self.price = price
        self.summary = summary
        self.manifest_base = manifest_base
        self.started = time.monotonic()
        self.reserved = Usage()
        self.reserved_cost = 0.0
        self._last_checkpoint = 0.0
        s = self.settings
        self.rpm = AsyncLimiter(s.requests_per_minute, 60) if s.requests_per_minute else None
        self.tpm = AsyncLimiter(s.tokens_per_minute, 60) if s.tokens_per_minute else None
        # Estimating renders the prompt: only worth it when a budget or token limit reads it.
        self.estimating = bool(s.max_total_tokens or s.max_cost_usd or s.tokens_per_minute)
        self.records: LineAppender | None = None
        self.failures: FailureLog | None = None

    # -- budget ---------------------------------------------------------------------
    def _reserve(self, estimate: Usage) -> str | None:
        """Reserve a paper's estimated spend, or say which budget it would break."""
        s, spent = self.settings, self.summary.usage
        if s.max_total_tokens is not None:
            projected = spent.total_tokens + self.reserved.total_tokens + estimate.total_tokens
            if projected > s.max_total_tokens:
                return (
                    f"token budget {s.max_total_tokens:,}: {spent.total_tokens:,} spent, "
                    f"{self.reserved.total_tokens:,} in flight, next paper needs ~{estimate.total_tokens:,}"
                )
        cost = self.price.cost(estimate) if self.price else 0.0
        if s.max_cost_usd is not None:
            so_far = self.summary.cost_usd or 0.0
            if so_far + self.reserved_cost + cost > s.max_cost_usd:
                return f"cost budget ${s.max_cost_usd:g}: ${so_far:.4f} spent, next paper needs ~${cost:.4f}"
        self.reserved += estimate
        self.reserved_cost += cost
        return None

    def _release(self, estimate: Usage) -> None:
        self.reserved = Usage(
            prompt_tokens=self.reserved.prompt_tokens - estimate.prompt_tokens,
            completion_tokens=self.reserved.completion_tokens - estimate.completion_tokens,
        )
        self.reserved_cost -= self.price.cost(estimate) if self.price else 0.0

    def _charge(self, usage: Usage) -> float | None:
        self.summary.usage += usage
        if self.price is None:
            self.summary.cost_usd = None
            return None
        cost = self.price.cost(usage)
        if self.summary.cost_usd is not None:
            self.summary.cost_usd += cost
        return cost

    # -- the work -------------------------------------------------------------------
    async def execute(self, papers: list[Paper], concurrency: int) -> None:
        queue: asyncio.Queue[Paper | None] = asyncio.Queue()
        # No more workers than papers: `--concurrency 200000` on 2 papers made 200,000 tasks (409 MB).
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(max(1, min(concurrency, len(papers))))]
        try:
            await self._serve_cached(papers, queue)
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _serve_cached(self, papers: list[Paper], queue: asyncio.Queue[Paper | None]) -> None:
        """Copy cache hits straight to records.jsonl; hand the misses to the workers as found."""
        cache, key_for = self.ex.cache, self.ex.key_for
        assert self.records is not None and self.failures is not None
        if cache is None or not self.ex.cacheable:
            for paper in papers:
                queue.put_nowait(paper)
            return
        taxonomy = self.ex.taxonomy.validation_context()
        for start in range(0, len(papers), _CHUNK):
            lines: list[str] = []
            for paper in papers[start : start + _CHUNK]:
                raw = cache.get_raw(key_for(paper))
                # Checked as a fresh record is (a cache can be shared, damaged or edited): what
                # fails is a miss, never written.
                hit = None if raw is None else read_back(raw, paper_id=paper.id, context=_context(paper, taxonomy))
                if hit is None:
                    queue.put_nowait(paper)
                    continue
                hit.provenance.cache_hit = True
                hit.source = PaperSource.of(paper)  # this input's identity: the cache holds none
                lines.append(canonical_json(hit.model_dump(mode="json")))
                if self.failures.entries:
                    self.failures.discard(paper.id)
            if lines:
                self.records.write(("\n".join(lines) + "\n").encode("utf-8"))
                self.summary.done += len(lines)
                self.summary.cached += len(lines)
                self.emit(CacheHits(len(lines)))
                self._checkpoint()
            await asyncio.sleep(0)  # let the workers send the misses found so far

    async def _worker(self, queue: asyncio.Queue[Paper | None]) -> None:
        while (paper := await queue.get()) is not None:
            if self.summary.stop_reason is not None:
                self.summary.not_attempted += 1
                continue
            estimate = estimate_usage(self.ex, paper) if self.estimating else Usage()
            reason = self._reserve(estimate)
            if reason is not None:
                self.summary.stop_reason = reason
                self.summary.not_attempted += 1
                self.emit(BudgetReached(reason))
                continue
            try:
                if self.rpm is not None:
                    await self.rpm.acquire()
                if self.tpm is not None:
                    await self.tpm.acquire(min(float(estimate.total_tokens), self.tpm.max_rate))
                outcome = await self._extract(paper)
            finally:
                self._release(estimate)
            self._finish(paper, outcome)
            await self._settle_limits(outcome, estimate)

    async def _extract(self, paper: Paper) -> Result | Failure:
        try:
            return await self.ex.extract_or_failure(paper)
        except SummarizerError:
            raise  # configuration, cache or prompt trouble: every paper would hit it
        except Exception as exc:  # an unexpected client error costs one paper, not the run
            reason = str(exc) or repr(exc)
            return Failure(
                paper_id=paper.id,
                title=paper.title,
                error=type(exc).__name__,
                reason=reason[:2000],
                source=paper.source,
                line=paper.line,
                identity=PaperSource.of(paper),
                finished_at=_now(),
            )

    async def _settle_limits(self, outcome: Result | Failure, estimate: Usage) -> None:
        # Re-asks and transport retries were requests too, and the answer may have been
        # longer than estimated: charge the limiters after the fact, so the next request waits.
        usage = outcome.provenance.usage if isinstance(outcome, Result) else outcome.usage
        attempts = outcome.provenance.attempts if isinstance(outcome, Result) else outcome.attempts
        if self.rpm is not None:
            for _ in range(max(attempts - 1, 0)):
                await self.rpm.acquire()
        extra = usage.total_tokens - estimate.total_tokens
        if self.tpm is not None and extra > 0:
            await self.tpm.acquire(min(float(extra), self.tpm.max_rate))

    def _finish(self, paper: Paper, outcome: Result | Failure) -> None:
        assert self.records is not None and self.failures is not None
        if isinstance(outcome, Result):
            prov = outcome.provenance
            self.records.write((canonical_json(outcome.model_dump(mode="json")) + "\n").encode("utf-8"))
            self.failures.discard(paper.id)
            self.summary.done += 1
            self.summary.cached += prov.cache_hit
            u = Usage() if prov.cache_hit else prov.usage  # a hit costs this run nothing
            cost = self._charge(u)
            hit, latency, attempts = prov.cache_hit, prov.latency_s, prov.attempts
            self.emit(
                PaperDone(paper.id, paper.title, hit, u.prompt_tokens, u.completion_tokens, cost, latency, attempts)
            )
        else:
            self.failures.add(paper.id, outcome.model_dump_json() + "\n")
            self.summary.failed += 1
            u, error, reason = outcome.usage, outcome.error, outcome.reason
            cost = self._charge(u)
            self.emit(PaperFailed(paper.id, paper.title, error, reason, u.prompt_tokens, u.completion_tokens, cost))
        self._checkpoint()

    # -- durable state ----------------------------------------------------------------
    def _checkpoint(self, *, force: bool = False, status: Status = "running") -> None:
        now = time.monotonic()
        if not force and now - self._last_checkpoint < _CHECKPOINT_S:
            return
        self._last_checkpoint = now
        try:
            if self.failures is not None:
                self.failures.flush()
            if self.records is not None:
                self.records.sync()
        finally:  # the manifest says how the run ended even when failures.jsonl could not be rewritten
            self.summary.elapsed_s = round(now - self.started, 3)
            self._write_manifest(status)

    def _write_manifest(self, status: Status) -> None:
        path, manifest = self.outdir / MANIFEST, self.manifest(status)
        try:
            atomic_write(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        except OutputError:
            # A full disk has no room for a second copy, and a manifest left at "running" tells a
            # reader the run is still going. The old manifest's own space holds a compact one.
            compact = json.dumps(manifest, ensure_ascii=False, separators=(",", ":")) + "\n"
            if status == "running" or not overwrite_in_place(path, compact):
                raise

    def manifest(self, status: Status) -> dict[str, Any]:
        s, base = self.summary, self.manifest_base
        prior = base.get("prior", {})
        cost = s.cost_usd
        prior_cost = prior.get("cost_usd", 0.0)
        return {
            **{k: v for k, v in base.items() if k != "prior"},
            "status": status,
            "stop_reason": s.stop_reason,
            "finished_at": None if status == "running" else _now(),
            "elapsed_s": s.elapsed_s,
            "counts": {
                "papers": s.papers,
                "done": s.done,
                "cached": s.cached,
                "failed": s.failed,
                "skipped_already_done": s.skipped,
                "not_attempted": s.not_attempted,
            },
            "tokens": {**s.usage.model_dump(), "total_tokens": s.usage.total_tokens},
            "cost_usd": None if cost is None else round(cost, 6),
            "cumulative": {  # over every run into this directory, this one included
                "runs": prior.get("runs", 0) + 1,
                "prompt_tokens": prior.get("prompt_tokens", 0) + s.usage.prompt_tokens,
                "completion_tokens": prior.get("completion_tokens", 0) + s.usage.completion_tokens,
                "cost_usd": None if cost is None or prior_cost is None else round(prior_cost + cost, 6),
            },
        }


def _context(paper: Paper | None, taxonomy: dict[str, Any]) -> dict[str, Any]:
    """The validation context of `paper`'s record: the taxonomy's ids, and its abstract when known."""
    return taxonomy if paper is None else {**taxonomy, "abstract": paper.abstract}


def _prior_totals(outdir: Path) -> dict[str, Any]:
    try:
        old = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
        cumulative = old.get("cumulative", {})
        return cumulative if isinstance(cumulative, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _plan(extractor: Extractor, papers: list[Paper], done: set[str], price: Price | None) -> Plan:
    pending = [p for p in papers if p.id not in done]
    cache = extractor.cache
    cached = sent = prompt = 0
    for paper in pending:
        if cache is not None and extractor.key_for(paper) in cache:
            cached += 1
        else:
            sent += 1
            prompt += estimate_usage(extractor, paper).prompt_tokens
    usage = Usage(prompt_tokens=prompt, completion_tokens=sent * extractor.settings.expected_output_tokens)
    cost, skipped, label = price.cost(usage) if price else None, len(papers) - len(pending), extractor.backend.label
    source = price.source if price else None
    mode = "scored" if extractor.scored is not None else "generated"
    modes = tuple(mode_costs(extractor, pending, price))
    return Plan(
        len(papers),
        skipped,
        cached,
        sent,
        usage.prompt_tokens,
        usage.completion_tokens,
        cost,
        label,
        source,
        mode,
        modes,
    )


def _settings_record(extractor: Extractor, concurrency: int, price: Price | None) -> dict[str, Any]:
    """The settings that decide what a run produces and costs. Never a secret: listed, not dumped."""
    s = extractor.settings
    return {
        "backend": extractor.backend.identity,  # base URLs in identities are already redacted
        "model": extractor.backend.label,
        "prompt_hash": extractor.prompts.content_hash,
        "taxonomy_hash": extractor.taxonomy.content_hash,
        "schema_hash": extractor.schema_hash,
        "sampling": s.sampling(),
        "concurrency": concurrency,
        **{name: getattr(s, name) for name in _OPERATIONAL},
        "request_timeout_s": s.request_timeout_s,  # the values in force, the backend's defaults included
        "paper_deadline_s": s.resolved_paper_deadline_s,
        "cache_dir": str(s.cache_dir),
        "price_per_million": None
        if price is None
        else {"input": price.input_per_m, "output": price.output_per_m, "source": price.source},
    }


def _lock(outdir: Path) -> Any:
    from filelock import FileLock, Timeout

    path = outdir / ".lock"
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputError(
            f"another run is writing {outdir} (lock {path} is held); wait for it to finish "
            "or use another output directory",
            path=path,
        ) from None
    except OSError as exc:  # a read-only or full file system: the first write into outdir fails here
        raise OutputError(
            f"cannot write in the output directory {outdir} ({path}: {exc.strerror or exc}); "
            "make it writable or choose another with --out",
            path=path,
        ) from exc
    return lock


def _open_extractor(settings: Settings, backend: Backend | None, warn: Callable[[str], None]) -> Extractor:
    """An extractor whose cache warns instead of failing: a broken cache must not end an unattended run."""
    cache = RunCache(settings.cache_dir, warn) if settings.use_cache else None
    try:
        return Extractor(settings, backend=backend, cache=cache)
    except BaseException:
        if cache is not None:
            cache.close()
        raise


async def run_tag(
    inputs: Sequence[Path | str] | Path | str,
    outdir: Path | str,
    settings: Settings | None = None,
    *,
    shard: Shard | None = None,
    dry_run: bool = False,
    export: bool = True,
    backend: Backend | None = None,
    sink: Sink | None = None,
    read: ReadOptions | None = None,
) -> RunSummary:
    """Tag every paper in `inputs` into `outdir`, resuming whatever a previous run left there.

    Raises `InputError` for an unreadable input file or inputs with no paper in them, `OutputError`
    when `outdir` is locked by another run or cannot be written, `ConfigError` for unusable settings. A budget stop is
    not an error: it returns with `status == "budget_exhausted"`.
    """
    settings = settings or Settings()
    inputs = [inputs] if isinstance(inputs, str | Path) else list(inputs)  # one path, not its characters
    emit: Sink = sink or (lambda event: None)
    if backend is None:
        settings.check()  # a refused setting ends the run before anything says it started
    directory = Path(outdir)
    clock = time.monotonic()
    problems: list[InputError] = []
    papers = read_inputs(inputs, on_error=problems.append, options=read)
    for problem in problems:
        repaired = isinstance(problem, InputWarning)
        emit(InputProblem(str(problem.path) if problem.path else None, problem.line, problem.reason, repaired))
    if not papers:  # nothing to tag is bad input, not a completed run: exit 2 tells a script so
        rejected = sum(not isinstance(p, InputWarning) for p in problems)
        what = f"all {rejected} record(s) in the input were rejected (listed above)" if rejected else "no papers"
        raise InputError(f"nothing readable: {what}; nothing was run")
    # First thing a run says (after the input's own problems): where the papers go. Not before
    # the input is read, so that a bad input stays one line.
    choice = describe_backend(settings, backend)
    emit(BackendChosen(choice.backend, choice.model, choice.at, choice.line))
    if shard is not None:
        papers = [p for p in papers if shard.owns(p.id)]
    summary = RunSummary(outdir=str(directory), status="running", papers=len(papers))
    summary.input_errors = [
        {
            "path": str(p.path) if p.path else None,
            "line": p.line,
            "reason": p.reason,
            "repaired": isinstance(p, InputWarning),
        }
        for p in problems
    ]

    warnings: list[str] = []  # also kept in the manifest: a notice on screen is gone by morning

    def warn(message: str) -> None:
        warnings.append(message)
        emit(Notice(message))

    async with _open_extractor(settings, backend, warn) as extractor:
        cold_start_s = listen(extractor.backend, emit)  # said as it happens, its seconds kept in the manifest
        if extractor.scored is not None:
            emit(Notice(extractor.scored.describe(settings.mix if settings.on_topic_share is None else None)))
        price = price_for(extractor.backend.identity, settings)
        if settings.max_cost_usd is not None and price is None:
            raise ConfigError(
                f"--max-cost needs a price for {extractor.backend.label}; add it to a price table "
                "(SUMMARIZER_PRICE_TABLE_PATH) or use --max-tokens"
            )
        if dry_run:
            done = {pid for _, v, _ in iter_json_lines(directory / RECORDS) if (pid := record_id(v))}
            summary.plan = _plan(extractor, papers, done, price)
            summary.status, summary.skipped = "dry_run", summary.plan.already_done
            summary.cost_usd, summary.elapsed_s = None, round(time.monotonic() - clock, 3)
            emit(RunFinished(summary.to_dict()))
            return summary
        # Embedded: one generation at a time, and its KV-cache re-use wants requests in sequence.
        concurrency = 1 if extractor.backend.identity.get("backend") == "embedded" else settings.concurrency
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create output directory {directory}: {exc.strerror or exc}", path=directory
            ) from exc
        lock = _lock(directory)
        try:
            by_id, taxonomy = {p.id: p for p in papers}, extractor.taxonomy.validation_context()

            def valid(value: dict[str, Any]) -> bool:
                pid = record_id(value)
                return read_back(value, paper_id=pid, context=_context(by_id.get(pid or ""), taxonomy)) is not None

            done, records, failures, notes = open_run_dir(directory, valid=valid)
            for note in notes:
                emit(Notice(note))
            # After the lock (another run's directory is refused without asking the server), before
            # any key: the model the server reports is in every key from here on.
            try:
                await extractor.start()
            except BaseException:
                failures.close()
                records.close()
                raise
            price = price_for(extractor.backend.identity, settings)
            pending = [p for p in papers if p.id not in done]
            summary.skipped = len(papers) - len(pending)
            base = {
                "version": 1,
                "started_at": _now(),
                "inputs": [file_digest(Path(p)) for p in inputs],
                "input_errors": summary.input_errors,
                "shard": None if shard is None else str(shard),
                "settings": _settings_record(extractor, concurrency, price),
                "cold_start_s": cold_start_s,
                "prior": _prior_totals(directory),
                "warnings": warnings,
            }
            run = _Run(extractor, directory, emit, price, summary, base)
            run.records, run.failures = records, failures
            run._checkpoint(force=True)
            emit(
                RunStarted(
                    outdir=str(directory),
                    papers=len(papers),
                    already_done=summary.skipped,
                    to_do=len(pending),
                    concurrency=concurrency,
                    model=extractor.backend.label,
                    shard=None if shard is None else str(shard),
                )
            )
            status: Status = "error"
            try:
                await run.execute(pending, concurrency)
                status = "budget_exhausted" if summary.stop_reason else "completed"
            except (asyncio.CancelledError, KeyboardInterrupt):
                status = "interrupted"
                raise
            except OutputError as exc:
                summary.stop_reason = f"{type(exc).__name__}: {exc}"
                raise OutputError(
                    f"{exc.message}; the records written so far are intact: fix that and run the same command "
                    "again to resume",
                    path=exc.path,
                ) from exc
            except ServiceError as exc:  # a bad key or a dead server: every further paper would fail alike
                summary.stop_reason = f"{type(exc).__name__}: {exc}"
                raise ServiceError(
                    f"{exc.message}; the run stopped, the records written so far are intact: fix that and run "
                    "the same command again to resume",
                    status=exc.status,
                ) from exc
            except Exception as exc:
                summary.stop_reason = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                summary.status = status
                crashed = summary.status == "error"
                # After an error (a full disk, say) the manifest may not be writable either;
                # that must not hide the error itself.
                with contextlib.suppress(*((SummarizerError,) if crashed else ())):
                    try:
                        run._checkpoint(force=True, status=status)
                    finally:
                        try:
                            failures.close()
                        finally:
                            records.close()
                if status == "interrupted":
                    emit(RunFinished(summary.to_dict()))
        finally:
            lock.release()
    if export:
        try:
            written = export_run(directory)
            summary.outputs, summary.notes = {k: str(v) for k, v in written.items()}, skipped_note(written)
        except OutputError as exc:  # the run itself is complete: say so, and how to get the exports
            raise OutputError(
                f"{exc.message}; every record is in {directory / RECORDS}: fix that and run "
                f"`summarizer export {directory}`",
                path=exc.path,
            ) from exc
    summary.elapsed_s = round(time.monotonic() - clock, 3)
    emit(RunFinished(summary.to_dict()))
    return summary


def _blocking(fn: Callable[_P, Coroutine[Any, Any, RunSummary]]) -> Callable[_P, RunSummary]:
    def call(*args: _P.args, **kwargs: _P.kwargs) -> RunSummary:
        try:
            return asyncio.run(_cancel_on_sigterm(fn(*args, **kwargs)))
        except asyncio.CancelledError:  # SIGTERM: reported like Ctrl-C, so callers handle one thing
            raise KeyboardInterrupt from None

    return call


#: `run_tag` for synchronous callers; SIGTERM stops the run like Ctrl-C (cleanly, resumable).
run_tag_sync = _blocking(run_tag)


async def _cancel_on_sigterm(work: Coroutine[Any, Any, RunSummary]) -> RunSummary:
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    installed = False
    if task is not None and threading.current_thread() is threading.main_thread():
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            installed = True
    try:
        return await work
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)
