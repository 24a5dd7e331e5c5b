"""Score records against the hand-labelled gold set, with uncertainty, and gate regressions.

Every metric is computed from per-paper scores, so the same per-paper list gives the
headline figure, its bootstrap interval, and a paired comparison with the blessed baseline.
Scorers carry their metrics: a `PaperScore` holds everything a metric needs, nothing else.
"""

from __future__ import annotations

import asyncio
import json
import math
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from .errors import InputError
from .extract import Extractor
from .replay import ReplayStore
from .schemas import Failure, Paper, Result, find_verbatim, load_jsonl_models, normalise_title, normalise_ws
from .settings import Settings
from .sources import read_inputs

FUZZY_THRESHOLD = 85.0
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20261122

# --------------------------------------------------------------------------------------
# Gold labels


class GoldDataset(BaseModel):
    name: str
    role: Literal["introduced", "used"]


class GoldClaim(BaseModel):
    statement: str
    evidence: str


class GoldPaper(BaseModel):
    id: str
    title: str
    primary: str
    secondary: list[str] = Field(default_factory=list)
    contribution_type: str
    method: str | None
    datasets: list[GoldDataset] = Field(default_factory=list)
    claims: list[GoldClaim] = Field(default_factory=list)


def load_gold(path: Path) -> list[GoldPaper]:
    return load_jsonl_models(path, GoldPaper, "gold set")


# --------------------------------------------------------------------------------------
# Per-paper scoring


class PaperScore(BaseModel):
    id: str
    title: str
    valid: bool
    error: str | None = None
    gold_primary: str
    pred_primary: str | None = None
    category_correct: bool = False
    category_lenient: bool = False
    contribution_correct: bool = False
    method_exact: bool = False
    method_fuzzy: bool = False
    gold_method: str | None = None
    pred_method: str | None = None
    datasets_tp: int = 0
    datasets_fp: int = 0
    datasets_fn: int = 0
    evidence_total: int = 0
    evidence_verbatim: int = 0
    gold_claims: int = 0
    gold_claims_found: int = 0
    reasks: int = 0
    retries: int = 0
    tokens: int = 0
    latency_s: float = 0.0


def _norm_name(name: str) -> str:
    return normalise_title(name)


def names_match(a: str, b: str) -> bool:
    na, nb = _norm_name(a), _norm_name(b)
    return na == nb or fuzz.ratio(na, nb) >= FUZZY_THRESHOLD


def method_scores(gold: str | None, pred: str | None) -> tuple[bool, bool]:
    """(exact, fuzzy): null is its own answer; fuzzy also accepts the bare acronym or expansion."""
    if gold is None or pred is None:
        return gold is pred, gold is pred
    g, p = _norm_name(gold), _norm_name(pred)
    if g == p:
        return True, True
    fuzzy = fuzz.ratio(g, p) >= FUZZY_THRESHOLD or (min(len(g), len(p)) >= 3 and (g in p or p in g))
    return False, fuzzy


def match_one_to_one(gold: Sequence[str], pred: Sequence[str]) -> int:
    """Greedy one-to-one fuzzy matching by descending similarity; returns the number of matches."""
    pairs = sorted(
        ((fuzz.ratio(_norm_name(g), _norm_name(p)), i, j) for i, g in enumerate(gold) for j, p in enumerate(pred)),
        reverse=True,
    )
    used_g: set[int] = set()
    used_p: set[int] = set()
    for score, i, j in pairs:
        if score < FUZZY_THRESHOLD and _norm_name(gold[i]) != _norm_name(pred[j]):
            break
        if i not in used_g and j not in used_p:
            used_g.add(i)
            used_p.add(j)
    return len(used_g)


def _span(quote: str, abstract: str) -> tuple[int, int] | None:
    hay = normalise_ws(abstract)
    needle = normalise_ws(quote)
    start = hay.find(needle) if needle else -1
    return (start, start + len(needle)) if start >= 0 else None


def score_paper(gold: GoldPaper, paper: Paper, outcome: Result | Failure) -> PaperScore:
    base = {"id": gold.id, "title": gold.title, "gold_primary": gold.primary, "gold_method": gold.method}
    if isinstance(outcome, Failure):
        return PaperScore(
            **base,
            valid=False,
            error=f"{outcome.error}: {outcome.reason[:300]}",
            datasets_fn=len(gold.datasets),
            gold_claims=len(gold.claims),
            reasks=outcome.reasks,
            retries=max(outcome.attempts - outcome.reasks - 1, 0),
            tokens=outcome.usage.total_tokens,
        )
    record, prov = outcome.record, outcome.provenance
    exact, fuzzy = method_scores(gold.method, record.method.name)
    pred_names = [d.name for d in record.datasets]
    tp = match_one_to_one([d.name for d in gold.datasets], pred_names)
    quotes = [c.evidence for c in record.claims] + [d.evidence for d in record.datasets]
    if record.method.evidence:
        quotes.append(record.method.evidence)
    pred_spans = [s for s in (_span(c.evidence, paper.abstract) for c in record.claims) if s is not None]
    found = 0
    for claim in gold.claims:
        span = _span(claim.evidence, paper.abstract)
        if span is not None and any(a < span[1] and span[0] < b for a, b in pred_spans):
            found += 1
    return PaperScore(
        **base,
        valid=True,
        pred_primary=record.category.primary,
        category_correct=record.category.primary == gold.primary,
        category_lenient=record.category.primary in {gold.primary, *gold.secondary},
        contribution_correct=record.contribution_type == gold.contribution_type,
        method_exact=exact,
        method_fuzzy=fuzzy,
        pred_method=record.method.name,
        datasets_tp=tp,
        datasets_fp=len(pred_names) - tp,
        datasets_fn=len(gold.datasets) - tp,
        evidence_total=len(quotes),
        evidence_verbatim=sum(find_verbatim(q, paper.abstract) is not None for q in quotes),
        gold_claims=len(gold.claims),
        gold_claims_found=found,
        reasks=prov.reasks,
        retries=max(prov.attempts - prov.reasks - 1, 0),
        tokens=prov.usage.total_tokens,
        latency_s=prov.latency_s,
    )


# --------------------------------------------------------------------------------------
# Metrics: each is a function of a list of per-paper scores


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _ratio(num: float, den: float, empty: float = 1.0) -> float:
    return num / den if den else empty


def _f1(tp: float, fp: float, fn: float) -> float:
    p, r = _ratio(tp, tp + fp, 0.0), _ratio(tp, tp + fn, 0.0)
    return 2 * p * r / (p + r) if p + r else (1.0 if tp + fp + fn == 0 else 0.0)


def macro_f1(scores: Sequence[PaperScore]) -> float:
    classes = sorted({s.gold_primary for s in scores} | {s.pred_primary for s in scores if s.pred_primary})
    f1s = []
    for c in classes:
        tp = sum(s.gold_primary == c and s.pred_primary == c for s in scores)
        fp = sum(s.gold_primary != c and s.pred_primary == c for s in scores)
        fn = sum(s.gold_primary == c and s.pred_primary != c for s in scores)
        f1s.append(_f1(tp, fp, fn))
    return _mean(f1s)


def dataset_f1(scores: Sequence[PaperScore]) -> float:
    return _f1(
        sum(s.datasets_tp for s in scores), sum(s.datasets_fp for s in scores), sum(s.datasets_fn for s in scores)
    )


Metric = Callable[[Sequence[PaperScore]], float]

HEADLINE: dict[str, Metric] = {
    "category_accuracy": lambda s: _mean([x.category_correct for x in s]),
    "category_macro_f1": macro_f1,
    "category_accuracy_secondary_ok": lambda s: _mean([x.category_lenient for x in s]),
    "contribution_accuracy": lambda s: _mean([x.contribution_correct for x in s]),
    "method_exact": lambda s: _mean([x.method_exact for x in s]),
    "method_fuzzy": lambda s: _mean([x.method_fuzzy for x in s]),
    "dataset_precision": lambda s: _ratio(sum(x.datasets_tp for x in s), sum(x.datasets_tp + x.datasets_fp for x in s)),
    "dataset_recall": lambda s: _ratio(sum(x.datasets_tp for x in s), sum(x.datasets_tp + x.datasets_fn for x in s)),
    "dataset_f1": dataset_f1,
    "evidence_verbatim": lambda s: _ratio(sum(x.evidence_verbatim for x in s), sum(x.evidence_total for x in s)),
    "claim_recall": lambda s: _ratio(sum(x.gold_claims_found for x in s), sum(x.gold_claims for x in s)),
    "schema_valid": lambda s: _mean([x.valid for x in s]),
}

OPERATIONAL: dict[str, Metric] = {
    "reasks_per_paper": lambda s: _mean([x.reasks for x in s]),
    "retries_per_paper": lambda s: _mean([x.retries for x in s]),
    "tokens_per_paper": lambda s: _mean([x.tokens for x in s]),
    "latency_s_per_uncached_paper": lambda s: _mean([x.latency_s for x in s if x.latency_s > 0]),
}


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, Any]:
        return {"value": round(self.value, 4), "ci95": [round(self.low, 4), round(self.high, 4)]}


def bootstrap(scores: Sequence[PaperScore], metric: Metric, *, samples: int = BOOTSTRAP_SAMPLES) -> Interval:
    """Percentile bootstrap over papers (the unit that was sampled)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(scores)
    values = [metric([scores[i] for i in rng.integers(0, n, n)]) for _ in range(samples)] if n else [0.0]
    low, high = np.percentile(values, [2.5, 97.5])
    return Interval(metric(scores), float(low), float(high))


def per_class(scores: Sequence[PaperScore]) -> dict[str, dict[str, float]]:
    classes = sorted({s.gold_primary for s in scores} | {s.pred_primary for s in scores if s.pred_primary})
    table: dict[str, dict[str, float]] = {}
    for c in classes:
        tp = sum(s.gold_primary == c and s.pred_primary == c for s in scores)
        fp = sum(s.gold_primary != c and s.pred_primary == c for s in scores)
        fn = sum(s.gold_primary == c and s.pred_primary != c for s in scores)
        table[c] = {
            "precision": round(_ratio(tp, tp + fp, 0.0), 4),
            "recall": round(_ratio(tp, tp + fn, 0.0), 4),
            "f1": round(_f1(tp, fp, fn), 4),
            "support": tp + fn,
        }
    return table


def confusion(scores: Sequence[PaperScore]) -> dict[str, dict[str, int]]:
    matrix: dict[str, Counter[str]] = {}
    for s in scores:
        matrix.setdefault(s.gold_primary, Counter())[s.pred_primary or "(failed)"] += 1
    return {g: dict(sorted(row.items())) for g, row in sorted(matrix.items())}


def summarise(scores: Sequence[PaperScore]) -> dict[str, Any]:
    return {
        "papers": len(scores),
        "metrics": {name: bootstrap(scores, fn).as_dict() for name, fn in HEADLINE.items()},
        "operational": {name: round(fn(scores), 4) for name, fn in OPERATIONAL.items()},
        "per_class": per_class(scores),
        "confusion": confusion(scores),
    }


# --------------------------------------------------------------------------------------
# Regression gate


class GateRule(BaseModel):
    floor: float | None = None
    test: Literal["mcnemar", "paired_bootstrap", "none"] = "paired_bootstrap"
    field: str | None = None  # the per-paper boolean behind a McNemar test


class GateConfig(BaseModel):
    alpha: float = 0.05
    warn_margin: float = 0.03
    metrics: dict[str, GateRule]


def load_gate_config(path: Path) -> GateConfig:
    try:
        return GateConfig.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise InputError(f"invalid gate configuration: {exc}", path=path) from exc


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar test on the discordant pairs (b: got worse, c: got better)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = float(sum(math.comb(n, i) for i in range(k + 1))) / float(2**n)
    return min(1.0, 2.0 * tail)


def paired_bootstrap_diff(current: Sequence[PaperScore], baseline: Sequence[PaperScore], metric: Metric) -> Interval:
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(current)
    diffs = []
    for _ in range(BOOTSTRAP_SAMPLES):
        idx = rng.integers(0, n, n)
        diffs.append(metric([current[i] for i in idx]) - metric([baseline[i] for i in idx]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Interval(metric(current) - metric(baseline), float(low), float(high))


class GateFinding(BaseModel):
    metric: str
    level: Literal["fail", "warn", "ok"]
    current: float
    baseline: float | None
    message: str


def check_gate(current: Sequence[PaperScore], baseline: Sequence[PaperScore], config: GateConfig) -> list[GateFinding]:
    by_id = {s.id: s for s in baseline}
    missing = [s.id for s in current if s.id not in by_id]
    paired_cur = [s for s in current if s.id in by_id]
    paired_base = [by_id[s.id] for s in paired_cur]
    findings: list[GateFinding] = []
    if missing:
        findings.append(
            GateFinding(
                metric="coverage",
                level="warn",
                current=len(paired_cur),
                baseline=len(baseline),
                message=f"{len(missing)} gold papers have no baseline result (bless to include them)",
            )
        )
    for name, rule in config.metrics.items():
        metric = HEADLINE[name]
        now = metric(current)
        before = metric(paired_base) if paired_base else None
        level: Literal["fail", "warn", "ok"] = "ok"
        notes: list[str] = []
        if rule.floor is not None and now < rule.floor:
            level = "fail"
            notes.append(f"below floor {rule.floor:.3f}")
        if before is not None and paired_cur:
            delta = metric(paired_cur) - before
            significant = False
            if rule.test == "mcnemar" and rule.field:
                b = sum(
                    getattr(x, rule.field) and not getattr(y, rule.field)
                    for y, x in zip(paired_cur, paired_base, strict=True)
                )
                c = sum(
                    getattr(y, rule.field) and not getattr(x, rule.field)
                    for y, x in zip(paired_cur, paired_base, strict=True)
                )
                p = mcnemar_p(b, c)
                significant = b > c and p < config.alpha
                notes.append(f"McNemar: {b} worse, {c} better, p={p:.3f}")
            elif rule.test == "paired_bootstrap":
                diff = paired_bootstrap_diff(paired_cur, paired_base, metric)
                significant = diff.high < 0
                notes.append(f"paired bootstrap Δ={diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]")
            if significant:
                level = "fail"
                notes.insert(0, f"significantly worse than baseline ({delta:+.3f})")
            elif delta < -config.warn_margin and level == "ok":
                level = "warn"
                notes.insert(0, f"dropped {delta:+.3f} (not significant)")
        findings.append(
            GateFinding(
                metric=name,
                level=level,
                current=round(now, 4),
                baseline=None if before is None else round(before, 4),
                message="; ".join(notes) or "ok",
            )
        )
    return findings


COMPARED_FIELDS = ("valid", "pred_primary", "contribution_correct", "method_fuzzy", "datasets_tp", "gold_claims_found")


def changed_papers(current: Sequence[PaperScore], baseline: Sequence[PaperScore]) -> list[dict[str, Any]]:
    by_id = {s.id: s for s in baseline}
    changes = []
    for s in current:
        b = by_id.get(s.id)
        if b is None:
            continue
        fields = [f for f in COMPARED_FIELDS if getattr(s, f) != getattr(b, f)]
        if fields:
            changes.append({
                "id": s.id, "title": s.title, "fields": fields,
                "baseline": {f: getattr(b, f) for f in fields}, "current": {f: getattr(s, f) for f in fields},
            })  # fmt: skip
    return changes


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
) -> EvalRun:
    gold = load_gold(gold_path)
    papers = _paper_index(paper_files)
    unknown = [g.id for g in gold if g.id not in papers]
    if unknown:
        raise InputError(f"gold papers not found in the paper files: {', '.join(unknown[:10])}", path=gold_path)
    own = extractor is None
    ex = extractor or Extractor(settings)
    store = ReplayStore.load(replay_path) if replay_path is not None else None
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
            if store is not None:
                store.put(key, g.id, outcomes[g.id], model=ex.backend.label)
        if on_paper is not None:
            on_paper(score_paper(g, paper, outcomes[g.id]))

    try:
        await asyncio.gather(*(one(g) for g in gold))
    finally:
        if store is not None and replay_path is not None:
            store.save(replay_path, keep={ex.key_for(papers[g.id]) for g in gold}, model=ex.backend.label)
        if own:
            await ex.aclose()
    scores = [score_paper(g, papers[g.id], outcomes[g.id]) for g in gold]
    return EvalRun(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        model=ex.backend.label,
        backend=ex.backend.identity,
        prompt_hash=ex.prompts.content_hash[:16],
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
    on_paper: Callable[[PaperScore], None] | None = None,
) -> EvalOutcome:
    """Run the gold set, write report.json / report.md, and compare with (or bless) the baseline."""
    from .evalreport import render_markdown

    # Read before the run, which can take the model half an hour: a bad baseline or gate file
    # should fail in a second, not after it.
    baseline = load_run(baseline_path) if baseline_path.exists() else None
    if check and baseline is None:
        raise InputError("no baseline to check against; run `summarizer eval --bless` first", path=baseline_path)
    gate = load_gate_config(gate_path) if check else None
    run = await run_eval(
        settings, gold_path=gold_path, paper_files=paper_files, replay_path=replay_path, on_paper=on_paper
    )
    outcome = EvalOutcome(run=run)
    if baseline is not None:
        outcome.changes = changed_papers(run.papers, baseline.papers)
        if gate is not None:
            outcome.findings = check_gate(run.papers, baseline.papers, gate)
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
