"""Scored decisions on the check lists, from the recorded answers (no model; nothing fitted).

For each list in `evals/checklists/`: the subject question's ROC AUC (on- against off-topic),
the accuracy of the shipped scored path (gate + calibrated category from
`prompts/calibration.json`), the model's category among on-topic papers, and the on-topic
filter's precision and recall, with 95% bootstrap intervals over papers (2,000 resamples,
seed 0). Answers come from `evals/decision-probe/answers.jsonl`
(`evals/tools/record_checklists.py --questions` records them).

    python evals/tools/checklist_probe.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "evals/tools"))
sys.path.insert(0, str(ROOT))

import decision_probe as dp  # noqa: E402

from summarizer.calibration import apply, load_calibrations  # noqa: E402
from summarizer.decide import Answer, RawDecisions  # noqa: E402
from summarizer.settings import DEFAULT_MODEL_NAME  # noqa: E402
from summarizer.spans import candidate_names, split_sentences  # noqa: E402

RNG_SEED = 0
RESAMPLES = 2000


def interval(values: np.ndarray, stat) -> str:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(RNG_SEED)
    point = stat(values)
    boots = [stat(values[rng.integers(0, len(values), len(values))]) for _ in range(RESAMPLES)]
    lo, hi = np.nanquantile(np.array(boots, dtype=float), [0.025, 0.975])
    return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def auc(rows: np.ndarray) -> float:
    pos, neg = rows[rows[:, 1] == 1, 0], rows[rows[:, 1] == 0, 0]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg]))


def main() -> None:
    cal = load_calibrations(ROOT / "prompts/calibration.json").for_model(f"embedded:{DEFAULT_MODEL_NAME}")
    lines = ["| list | papers (on-topic) | gate ROC AUC | scored accuracy | on-topic category (model) | "
             "filter precision | filter recall |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for path in sorted((ROOT / "evals/checklists").glob("*.jsonl")):
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            p = json.loads(line)
            sentences = split_sentences(p["abstract"])
            names = tuple(candidate_names(p["abstract"]))
            block = dp.QS.paper_block(p["title"], sentences) + "\n"
            raw = RawDecisions()
            for q in dp.QS.first_round(names, len(sentences), findings=True):
                if q.key in ("subject", "category"):
                    key = hashlib.sha256((dp.SYSTEM + "\x00" + block + q.text).encode()).hexdigest()
                    raw.answers[q.key] = Answer(top=dp.CACHE[key])
            d = apply(raw, dp.TAX, names, len(sentences), cal)
            on = p["primary"] != "not_alignment"
            lo = dp.lo(raw.answers["subject"].top or [])
            kept = d.primary != "not_alignment"
            rows.append((lo, on, d.primary == p["primary"], d.category.choice == p["primary"], kept))
        a = np.array(rows, dtype=float)
        on_rows, kept_rows = a[a[:, 1] == 1], a[a[:, 4] == 1]
        precision = interval(kept_rows[:, 1], np.mean) if len(kept_rows) else "n/a (none kept)"
        lines.append(
            f"| {path.stem} | {len(a)} ({int(a[:, 1].sum())}) | {interval(a[:, :2], auc)} | "
            f"{interval(a[:, 2], np.mean)} | {interval(on_rows[:, 3], np.mean)} | {precision} "
            f"({int(kept_rows[:, 1].sum())}/{len(kept_rows)}) | {interval(on_rows[:, 4], np.mean)} |"
        )
    lines += ["", generated_rows()]
    print("\n".join(lines))


def generated_rows() -> str:
    """Today's default (generated labels) on the same lists, from the recorded run (may be partial)."""
    run = ROOT / "evals/checklists/runs/generated/records.jsonl"
    labels = {}
    for path in sorted((ROOT / "evals/checklists").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            p = json.loads(line)
            labels[p["id"]] = (path.stem, p["primary"])
    rows: dict[str, list[tuple[bool, bool, bool]]] = {}
    for line in run.read_text(encoding="utf-8").splitlines() if run.exists() else []:
        record = json.loads(line)["record"]
        stem, gold = labels[record["paper_id"]]
        called = record["category"]["primary"]
        rows.setdefault(stem, []).append((called == gold, gold != "not_alignment", called != "not_alignment"))
    out = ["| list (generated labels, recorded run) | papers done | accuracy | called on-topic (truly on-topic) |",
           "|---|---|---|---|"]  # fmt: skip
    for stem, values in sorted(rows.items()):
        a = np.array(values, dtype=float)
        kept = a[a[:, 2] == 1]
        out.append(f"| {stem} | {len(a)} | {interval(a[:, 0], np.mean)} | {len(kept)} ({int(kept[:, 1].sum())}) |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
