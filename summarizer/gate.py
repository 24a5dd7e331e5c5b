"""The regression gate: a run's per-paper scores against the blessed baseline's.

One-sided paired tests per metric (McNemar's exact test, or a paired permutation test), Holm's
correction across metrics, a minimum effect worth failing for; rules in `evals/gate.toml`,
reasons and measured rates in `evals/GUIDELINES.md`.
"""

import math
import tomllib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from .errors import InputError
from .scoring import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    HEADLINE,
    Interval,
    Metric,
    PaperScore,
)

# --------------------------------------------------------------------------------------
# Metrics as sums of per-paper columns
#
# The gate resamples and permutes papers thousands of times per check. Every gated metric
# is a function of column sums over papers, so one matrix product evaluates it for every
# resample at once; `HEADLINE` stays the readable definition and a test holds the two equal.

Columns = Callable[[Sequence[PaperScore], Sequence[str]], np.ndarray]
FromSums = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ColumnMetric:
    columns: Columns  # (papers, classes) -> array (n, q)
    from_sums: FromSums  # array (..., q) of column sums -> array (...)


def _safe_div(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, empty, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _f1_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    p, r = _safe_div(tp, tp + fp, 0.0), _safe_div(tp, tp + fn, 0.0)
    f1 = _safe_div(2 * p * r, p + r, 0.0)
    return np.where(tp + fp + fn == 0, 1.0, f1)


def _share(field: str) -> ColumnMetric:
    return ColumnMetric(
        lambda s, _c: np.array([[float(getattr(x, field)), 1.0] for x in s]).reshape(-1, 2),
        lambda t: _safe_div(t[..., 0], t[..., 1], 0.0),
    )


def _ratio_of(num: str, den: str) -> ColumnMetric:
    return ColumnMetric(
        lambda s, _c: np.array([[float(getattr(x, num)), float(getattr(x, den))] for x in s]).reshape(-1, 2),
        lambda t: _safe_div(t[..., 0], t[..., 1], 1.0),
    )


def _class_columns(s: Sequence[PaperScore], classes: Sequence[str]) -> np.ndarray:
    rows = [
        [float(v) for c in classes
         for v in (x.gold_primary == c and x.pred_primary == c, x.gold_primary != c and x.pred_primary == c,
                   x.gold_primary == c and x.pred_primary != c)]
        for x in s
    ]  # fmt: skip
    return np.array(rows, dtype=float).reshape(-1, 3 * len(classes))


def _macro_f1_sums(t: np.ndarray) -> np.ndarray:
    tp, fp, fn = t[..., 0::3], t[..., 1::3], t[..., 2::3]
    # A class counts only where it occurs (as gold or prediction), as in `macro_f1`.
    present = (tp + fp + fn) > 0
    f1 = _f1_arrays(tp, fp, fn)
    return _safe_div(np.where(present, f1, 0.0).sum(axis=-1), present.sum(axis=-1).astype(float), 0.0)


COLUMNAR: dict[str, ColumnMetric] = {
    "category_accuracy": _share("category_correct"),
    "category_macro_f1": ColumnMetric(_class_columns, _macro_f1_sums),
    "category_accuracy_secondary_ok": _share("category_lenient"),
    "contribution_accuracy": _share("contribution_correct"),
    "method_exact": _share("method_exact"),
    "method_fuzzy": _share("method_fuzzy"),
    "dataset_precision": ColumnMetric(
        lambda s, _c: np.array([[x.datasets_tp, x.datasets_tp + x.datasets_fp] for x in s], dtype=float).reshape(-1, 2),
        lambda t: _safe_div(t[..., 0], t[..., 1], 1.0),
    ),
    "dataset_recall": ColumnMetric(
        lambda s, _c: np.array([[x.datasets_tp, x.datasets_tp + x.datasets_fn] for x in s], dtype=float).reshape(-1, 2),
        lambda t: _safe_div(t[..., 0], t[..., 1], 1.0),
    ),
    "dataset_f1": ColumnMetric(
        lambda s, _c: np.array([[x.datasets_tp, x.datasets_fp, x.datasets_fn] for x in s], dtype=float).reshape(-1, 3),
        lambda t: _f1_arrays(t[..., 0], t[..., 1], t[..., 2]),
    ),
    "evidence_verbatim": _ratio_of("evidence_verbatim", "evidence_total"),
    "claim_recall": _ratio_of("gold_claims_found", "gold_claims"),
    "schema_valid": _share("valid"),
}


def classes_of(*runs: Sequence[PaperScore]) -> list[str]:
    return sorted(
        {s.gold_primary for r in runs for s in r} | {s.pred_primary for r in runs for s in r if s.pred_primary}
    )


# --------------------------------------------------------------------------------------
# Regression gate


class GateRule(BaseModel):
    floor: float | None = None
    test: Literal["mcnemar", "permutation", "none"] = "permutation"
    field: str | None = None  # the per-paper boolean behind a McNemar test
    min_effect: float | None = None  # overrides the config's min_effect for this metric


class GateConfig(BaseModel):
    alpha: float = Field(0.05, gt=0, lt=1)
    warn_margin: float = 0.03
    # The smallest drop worth failing a build for, however significant: on a larger gold set
    # tiny changes become significant, and a 1-point move is not a regression anyone acts on.
    min_effect: float = Field(0.05, ge=0)
    # Family-wise correction across the tested metrics: with several metrics each at alpha,
    # one of them trips by chance far more often than alpha.
    correction: Literal["holm", "none"] = "holm"
    metrics: dict[str, GateRule]


def load_gate_config(path: Path) -> GateConfig:
    try:
        config = GateConfig.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        # One line per file, not pydantic's multi-line report: "metrics.x.test: Input should be ...".
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid gate configuration: {problems}", path=path) from None
    except (OSError, tomllib.TOMLDecodeError, ValueError) as exc:
        raise InputError(f"invalid gate configuration: {exc}", path=path) from exc
    unknown = sorted(set(config.metrics) - set(HEADLINE))
    if unknown:
        raise InputError(f"invalid gate configuration: unknown metrics {', '.join(unknown)}", path=path)
    booleans = {name for name, info in PaperScore.model_fields.items() if info.annotation is bool}
    for name, rule in config.metrics.items():
        if rule.test == "mcnemar" and rule.field not in booleans:
            raise InputError(
                f"invalid gate configuration: metric {name} needs `field`, one of {', '.join(sorted(booleans))}",
                path=path,
            )
    return config


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar test on the discordant pairs (b: got worse, c: got better)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = float(sum(math.comb(n, i) for i in range(k + 1))) / float(2**n)
    return min(1.0, 2.0 * tail)


def mcnemar_worse_p(b: int, c: int) -> float:
    """Exact one-sided McNemar p-value for "worse": P(at least b of the b + c discordant pairs
    went the bad way) if either way were equally likely. The gate only asks about getting worse."""
    n = b + c
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, i) for i in range(b, n + 1))) / float(2**n)


@lru_cache(maxsize=8)
def _bootstrap_weights(n: int, samples: int) -> np.ndarray:
    """How often each paper appears in each resample (fixed seed, so a check is reproducible)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, n, (samples, n))
    weights = np.zeros((samples, n))
    np.add.at(weights, (np.repeat(np.arange(samples), n), idx.ravel()), 1.0)
    return weights


def paired_bootstrap_diff(
    current: Sequence[PaperScore], baseline: Sequence[PaperScore], metric: Metric | str
) -> Interval:
    n = len(current)
    if isinstance(metric, str):
        col = COLUMNAR[metric]
        classes = classes_of(current, baseline)
        cur, base = col.columns(current, classes), col.columns(baseline, classes)
        weights = _bootstrap_weights(n, BOOTSTRAP_SAMPLES)
        diffs = col.from_sums(weights @ cur) - col.from_sums(weights @ base)
        value = float(col.from_sums(cur.sum(axis=0)) - col.from_sums(base.sum(axis=0)))
    else:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        listed = []
        for _ in range(BOOTSTRAP_SAMPLES):
            idx = rng.integers(0, n, n)
            listed.append(metric([current[i] for i in idx]) - metric([baseline[i] for i in idx]))
        diffs = np.array(listed)
        value = metric(current) - metric(baseline)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Interval(value, float(low), float(high))


PERMUTATION_SAMPLES = 4000
EXACT_PERMUTATION_UP_TO = 14  # discordant papers; 2**14 sign patterns is still cheap


def permutation_worse_p(current: Sequence[PaperScore], baseline: Sequence[PaperScore], name: str) -> float:
    """One-sided paired permutation test that `current` is worse on metric `name`.

    If the change made no difference, each paper's two outcomes are exchangeable: swapping
    them is as likely as not. The p-value is the share of swap patterns whose difference is
    at least as bad as the observed one. Papers with identical outcomes cannot move the
    metric, so only the discordant ones are permuted, exactly when there are few (this is
    McNemar's exact test for an accuracy) and by Monte Carlo otherwise. A bootstrap of the
    difference is not used here: with a handful of one-way changes it reports p < 0.001
    where the exact answer is 0.5**k.
    """
    col = COLUMNAR[name]
    classes = classes_of(current, baseline)
    cur, base = col.columns(current, classes), col.columns(baseline, classes)
    observed = float(col.from_sums(cur.sum(axis=0)) - col.from_sums(base.sum(axis=0)))
    discordant = np.flatnonzero(np.any(cur != base, axis=1))
    d = len(discordant)
    if d == 0:
        return 1.0
    same = cur.sum(axis=0) - cur[discordant].sum(axis=0)
    if d <= EXACT_PERMUTATION_UP_TO:
        swap = ((np.arange(2**d)[:, None] >> np.arange(d)) & 1).astype(float)
        exact = True
    else:
        swap = np.random.default_rng(BOOTSTRAP_SEED).integers(0, 2, (PERMUTATION_SAMPLES, d)).astype(float)
        exact = False
    c, b = cur[discordant], base[discordant]
    perm_cur = same + (1 - swap) @ c + swap @ b
    perm_base = same + swap @ c + (1 - swap) @ b
    diffs = col.from_sums(perm_cur) - col.from_sums(perm_base)
    at_least_as_bad = int(np.sum(diffs <= observed + 1e-12))
    return at_least_as_bad / len(diffs) if exact else (at_least_as_bad + 1) / (len(diffs) + 1)


def holm(pvalues: dict[str, float], alpha: float) -> set[str]:
    """Holm–Bonferroni step-down: the hypotheses rejected at family-wise error rate `alpha`."""
    rejected: set[str] = set()
    ordered = sorted(pvalues.items(), key=lambda kv: (kv[1], kv[0]))
    for i, (name, p) in enumerate(ordered):
        if p > alpha / (len(ordered) - i):
            break
        rejected.add(name)
    return rejected


def majority_class_accuracy(scores: Sequence[PaperScore]) -> tuple[str, float]:
    """The accuracy of always answering the commonest gold category: the floor a model must beat."""
    if not scores:
        return "", 0.0
    label, count = Counter(s.gold_primary for s in scores).most_common(1)[0]
    return label, count / len(scores)


class GateFinding(BaseModel):
    metric: str
    level: Literal["fail", "warn", "ok"]
    current: float
    baseline: float | None
    message: str
    p_value: float | None = None


def detection_size(config: GateConfig, papers: int) -> int | None:
    """The fewest papers that, turned from right to wrong on one McNemar-tested metric with
    nothing else changing, fail the gate: the regression size the gate reliably detects."""
    tested = [r for r in config.metrics.values() if r.test != "none"]
    rules = [r for r in tested if r.test == "mcnemar"]
    if not rules:
        return None
    # Holm's first step compares the smallest p-value with alpha / (number of tests).
    level = config.alpha / (len(tested) if config.correction == "holm" else 1)
    effect = min(r.min_effect if r.min_effect is not None else config.min_effect for r in rules)
    for k in range(1, papers + 1):
        if mcnemar_worse_p(k, 0) <= level and k / papers >= effect - 1e-12:
            return k
    return None


def majority_class_finding(scores: Sequence[PaperScore]) -> GateFinding | None:
    """A warning when category accuracy is no better than always answering the commonest class.

    A warning, not a failure: the gate's job is to catch changes, and the committed baseline
    itself is in this state; the reader still has to see it on every run.
    """
    if not scores:
        return None
    label, share = majority_class_accuracy(scores)
    now = HEADLINE["category_accuracy"](scores)
    if now > share:
        return None
    return GateFinding(
        metric="majority_class",
        level="warn",
        current=round(now, 4),
        baseline=round(share, 4),
        message=f"category accuracy {now:.3f} is no better than always answering {label} ({share:.3f})",
    )


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
    # First every test's one-sided p-value, then one family-wise decision over all of them.
    pvalues: dict[str, float] = {}
    notes: dict[str, list[str]] = {name: [] for name in config.metrics}
    for name, rule in config.metrics.items():
        if not paired_cur or rule.test == "none":
            continue
        if rule.test == "mcnemar":
            if rule.field is None:
                raise InputError(f"gate metric {name}: a McNemar test needs `field`")  # checked on load too
            b = sum(
                bool(getattr(x, rule.field)) and not getattr(y, rule.field)
                for y, x in zip(paired_cur, paired_base, strict=True)
            )
            c = sum(
                bool(getattr(y, rule.field)) and not getattr(x, rule.field)
                for y, x in zip(paired_cur, paired_base, strict=True)
            )
            pvalues[name] = mcnemar_worse_p(b, c)
            notes[name].append(f"McNemar: {b} worse, {c} better, p={pvalues[name]:.4f}")
        else:
            pvalues[name] = permutation_worse_p(paired_cur, paired_base, name)
            diff = paired_bootstrap_diff(paired_cur, paired_base, name)
            notes[name].append(
                f"paired permutation p={pvalues[name]:.4f}, Δ={diff.value:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
            )
    if config.correction == "holm":
        significant = holm(pvalues, config.alpha)
        rule_note = f"Holm over {len(pvalues)} tests at α={config.alpha}"
    else:
        significant = {name for name, p in pvalues.items() if p <= config.alpha}
        rule_note = f"α={config.alpha} per test"
    for name, rule in config.metrics.items():
        metric = HEADLINE[name]
        now = metric(current)
        before = metric(paired_base) if paired_base else None
        level: Literal["fail", "warn", "ok"] = "ok"
        if rule.floor is not None and now < rule.floor:
            level = "fail"
            notes[name].insert(0, f"below floor {rule.floor:.3f}")
        if before is not None and paired_cur:
            delta = metric(paired_cur) - before
            min_effect = rule.min_effect if rule.min_effect is not None else config.min_effect
            if name in significant and delta < 0 and -delta >= min_effect - 1e-12:
                level = "fail"
                notes[name].insert(0, f"significantly worse than baseline ({delta:+.3f}; {rule_note})")
            elif name in significant and delta < 0:
                notes[name].insert(0, f"significant but {delta:+.3f} is under the minimum effect {min_effect:.3f}")
                level = "warn" if level == "ok" else level
            elif delta < -config.warn_margin and level == "ok":
                level = "warn"
                notes[name].insert(0, f"dropped {delta:+.3f} (not significant, {rule_note})")
        findings.append(
            GateFinding(
                metric=name,
                level=level,
                current=round(now, 4),
                baseline=None if before is None else round(before, 4),
                message="; ".join(notes[name]) or "ok",
                p_value=pvalues.get(name),
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
