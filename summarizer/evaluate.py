"""Run the gold set (replayed, cached or live), write its reports, and apply the gate."""

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .errors import InputError, StaleReplayError
from .extract import Extractor
from .gate import GateFinding, changed_papers, check_gate, load_gate_config, majority_class_finding
from .llm import Backend
from .replay import ReplayStore
from .schemas import Failure, Paper, Result
from .scoring import GoldPaper, PaperScore, load_gold, score_paper, summarise
from .settings import Settings
from .sources import read_inputs

# --------------------------------------------------------------------------------------
# Running an evaluation


class EvalRun(BaseModel):
    created_at: str
    model: str
    backend: dict[str, str]
    prompt_hash: str
    taxonomy_hash: str
    schema_hash: str
    gold_path: str
    replayed: int
    live: int  # not in the replay store: run by the model, or found in the disk cache
    cached: int = 0
    summary: dict[str, Any]
    papers: list[PaperScore]


def _paper_index(paper_files: Sequence[Path]) -> dict[str, Paper]:
    return {p.id: p for p in read_inputs(paper_files)}


async def run_eval(
    settings: Settings,
    *,
    gold_path: Path,
    paper_files: Sequence[Path],
    replay_path: Path | None,
    extractor: Extractor | None = None,
    on_paper: Callable[[PaperScore], None] | None = None,
    live: bool = True,
    announce: Callable[[Backend], None] | None = None,
) -> EvalRun:
    """Score the gold set, replaying stored outcomes; `live=False` refuses to call the model
    for papers the replay store lacks (StaleReplayError, before any paper is run). `announce`
    hears the backend once the inputs have passed their checks, before the first paper."""
    gold = load_gold(gold_path)
    papers = _paper_index(paper_files)
    unknown = [g.id for g in gold if g.id not in papers]
    if unknown:
        raise InputError(f"gold papers not found in the paper files: {', '.join(unknown[:10])}", path=gold_path)
    own = extractor is None
    ex = extractor or Extractor(settings)
    try:
        await ex.start()  # keys name the model the server reports
    except BaseException:
        if own:
            await ex.aclose()
        raise
    store = ReplayStore.load(replay_path) if replay_path is not None else None
    if store is not None and replay_path is not None and not live:
        absent = [g.id for g in gold if ex.key_for(papers[g.id]) not in store]
        if absent:
            if own:
                await ex.aclose()
            raise StaleReplayError(
                f"{len(absent)} of {len(gold)} gold papers have no entry in the replay store {replay_path} for the "
                f"current prompt, taxonomy, schema and model; refresh it with `summarizer eval --replay {replay_path}` "
                "(runs the model) and commit it, or pass --allow-live to run them in this check"
            )
    if announce is not None:
        announce(ex.backend)
    replayed = 0
    replayed_hits = 0  # replayed results that were themselves cache hits when recorded
    outcomes: dict[str, Result | Failure] = {}
    semaphore = asyncio.Semaphore(min(settings.concurrency, ex.backend.max_concurrency or settings.concurrency))

    async def one(g: GoldPaper) -> None:
        nonlocal replayed, replayed_hits
        paper = papers[g.id]
        key = ex.key_for(paper)
        stored = store.get(key) if store is not None else None
        if stored is not None:
            replayed += 1
            replayed_hits += isinstance(stored, Result) and stored.provenance.cache_hit
            outcomes[g.id] = stored
        else:
            async with semaphore:
                outcomes[g.id] = await ex.extract_or_failure(paper)
            if store is not None and replay_path is not None:
                store.put(key, g.id, outcomes[g.id], model=ex.backend.label)
                # After every live paper, so that a long recording stopped midway keeps (and can
                # commit) what it has: a rerun replays those and runs only the rest.
                store.save(replay_path)
        if on_paper is not None:
            on_paper(score_paper(g, paper, outcomes[g.id]))

    try:
        await asyncio.gather(*(one(g) for g in gold))
    finally:
        # Written only when a paper ran live, and never pruned here: the committed store holds
        # the answers of every configuration recorded on purpose (generated and scored labels,
        # other models), and a run of one configuration must not drop another's.
        if store is not None and replay_path is not None and replayed < len(outcomes):
            store.save(replay_path)
        if own:
            await ex.aclose()
    scores = [score_paper(g, papers[g.id], outcomes[g.id]) for g in gold]
    return EvalRun(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model=ex.backend.label,
        backend=ex.backend.identity,
        prompt_hash=ex.prompt_hash[:16],
        taxonomy_hash=ex.taxonomy.content_hash[:16],
        schema_hash=ex.schema_hash[:16],
        gold_path=str(gold_path),
        replayed=replayed,
        live=len(gold) - replayed,
        cached=sum(isinstance(o, Result) and o.provenance.cache_hit for o in outcomes.values()) - replayed_hits,
        summary=summarise(scores),
        papers=scores,
    )


def load_run(path: Path) -> EvalRun:
    try:
        return EvalRun.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read evaluation results: {exc}", path=path) from exc


def write_run(run: EvalRun, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(run.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


# --------------------------------------------------------------------------------------
# The whole job behind `summarizer eval`


class EvalOutcome(BaseModel):
    run: EvalRun
    findings: list[GateFinding] = Field(default_factory=list)
    changes: list[dict[str, Any]] = Field(default_factory=list)
    written: list[str] = Field(default_factory=list)
    blessed: bool = False

    @property
    def passed(self) -> bool:
        return not any(f.level == "fail" for f in self.findings)


async def evaluate(
    settings: Settings,
    *,
    gold_path: Path,
    paper_files: Sequence[Path],
    replay_path: Path | None,
    out_dir: Path,
    baseline_path: Path,
    gate_path: Path,
    check: bool = False,
    bless: bool = False,
    allow_live: bool = False,
    on_paper: Callable[[PaperScore], None] | None = None,
    announce: Callable[[Backend], None] | None = None,
) -> EvalOutcome:
    """Run the gold set, write report.json / report.md, and compare with (or bless) the baseline."""
    from .evalreport import render_markdown

    # Read before the run, which can take the model half an hour: a bad baseline or gate file
    # should fail in a second, not after it.
    baseline = load_run(baseline_path) if baseline_path.exists() else None
    if check and baseline is None:
        raise InputError("no baseline to check against; run `summarizer eval --bless` first", path=baseline_path)
    gate = load_gate_config(gate_path) if check else None
    # A check replays: a stale store must fail CI in a second with the refresh command, not
    # turn into a half-hour model run that nobody asked for.
    run = await run_eval(
        settings,
        gold_path=gold_path,
        paper_files=paper_files,
        replay_path=replay_path,
        on_paper=on_paper,
        live=allow_live or not check,
        announce=announce,
    )
    outcome = EvalOutcome(run=run)
    if baseline is not None:
        outcome.changes = changed_papers(run.papers, baseline.papers)
        if gate is not None:
            outcome.findings = check_gate(run.papers, baseline.papers, gate)
            majority = majority_class_finding(run.papers)
            if majority is not None:
                outcome.findings.append(majority)
    if bless:
        write_run(run, baseline_path)
        outcome.blessed = True
        outcome.written.append(str(baseline_path))
    report_json = out_dir / "report.json"
    write_run(run, report_json)
    report_md = out_dir / "report.md"
    report_md.write_text(render_markdown(run, findings=outcome.findings, changes=outcome.changes), encoding="utf-8")
    outcome.written += [str(report_json), str(report_md)]
    return outcome
