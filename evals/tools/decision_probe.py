"""Scored decisions, measured: the ablation table in `evals/ablation-decisions.md`.

Asks every seed paper the one-token questions of `prompts/questions.j2` (rendered by the
package's own `QuestionSet`, so the wording measured is the wording in the prompt files), reads the
answer from the first token's top log-probabilities, then fits the calibration with
`summarizer.calibration.fit` (prior on all 77 seed abstracts without labels; thresholds, alpha
and the position weight on `evals/dev.jsonl`) and scores the gold set with the project's
metrics and 95% bootstrap intervals. Nothing is fitted on the gold set.

Answers are cached in `evals/decision-probe/answers.jsonl` (keyed by the exact prompt), so
re-running the analysis needs no model:

    python evals/tools/decision_probe.py                 # analyse the committed answers
    python evals/tools/decision_probe.py --ask URL       # ask missing questions of an OpenAI-compatible server

The committed answers came from llama.cpp's `llama-server` (built from the llama-cpp-python
0.3.36 source) running the default Qwen2.5-Coder-1.5B Q4_K_M GGUF on this 2-core machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from summarizer.calibrate import claims_found as claim_found  # noqa: E402
from summarizer.calibration import (  # noqa: E402
    Calibration,
    Findings,
    Sample,
    apply,
    fit,
    save_calibration,
)
from summarizer.decide import DECISION_TEMPLATES, Answer, QuestionSet, RawDecisions  # noqa: E402
from summarizer.decisions import NO, YES, normalise, option_logprobs  # noqa: E402
from summarizer.prompts import load_prompts  # noqa: E402
from summarizer.scoring import HEADLINE, PaperScore, bootstrap, match_one_to_one, names_match  # noqa: E402
from summarizer.settings import DEFAULT_MODEL_NAME  # noqa: E402
from summarizer.sources import read_inputs  # noqa: E402
from summarizer.spans import candidate_names, split_sentences  # noqa: E402
from summarizer.taxonomy import load_taxonomy  # noqa: E402

ANSWERS = ROOT / "evals/decision-probe/answers.jsonl"
GATE = (
    "Is this paper about AI alignment or AI safety, that is, making AI systems act in line with human "
    "intentions, preferences or values, or testing, understanding or governing whether they do?"
)

TAX = load_taxonomy(ROOT / "prompts/taxonomy.toml")
assert TAX.subject is not None and TAX.subject.question == GATE, "the probe measured the shipped gate question"
PROMPTS = load_prompts(ROOT / "prompts", DECISION_TEMPLATES)
QS = QuestionSet(PROMPTS, TAX)
SYSTEM = QS.system()
NA_DESC = next(c.description for c in TAX.categories if c.id == "not_alignment")
SUBJ_DEF = (
    "about making AI systems act in line with human intentions, preferences or values, or about testing, "
    "understanding or governing whether they do"
)

# Wordings measured and not shipped: alternative gates and per-category yes/no questions.
EXTRA = {
    "gate_negated": f'Question: Does this description fit the paper: "{NA_DESC}"? Answer Yes or No.',
    "gate_ab": f"Question: Which describes the paper better?\nA: it is {SUBJ_DEF}.\nB: {NA_DESC}\nAnswer A or B.",
    "gate_ba": f"Question: Which describes the paper better?\nA: {NA_DESC}\nB: it is {SUBJ_DEF}.\nAnswer A or B.",
    "contribution": "Question: What is the paper's contribution type? Answer with one id from: "
    + ", ".join(TAX.contribution_ids)
    + ".",
}
for c in TAX.categories:
    if c.id != "not_alignment":
        EXTRA[f"yn:{c.id}"] = (
            f"Question: Is the paper's main contribution in the category {c.id} ({c.description})? Answer Yes or No."
        )


def load_cache() -> dict[str, list[tuple[str, float]]]:
    cache: dict[str, list[tuple[str, float]]] = {}
    if ANSWERS.exists():
        for line in ANSWERS.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            cache[d["k"]] = [(t, lp) for t, lp in d["v"]["top"]]
    return cache


CACHE = load_cache()
CLIENT: Any = None


def ask(user: str) -> list[tuple[str, float]]:
    key = hashlib.sha256((SYSTEM + "\x00" + user).encode()).hexdigest()
    if key in CACHE:
        return CACHE[key]
    if CLIENT is None:
        raise SystemExit("decision_probe: an answer is not in the committed cache; run with --ask URL")
    r = CLIENT.chat.completions.create(
        model="m",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
        max_tokens=1,
        temperature=0,
        logprobs=True,
        top_logprobs=20,
    )
    top = [(a.token, a.logprob) for a in r.choices[0].logprobs.content[0].top_logprobs]
    CACHE[key] = top
    with ANSWERS.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"k": key, "v": {"top": top}}) + "\n")
    return top


def lo(top: list[tuple[str, float]], a: str = YES, b: str = NO) -> float:
    d = option_logprobs(top, (a, b))
    return d[a] - d[b]


def main() -> None:
    global CLIENT
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ask", metavar="URL", help="OpenAI-compatible server for answers not yet cached")
    parser.add_argument("--out", type=Path, default=ROOT / "evals/ablation-decisions.md")
    parser.add_argument(
        "--write-calibration",
        type=Path,
        metavar="JSON",
        help="save the fitted calibration for the embedded default model (prompts/calibration.json)",
    )
    args = parser.parse_args()
    if args.ask:
        import openai

        CLIENT = openai.OpenAI(base_url=args.ask, api_key="none", timeout=300)

    papers = {p.id: p for p in read_inputs(sorted((ROOT / "examples/seeds").iterdir()))}
    gold = {(g := json.loads(line))["id"]: g for line in (ROOT / "evals/gold.jsonl").read_text().splitlines()}
    dev = {(g := json.loads(line))["id"]: g for line in (ROOT / "evals/dev.jsonl").read_text().splitlines()}
    samples: dict[str, Sample] = {}
    extra: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for pid, paper in sorted(papers.items()):
        sentences = split_sentences(paper.abstract)
        names = tuple(candidate_names(paper.abstract))
        block = QS.paper_block(paper.title, sentences) + "\n"
        raw = RawDecisions()
        for q in QS.first_round(names, len(sentences), findings=True):
            raw.answers[q.key] = Answer(top=ask(block + q.text))
        extra[pid] = {k: ask(block + text) for k, text in EXTRA.items()}
        samples[pid] = Sample(raw, names, len(sentences), tuple(sentences), gold.get(pid) or dev.get(pid))

    pool = list(samples.values())
    dev_samples = [samples[i] for i in dev]
    cal = fit(
        f"embedded:{DEFAULT_MODEL_NAME}", TAX, pool, dev_samples, names_match=names_match, claim_found=claim_found
    )
    gold_ids = list(gold)

    def scores(
        cal_: Calibration | None, *, gate: bool = True, category: dict[str, str] | None = None
    ) -> list[PaperScore]:
        out = []
        for pid in gold_ids:
            s, g = samples[pid], gold[pid]
            d = apply(s.raw, TAX, s.names, s.n_sentences, cal_)
            primary = (category or {}).get(pid, d.category.choice)
            if gate and d.subject is not None and d.subject.choice == NO:
                primary = "not_alignment"
            pred = [x.name for x in d.accepted_datasets]
            gnames = [x["name"] for x in g["datasets"]]
            tp = match_one_to_one(gnames, pred)
            found, total = claim_found(s, d.claim_sentences(3))
            out.append(
                PaperScore(
                    id=pid,
                    title=g["title"],
                    valid=True,
                    gold_primary=g["primary"],
                    pred_primary=primary,
                    category_correct=primary == g["primary"],
                    datasets_tp=tp,
                    datasets_fp=len(pred) - tp,
                    datasets_fn=len(gnames) - tp,
                    gold_claims=total,
                    gold_claims_found=found,
                )
            )
        return out

    def fmt(ss: list[PaperScore], metric: str) -> str:
        iv = bootstrap(ss, HEADLINE[metric])
        return f"{iv.value:.3f} [{iv.low:.3f}, {iv.high:.3f}]"

    def auc(values: dict[str, float], ids: list[str], labels: dict[str, Any]) -> float:
        pos = [values[i] for i in ids if labels[i]["primary"] != "not_alignment"]
        neg = [values[i] for i in ids if labels[i]["primary"] == "not_alignment"]
        return sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))

    rows: list[str] = []
    gates: dict[str, dict[str, float]] = {
        "yes/no question from the taxonomy (package default)": {
            p: lo(samples[p].raw.answers["subject"].top or []) for p in samples
        },
        "yes/no: does the not_alignment description fit (negated)": {p: -lo(extra[p]["gate_negated"]) for p in samples},
        "A/B: subject definition first": {p: lo(extra[p]["gate_ab"], "A", "B") for p in samples},
        "A/B: subject definition second": {p: lo(extra[p]["gate_ba"], "B", "A") for p in samples},
    }
    for name, values in gates.items():
        rows.append(
            f"| gate: {name} | ROC AUC gold {auc(values, gold_ids, gold):.3f}, dev {auc(values, list(dev), dev):.3f} |"
        )

    raw_cal = Calibration(model="raw")  # identity: no prior, thresholds at 0 log-odds
    full_bc = cal.model_copy(update={"category": cal.category.model_copy(update={"alpha": 1.0})})
    no_prior = cal.model_copy(update={"category": cal.category.model_copy(update={"prior": {}})})
    table = [
        ("raw: no calibration (gate at 0 log-odds, category argmax)", scores(raw_cal)),
        ("category only, no gate (raw names)", scores(raw_cal, gate=False)),
        ("gate threshold from dev, category raw names", scores(no_prior)),
        ("gate from dev, category Batch Calibration alpha=1", scores(full_bc)),
        (f"gate from dev, category BC alpha={cal.category.alpha} (fitted on dev) (package default)", scores(cal)),
    ]
    yn = {p: max((c for c in TAX.subject_ids), key=lambda c: lo(extra[p][f"yn:{c}"])) for p in samples}
    means = {c: float(np.mean([lo(extra[p][f"yn:{c}"]) for p in samples])) for c in TAX.subject_ids}
    yn_bc = {p: max(TAX.subject_ids, key=lambda c: lo(extra[p][f"yn:{c}"]) - means[c]) for p in samples}
    table.append(("gate from dev, category by per-class yes/no (raw)", scores(cal, category=yn)))
    table.append(("gate from dev, category by per-class yes/no (pool-mean debiased)", scores(cal, category=yn_bc)))
    generated = {p["id"]: p["pred_primary"] for p in json.loads((ROOT / "evals/baseline.json").read_text())["papers"]}
    generated = {p: c for p, c in generated.items() if c}
    table.append(("gate from dev, category generated (committed baseline's label)", scores(cal, category=generated)))

    prior_shown = {k: round(v, 3) for k, v in cal.category.prior.items()}
    lines = [
        "# Scored decisions: ablation on the gold set",
        "",
        "Produced by `python evals/tools/decision_probe.py` from the answers in",
        "`evals/decision-probe/answers.jsonl` (Qwen2.5-Coder-1.5B Q4_K_M on llama.cpp, 2 CPU cores).",
        f"Calibration fitted with `summarizer.calibration.fit`: category prior over {len(pool)} seed abstracts",
        f"(no labels); gate threshold, alpha, dataset threshold and claim position weight on dev ({len(dev)} papers).",
        "Nothing fitted on gold. 95% bootstrap intervals over the 65 gold papers.",
        "",
        f"Fitted: `{json.dumps(cal.model_dump(exclude={'category'}, mode='json'))}`",
        f"category prior: `{json.dumps(prior_shown)}`, alpha {cal.category.alpha}",
        "",
        "## Subject gate",
        "",
        "| question | separation |",
        "|---|---|",
        *rows,
        "",
        "## Category (9 classes, gold)",
        "",
        "| variant | accuracy | macro-F1 | not_alignment recall | predictions (top 3) |",
        "|---|---|---|---|---|",
    ]
    for name, ss in table:
        na = [s for s in ss if s.gold_primary == "not_alignment"]
        caught = sum(s.pred_primary == "not_alignment" for s in na)
        recall = f"{caught / len(na):.3f} ({caught}/{len(na)})"
        top3 = ", ".join(f"{k} {v}" for k, v in Counter(s.pred_primary for s in ss).most_common(3))
        lines.append(
            f"| {name} | {fmt(ss, 'category_accuracy')} | {fmt(ss, 'category_macro_f1')} | {recall} | {top3} |"
        )
    lines += [
        "",
        "Reference (committed baseline `evals/baseline.json`, generated label inside one JSON answer): accuracy",
        "0.462 [0.339, 0.585], macro-F1 0.370, not_alignment recall 1/17. Letter options A-I (issue 12's probe):",
        "0.18 raw, 0.31 calibrated.",
        "",
        "## Contribution type (gold)",
        "",
        "| variant | accuracy |",
        "|---|---|",
    ]
    contrib_prior: dict[str, float] = {}
    dists = {p: normalise(option_logprobs(extra[p]["contribution"], TAX.contribution_ids)) for p in samples}
    for c in TAX.contribution_ids:
        contrib_prior[c] = float(np.mean([d[c] for d in dists.values()]))
    for name, pick in [
        ("scored label names, raw", lambda d: max(d, key=d.get)),
        ("scored label names, Batch Calibration", lambda d: max(d, key=lambda c: d[c] / contrib_prior[c])),
    ]:
        hits = [pick(dists[p]) == gold[p]["contribution_type"] for p in gold_ids]
        ss = [
            PaperScore(id=p, title="", valid=True, gold_primary="x", contribution_correct=h)
            for p, h in zip(gold_ids, hits, strict=True)
        ]
        lines.append(f"| {name} | {fmt(ss, 'contribution_accuracy')} |")
    lines += ["| generated inside the JSON answer (committed baseline) | 0.815 [0.708, 0.908] |", ""]

    lines += [
        "## Datasets and claims (gold)",
        "",
        "| variant | dataset F1 | claim recall (3 claims) |",
        "|---|---|---|",
    ]
    variants = [
        ("threshold 0 log-odds, findings by score only", raw_cal),
        ("dataset threshold and position weight from dev (package default)", cal),
        (
            "findings by position only (last 3 sentences)",
            cal.model_copy(update={"finding": Findings(position_weight=1000.0)}),
        ),
    ]
    for name, c in variants:
        ss = scores(c)
        lines.append(f"| {name} | {fmt(ss, 'dataset_f1')} | {fmt(ss, 'claim_recall')} |")
    lines += [
        "",
        "Reference (committed baseline): dataset F1 0.444 [0.262, 0.633], claim recall 0.500 [0.427, 0.577].",
        "",
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.write_calibration:
        save_calibration(args.write_calibration, cal)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
