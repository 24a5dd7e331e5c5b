"""How far the records' confidences can be trusted: calibration error and the `needs_review` split.

Reads the committed scored gold outcomes (`cache/replay/gold.jsonl`, what
`summarizer eval --decisions scored` ran; generated records carry no confidence) and the gold
labels, and writes `evals/review-quality.md`:

- expected calibration error (10 equal-width bins) of P(about the subject) against the gold
  "not not_alignment" label, and of the category confidence against "primary is right" on the
  papers the gate kept;
- category accuracy of the records not marked `needs_review` and of those marked, with 95%
  bootstrap intervals (2,000 resamples of papers, seed 0).

    python evals/tools/review_quality.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def ece(pairs: list[tuple[float, bool]], bins: int = 10) -> float:
    if not pairs:
        return float("nan")
    p = np.array([x for x, _ in pairs])
    y = np.array([float(b) for _, b in pairs])
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(
        sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).sum() for b in range(bins) if (idx == b).any())
        / len(p)
    )


def interval(hits: list[bool]) -> str:
    if not hits:
        return "n/a (0 papers)"
    a = np.array(hits, dtype=float)
    rng = np.random.default_rng(0)
    means = rng.choice(a, size=(2000, len(a))).mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return f"{a.mean():.3f} [{lo:.3f}, {hi:.3f}] ({int(a.sum())}/{len(a)})"


def main() -> None:
    gold = {(g := json.loads(line))["id"]: g for line in (ROOT / "evals/gold.jsonl").read_text().splitlines()}
    gate: list[tuple[float, bool]] = []
    category: list[tuple[float, bool]] = []
    confident: list[bool] = []
    review: list[bool] = []
    failed = 0
    for line in (ROOT / "cache/replay/gold.jsonl").read_text().splitlines():
        entry = json.loads(line)
        g = gold.get(entry["paper_id"])
        if g is None:
            continue
        if not entry.get("result"):
            failed += 1
            continue
        r = entry["result"]["record"]
        if r.get("confidence") is None:  # a generated record (the store holds both kinds)
            continue
        right = r["category"]["primary"] == g["primary"]
        conf = r.get("confidence") or {}
        if conf.get("subject") is not None:
            gate.append((conf["subject"], g["primary"] != "not_alignment"))
        if conf.get("category") is not None:
            category.append((conf["category"], right))
        (review if r.get("needs_review") else confident).append(right)
    lines = [
        "# Confidence and `needs_review` on the gold set",
        "",
        "Produced by `python evals/tools/review_quality.py` from `cache/replay/gold.jsonl` (the outcomes",
        f"`summarizer eval` ran; {failed} failed papers have no record and are left out).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| ECE of P(about the subject), {len(gate)} papers | {ece(gate):.3f} |",
        f"| ECE of the category confidence, {len(category)} papers the gate kept | {ece(category):.3f} |",
        f"| category accuracy, records not marked for review | {interval(confident)} |",
        f"| category accuracy, records marked `needs_review` | {interval(review)} |",
        "",
    ]
    out = ROOT / "evals/review-quality.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
