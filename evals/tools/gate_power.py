"""Measure the regression gate's false-alarm and detection rates by simulating reruns.

No model runs: every simulated rerun starts from the committed baseline's per-paper results
(evals/baseline.json) and is checked against that baseline with the rules in evals/gate.toml.

- An *equal* rerun regenerates each paper's answer with probability `churn`: its category,
  contribution and method are redrawn right or wrong at the baseline's own rates, its dataset
  and claim counts are copied from a random paper with as many gold datasets / claims. The
  expected score of every metric is unchanged, so any failure is a false alarm.
- A *regression of size k* is an equal rerun in which k more papers, right before, now get
  the category wrong (a net drop of k papers on category accuracy).

The old rules (α = 0.05 two-sided per metric, no correction, floor 0.45 on category accuracy)
are simulated next to the current ones; they used a bootstrap interval where the current rules
use a permutation test, and the bootstrap trips more easily, so their false-alarm figure here
is a lower bound.

    python evals/tools/gate_power.py            # the figures quoted in evals/GUIDELINES.md
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from summarizer.evaluate import load_run  # noqa: E402
from summarizer.gate import GateConfig, GateRule, check_gate, detection_size, load_gate_config  # noqa: E402
from summarizer.scoring import PaperScore  # noqa: E402

OLD_RULES = GateConfig(
    alpha=0.025,  # two-sided 0.05 with "and it got worse" is one-sided 0.025
    correction="none",
    min_effect=0.0,
    warn_margin=0.03,
    metrics={
        "category_accuracy": GateRule(test="mcnemar", field="category_correct", floor=0.45),
        "category_accuracy_secondary_ok": GateRule(test="mcnemar", field="category_lenient"),
        "category_macro_f1": GateRule(test="permutation"),
        "contribution_accuracy": GateRule(test="mcnemar", field="contribution_correct"),
        "method_fuzzy": GateRule(test="mcnemar", field="method_fuzzy"),
        "dataset_f1": GateRule(test="permutation"),
        "claim_recall": GateRule(test="permutation"),
        "evidence_verbatim": GateRule(test="none", floor=1.0),
        "schema_valid": GateRule(test="permutation", floor=0.9),
    },
)


class Simulator:
    def __init__(self, baseline: list[PaperScore], seed: int) -> None:
        self.base = baseline
        self.rng = np.random.default_rng(seed)
        n = len(baseline)
        self.p_category = sum(s.category_correct for s in baseline) / n
        self.p_contribution = sum(s.contribution_correct for s in baseline) / n
        self.p_method = sum(s.method_fuzzy for s in baseline) / n
        fuzzy = [s for s in baseline if s.method_fuzzy]
        self.p_exact_given_fuzzy = sum(s.method_exact for s in fuzzy) / len(fuzzy) if fuzzy else 0.0
        wrong = Counter(s.pred_primary for s in baseline if s.pred_primary and not s.category_correct)
        self.wrong_labels = wrong or Counter(s.gold_primary for s in baseline)

    def _wrong_label(self, gold: str) -> str:
        labels = [label for label in self.wrong_labels if label != gold]
        weights = np.array([self.wrong_labels[label] for label in labels], dtype=float)
        return str(self.rng.choice(labels, p=weights / weights.sum()))

    def _donor(self, score: PaperScore, key: str) -> PaperScore:
        same = [s for s in self.base if getattr(s, key) == getattr(score, key)]
        return same[int(self.rng.integers(len(same)))]

    def equal_rerun(self, churn: float) -> list[PaperScore]:
        out = []
        for s in self.base:
            if self.rng.random() >= churn:
                out.append(s)
                continue
            correct = bool(self.rng.random() < self.p_category)
            fuzzy = bool(self.rng.random() < self.p_method)
            data = self._donor(s, "gold_claims")
            sets = [d for d in self.base if d.datasets_tp + d.datasets_fn == s.datasets_tp + s.datasets_fn]
            donor = sets[int(self.rng.integers(len(sets)))]
            out.append(
                s.model_copy(
                    update={
                        "pred_primary": s.gold_primary if correct else self._wrong_label(s.gold_primary),
                        "category_correct": correct,
                        "category_lenient": correct,
                        "contribution_correct": bool(self.rng.random() < self.p_contribution),
                        "method_fuzzy": fuzzy,
                        "method_exact": fuzzy and bool(self.rng.random() < self.p_exact_given_fuzzy),
                        "datasets_tp": donor.datasets_tp,
                        "datasets_fp": donor.datasets_fp,
                        "datasets_fn": donor.datasets_fn,
                        "gold_claims_found": data.gold_claims_found,
                    }
                )
            )
        return out

    def regression(self, churn: float, k: int) -> list[PaperScore]:
        run = self.equal_rerun(churn)
        right = [i for i, s in enumerate(run) if s.category_correct]
        for i in self.rng.choice(right, size=min(k, len(right)), replace=False):
            s = run[int(i)]
            run[int(i)] = s.model_copy(
                update={
                    "pred_primary": self._wrong_label(s.gold_primary),
                    "category_correct": False,
                    "category_lenient": False,
                }
            )
        return run


def fails(run: list[PaperScore], baseline: list[PaperScore], config: GateConfig) -> bool:
    return any(f.level == "fail" for f in check_gate(run, baseline, config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=ROOT / "evals/baseline.json")
    parser.add_argument("--gate", type=Path, default=ROOT / "evals/gate.toml")
    parser.add_argument("--reruns", type=int, default=300, help="simulated reruns per figure")
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--churn", type=float, nargs="+", default=[0.1, 0.25, 0.5])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 6, 8, 10, 13])
    args = parser.parse_args()

    baseline = load_run(args.baseline).papers
    config = load_gate_config(args.gate)
    n = len(baseline)
    print(f"baseline: {args.baseline.relative_to(ROOT)}, {n} papers; gate: {args.gate.relative_to(ROOT)}")
    print(f"reruns per figure: {args.reruns}, seed {args.seed}")
    size = detection_size(config, n)
    print(f"detection size (k papers right->wrong on one metric, nothing else changed): {size}")

    print("\nfalse alarms: share of equal reruns that fail")
    print("| churn | current rules | old rules |")
    print("|---:|---:|---:|")
    for churn in args.churn:
        sim_new, sim_old = Simulator(baseline, args.seed), Simulator(baseline, args.seed)
        new = sum(fails(sim_new.equal_rerun(churn), baseline, config) for _ in range(args.reruns))
        old = sum(fails(sim_old.equal_rerun(churn), baseline, OLD_RULES) for _ in range(args.reruns))
        r = args.reruns
        print(f"| {churn:.2f} | {new / r:.1%} ({new}/{r}) | {old / r:.1%} ({old}/{r}) |")

    print("\ndetection: share of reruns with k more papers wrong on category that fail (current rules)")
    print("| k (net drop) | " + " | ".join(f"churn {c:.2f}" for c in [0.0, *args.churn]) + " |")
    print("|---:|" + "---:|" * (len(args.churn) + 1))
    for k in args.sizes:
        cells = []
        for churn in [0.0, *args.churn]:
            sim = Simulator(baseline, args.seed + k)
            hits = sum(fails(sim.regression(churn, k), baseline, config) for _ in range(args.reruns))
            cells.append(f"{hits / args.reruns:.0%}")
        print(f"| {k} ({k / n:.1%}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
