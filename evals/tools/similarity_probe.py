"""The model's answers combined with the taxonomy similarity: fitted, cross-validated, checked.

From the recorded subject and category answers (`evals/decision-probe/answers.jsonl`; no model
runs) and `summarizer.similarity.class_similarity`, through the package's own `calibration.apply`:

- the four numbers of `Combine` are fitted on the 77 labelled seed papers (gold + dev); the gold
  figures are 5-fold cross-validated (folds over gold, dev always in training; seed 0), so no gold
  paper is scored by numbers fitted on it;
- the check lists (`evals/checklists/`) are only scored, with numbers fitted on all 77;
- each list is scored at each expected on-topic share (`calibration.SHARES`), with 95% bootstrap
  intervals over papers (2,000 resamples, seed 0).

    python evals/tools/similarity_probe.py            # print the tables
    python evals/tools/similarity_probe.py --write    # also save the fit into prompts/calibration.json

The check lists are for checking only: nothing fitted here reads them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "evals/tools"))
sys.path.insert(0, str(ROOT))

import decision_probe as dp  # noqa: E402

from summarizer.calibration import (  # noqa: E402
    SHARES,
    Calibration,
    Labelled,
    apply,
    fit_combine,
    load_calibrations,
    save_calibration,
    scored_choice,
    yes_logodds,
)
from summarizer.decide import Answer, RawDecisions  # noqa: E402
from summarizer.decisions import YES  # noqa: E402
from summarizer.settings import DEFAULT_MODEL_NAME  # noqa: E402
from summarizer.similarity import class_similarity  # noqa: E402
from summarizer.sources import read_inputs  # noqa: E402
from summarizer.spans import candidate_names, split_sentences  # noqa: E402

RNG_SEED = 0
RESAMPLES = 2000
FOLDS = 5
MODEL = f"embedded:{DEFAULT_MODEL_NAME}"


@dataclass(frozen=True)
class Paper:
    id: str
    raw: RawDecisions
    names: tuple[str, ...]
    n_sentences: int
    similarity: dict[str, float]
    primary: str


def load(title: str, abstract: str, pid: str, primary: str) -> Paper:
    sentences = split_sentences(abstract)
    names = tuple(candidate_names(abstract))
    block = dp.QS.paper_block(title, sentences) + "\n"
    raw = RawDecisions()
    for q in dp.QS.first_round(names, len(sentences), findings=True):
        if q.key in ("subject", "category"):
            key = hashlib.sha256((dp.SYSTEM + "\x00" + block + q.text).encode()).hexdigest()
            raw.answers[q.key] = Answer(top=dp.CACHE[key])
    return Paper(pid, raw, names, len(sentences), class_similarity(dp.TAX, title, abstract), primary)


def lists() -> dict[str, list[Paper]]:
    seeds = {p.id: p for p in read_inputs(sorted((ROOT / "examples/seeds").iterdir()))}
    out: dict[str, list[Paper]] = {}
    for name in ("gold", "dev"):
        for line in (ROOT / f"evals/{name}.jsonl").read_text(encoding="utf-8").splitlines():
            g = json.loads(line)
            p = seeds[g["id"]]
            out.setdefault(name, []).append(load(p.title, p.abstract, p.id, g["primary"]))
    for path in sorted((ROOT / "evals/checklists").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            c = json.loads(line)
            out.setdefault(path.stem, []).append(load(c["title"], c["abstract"], c["id"], c["primary"]))
    return out


def labelled(papers: list[Paper], base: Calibration) -> list[Labelled]:
    out = []
    for p in papers:
        lo = yes_logodds(p.raw.answers["subject"])
        assert lo is not None
        category = scored_choice(p.raw.answers["category"], dp.TAX.subject_ids, base.category)
        out.append(Labelled(lo, category, p.similarity, p.primary))
    return out


def decide(p: Paper, cal: Calibration, share: float) -> tuple[str, float, bool]:
    d = apply(p.raw, dp.TAX, p.names, p.n_sentences, cal, similarity=p.similarity, share=share)
    p_on = d.subject.p(YES) if d.subject is not None else 1.0
    return d.primary, p_on, bool(d.review)


def interval(values: np.ndarray) -> str:
    if not len(values):
        return "n/a"
    rng = np.random.default_rng(RNG_SEED)
    boots = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(RESAMPLES)]
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return f"{values.mean():.3f} [{lo:.3f}, {hi:.3f}]"


def row(name: str, share_name: str, outcomes: list[tuple[Paper, str, float, bool]]) -> str:
    outside = dp.TAX.outside
    right = np.array([pred == p.primary for p, pred, _, _ in outcomes], dtype=float)
    flagged = np.array([f for *_, f in outcomes], dtype=bool)
    on = np.array([p.primary != outside for p, *_ in outcomes], dtype=bool)
    kept = np.array([pred != outside for _, pred, _, _ in outcomes], dtype=bool)
    precision = f"{int((on & kept).sum())}/{int(kept.sum())}"
    recall = f"{int((on & kept).sum())}/{int(on.sum())}"
    na = f"{int((~on & ~kept).sum())}/{int((~on).sum())}"
    return (
        f"| {name} | {share_name} ({SHARES[share_name]:.2f}) | {len(outcomes)} | {interval(right)} | "
        f"{flagged.mean():.2f} | {interval(right[~flagged])} | {interval(right[flagged])} | "
        f"{precision} | {recall} | {na} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="save the fit on gold + dev into prompts/calibration.json")
    args = parser.parse_args()
    path = ROOT / "prompts/calibration.json"
    base = load_calibrations(path).for_model(MODEL)
    assert base is not None
    data = lists()
    gold, dev = data["gold"], data["dev"]

    # Gold: 5-fold cross-validation, so each gold paper is decided by numbers fitted without it.
    rng = np.random.default_rng(RNG_SEED)
    folds = np.array_split(rng.permutation(len(gold)), FOLDS)
    gold_out: dict[str, list[tuple[Paper, str, float, bool]]] = {s: [] for s in SHARES}
    fold_fits = []
    for fold in folds:
        held = set(fold.tolist())
        train = [g for i, g in enumerate(gold) if i not in held] + dev
        combine = fit_combine(labelled(train, base), dp.TAX.outside or "")
        fold_fits.append(combine)
        cal = base.model_copy(update={"combine": combine})
        for share_name, share in SHARES.items():
            gold_out[share_name] += [(gold[i], *decide(gold[i], cal, share)) for i in sorted(held)]

    combine = fit_combine(labelled(gold + dev, base), dp.TAX.outside or "")
    cal = base.model_copy(update={"combine": combine})
    header = [
        "| list | expected share | papers | accuracy | flagged | unflagged right | flagged right | "
        "called on-topic: truly | on-topic kept | off-topic gated out |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines = [*header]
    for share_name in SHARES:
        lines.append(row("gold (5-fold CV)", share_name, gold_out[share_name]))
    for name, papers in data.items():
        if name == "gold":
            continue
        label = f"{name} (fitted on)" if name == "dev" else f"{name} (check list)"
        for share_name, share in SHARES.items():
            lines.append(row(label, share_name, [(p, *decide(p, cal, share)) for p in papers]))
    print("\n".join(lines))
    print()
    print("fit on gold + dev:", combine.model_dump_json())
    print("fold fits:", "; ".join(f.model_dump_json() for f in fold_fits))
    if args.write:
        fitted = {
            **base.fitted,
            "combine": "fitted on gold + dev (77 papers) by evals/tools/similarity_probe.py; "
            "gold figures are 5-fold cross-validated",
        }
        save_calibration(path, base.model_copy(update={"combine": combine, "fitted": fitted}))
        print(f"saved to {path}")


if __name__ == "__main__":
    main()
