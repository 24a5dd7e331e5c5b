"""Score records against the hand-labelled gold set, with uncertainty.

Every metric is computed from per-paper scores, so the same per-paper list gives the
headline figure, its bootstrap interval, and a paired comparison with the blessed baseline
(`gate.py`). Scorers carry their metrics: a `PaperScore` holds everything a metric needs.
"""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from rapidfuzz import fuzz

from .schemas import Failure, Paper, Result, find_verbatim, load_jsonl_models, normalise_title, normalise_ws

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
    # Written only when set: a run without review flags (generated decisions) keeps the
    # report.json it always had, and older reports read back as unflagged.
    needs_review: bool = Field(False, exclude_if=lambda flagged: not flagged)
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
        needs_review=record.needs_review,
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


def review_summary(scores: Sequence[PaperScore]) -> dict[str, Any] | None:
    """How often records are flagged for review, and category accuracy on each side of the flag.

    None when no record is flagged. Over valid records only: a failure is no record to flag
    or trust. Each interval bootstraps the papers of its own group, as `bootstrap` does for
    the whole set. Kept out of the headline metrics, which the regression gate compares.
    """
    records = [s for s in scores if s.valid]
    flagged = [s for s in records if s.needs_review]
    if not flagged:
        return None
    unflagged = [s for s in records if not s.needs_review]
    accuracy = HEADLINE["category_accuracy"]
    groups: dict[str, tuple[Sequence[PaperScore], Metric]] = {
        "flagged_share": (records, lambda s: _mean([x.needs_review for x in s])),
        "category_accuracy_unflagged": (unflagged, accuracy),
        "category_accuracy_flagged": (flagged, accuracy),
    }
    return {
        "records": len(records),
        "flagged": len(flagged),
        "metrics": {
            name: bootstrap(group, fn).as_dict() | {"papers": len(group)} for name, (group, fn) in groups.items()
        },
    }


def summarise(scores: Sequence[PaperScore]) -> dict[str, Any]:
    summary = {
        "papers": len(scores),
        "metrics": {name: bootstrap(scores, fn).as_dict() for name, fn in HEADLINE.items()},
        "operational": {name: round(fn(scores), 4) for name, fn in OPERATIONAL.items()},
        "per_class": per_class(scores),
        "confusion": confusion(scores),
    }
    review = review_summary(scores)
    if review is not None:
        summary["review"] = review
    return summary
