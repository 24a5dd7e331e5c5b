"""Markdown rendering of an evaluation run (the report committed next to the gold set)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .digest import md_escape
from .evaluate import EvalRun
from .gate import GateFinding

LABELS = {
    "category_accuracy": "Category accuracy",
    "category_macro_f1": "Category macro-F1",
    "category_accuracy_secondary_ok": "Category accuracy (gold secondary accepted)",
    "contribution_accuracy": "Contribution type accuracy",
    "method_exact": "Method exact match",
    "method_fuzzy": "Method fuzzy match",
    "dataset_precision": "Dataset precision",
    "dataset_recall": "Dataset recall",
    "dataset_f1": "Dataset F1",
    "evidence_verbatim": "Evidence quotes verbatim",
    "claim_recall": "Gold claims found",
    "schema_valid": "Schema-valid records",
}
REVIEW_LABELS = {
    "flagged_share": "Records flagged for review",
    "category_accuracy_unflagged": "Category accuracy, unflagged records",
    "category_accuracy_flagged": "Category accuracy, flagged records",
}


def _cell(value: Any) -> str:
    return md_escape(str(value))


def render_markdown(
    run: EvalRun,
    *,
    findings: Sequence[GateFinding] = (),
    changes: Sequence[dict[str, Any]] = (),
) -> str:
    s = run.summary
    lines = [
        "# Evaluation report",
        "",
        f"- model: `{run.model}`",
        f"- prompt `{run.prompt_hash}`, taxonomy `{run.taxonomy_hash}`, schema `{run.schema_hash}`",
        f"- gold set: `{run.gold_path}`, {s['papers']} papers",
        f"- {run.replayed} replayed, {run.cached} from the disk cache, {run.live - run.cached} run live",
        f"- created: {run.created_at}",
        "",
        "## Per-field metrics (95% bootstrap intervals over papers)",
        "",
        "| metric | value | 95% CI |",
        "|---|---:|---|",
    ]
    for name, m in s["metrics"].items():
        low, high = m["ci95"]
        lines.append(f"| {LABELS.get(name, name)} | {m['value']:.3f} | [{low:.3f}, {high:.3f}] |")
    lines += ["", "Operational: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["operational"].items()), ""]
    if "review" in s:
        lines += _review_lines(s["review"])
    if findings:
        lines += [
            "## Regression gate",
            "",
            "| metric | result | current | baseline | detail |",
            "|---|---|---:|---:|---|",
        ]
        for f in findings:
            base = "" if f.baseline is None else f"{f.baseline:.3f}"
            lines.append(f"| {f.metric} | **{f.level}** | {f.current:.3f} | {base} | {_cell(f.message)} |")
        lines.append("")
    lines += ["## Per class", "", "| category | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for c, row in s["per_class"].items():
        lines.append(f"| {c} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | {row['support']} |")
    preds = sorted({p for row in s["confusion"].values() for p in row})
    lines += ["", "## Confusion matrix (rows: gold, columns: predicted)", ""]
    lines.append("| gold \\ predicted | " + " | ".join(preds) + " |")
    lines.append("|---|" + "---:|" * len(preds))
    for g, row in s["confusion"].items():
        lines.append(f"| {g} | " + " | ".join(str(row.get(p, "")) for p in preds) + " |")
    failed = [p for p in run.papers if not p.valid]
    if failed:
        lines += ["", "## Papers without a valid record", ""]
        lines += [f"- {_cell(p.title)}: {_cell(p.error or '')}" for p in failed]
    if changes:
        lines += [
            "",
            "## Papers that changed versus the baseline",
            "",
            "| paper | field | baseline | current |",
            "|---|---|---|---|",
        ]
        for ch in changes:
            for field in ch["fields"]:
                before, now = _cell(ch["baseline"][field]), _cell(ch["current"][field])
                lines.append(f"| {_cell(ch['title'])} | {field} | {before} | {now} |")
    return "\n".join(lines) + "\n"


def _review_lines(review: dict[str, Any]) -> list[str]:
    """Accuracy with and without the records flagged for review (`scoring.review_summary`)."""
    lines = [
        "## Records flagged for review (95% bootstrap intervals over papers)",
        "",
        f"{review['flagged']} of {review['records']} valid records flagged. Not compared by the regression gate.",
        "",
        "| metric | value | 95% CI | papers |",
        "|---|---:|---|---:|",
    ]
    for name, m in review["metrics"].items():
        label = REVIEW_LABELS.get(name, name)
        if not m["papers"]:  # every record on the other side of the flag: no accuracy to give
            lines.append(f"| {label} | n/a | | 0 |")
            continue
        low, high = m["ci95"]
        lines.append(f"| {label} | {m['value']:.3f} | [{low:.3f}, {high:.3f}] | {m['papers']} |")
    return [*lines, ""]
