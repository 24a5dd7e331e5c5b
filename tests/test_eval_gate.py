"""The regression gate as CI runs it: the committed gold set, baseline and replay store.

The committed baseline's own per-paper results are the material: a run that is k papers
worse, a run that is as good but different, and a constant answer must each get the verdict
the rules in evals/gate.toml promise, and at the size evals/GUIDELINES.md documents.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from summarizer.evaluate import load_run, run_eval
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.gate import (
    COLUMNAR,
    GateConfig,
    GateFinding,
    GateRule,
    check_gate,
    classes_of,
    detection_size,
    holm,
    load_gate_config,
    majority_class_accuracy,
    majority_class_finding,
    mcnemar_worse_p,
    permutation_worse_p,
)
from summarizer.scoring import HEADLINE, PaperScore
from summarizer.settings import DEFAULT_MODEL_NAME, Settings

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "evals/gold.jsonl"
SEEDS = sorted((ROOT / "examples/seeds").glob("*.txt"))
BASELINE = load_run(ROOT / "evals/baseline.json").papers
CONFIG = load_gate_config(ROOT / "evals/gate.toml")
DETECTION = detection_size(CONFIG, len(BASELINE))

# The per-paper right/wrong fields the gate tests with McNemar, and how a paper turns wrong.
FIELDS = {
    "category_accuracy": ("category_correct", "category_lenient"),
    "contribution_accuracy": ("contribution_correct",),
    "method_fuzzy": ("method_fuzzy", "method_exact"),
}


def turned(score: PaperScore, fields: tuple[str, ...], right: bool) -> PaperScore:
    update: dict[str, object] = dict.fromkeys(fields, right)
    if "category_correct" in fields:
        update["pred_primary"] = score.gold_primary if right else next(
            label for label in ("not_alignment", "learning_from_feedback") if label != score.gold_primary
        )  # fmt: skip
    return score.model_copy(update=update)


def flip(
    scores: list[PaperScore], metric: str, k: int, *, right: bool = False, from_end: bool = False
) -> list[PaperScore]:
    """`scores` with k papers that were right on `metric` turned wrong (or wrong turned right)."""
    fields = FIELDS[metric]
    order = range(len(scores) - 1, -1, -1) if from_end else range(len(scores))
    chosen = [i for i in order if getattr(scores[i], fields[0]) != right][:k]
    assert len(chosen) == k, "the baseline has too few papers to flip"
    return [turned(s, fields, right) if i in chosen else s for i, s in enumerate(scores)]


def failed(findings: list[GateFinding]) -> set[str]:
    return {f.metric for f in findings if f.level == "fail"}


def test_the_documented_detection_size_is_the_gates() -> None:
    text = (ROOT / "evals/GUIDELINES.md").read_text(encoding="utf-8")
    documented = re.search(r"detection size: \*\*(\d+) papers\*\*", text)
    assert documented is not None, "GUIDELINES.md must state the gate's detection size"
    assert DETECTION is not None and int(documented.group(1)) == DETECTION
    # Holm's first step at alpha / (tests): the size follows from the config, not a constant.
    tested = sum(r.test != "none" for r in CONFIG.metrics.values())
    assert mcnemar_worse_p(DETECTION, 0) <= CONFIG.alpha / tested < mcnemar_worse_p(DETECTION - 1, 0)


@pytest.mark.parametrize("metric", sorted(FIELDS))
@pytest.mark.parametrize("from_end", [False, True], ids=["first-papers", "last-papers"])
def test_k_papers_worse_fails_exactly_from_the_detection_size(metric: str, from_end: bool) -> None:
    assert DETECTION is not None
    for k in sorted({1, 2, DETECTION // 2, DETECTION - 1, DETECTION, DETECTION + 1, DETECTION + 4}):
        current = flip(BASELINE, metric, k, from_end=from_end)
        failures = failed(check_gate(current, BASELINE, CONFIG))
        if k >= DETECTION:
            assert metric in failures, (metric, k)
        else:
            assert failures == set(), (metric, k, failures)


def test_k_papers_better_never_fails() -> None:
    for metric in FIELDS:
        wrong = sum(not getattr(s, FIELDS[metric][0]) for s in BASELINE)
        assert wrong >= 5
        assert failed(check_gate(flip(BASELINE, metric, wrong, right=True), BASELINE, CONFIG)) == set()


@pytest.mark.parametrize("k", [1, 3, 6, 10])
def test_an_equal_but_different_rerun_passes(k: int) -> None:
    # k papers got worse and k others got better on every judged field: the same quality
    # with different answers, which the old floor of 0.45 failed for k >= 1 on category.
    current = BASELINE
    for metric in FIELDS:
        current = flip(flip(current, metric, k), metric, k, right=True, from_end=True)
    assert sum(a != b for a, b in zip(current, BASELINE, strict=True)) >= 2 * k
    findings = check_gate(list(reversed(current)), BASELINE, CONFIG)  # paired by id, not by position
    assert failed(findings) == set()
    unchanged = HEADLINE["category_accuracy"](BASELINE)
    assert {f.metric: f.current for f in findings}["category_accuracy"] == pytest.approx(unchanged, abs=1e-4)


async def test_a_constant_majority_model_fails_against_the_real_baseline(tmp_path: Path) -> None:
    # Always the commonest category and contribution type, never a method or dataset.
    settings = Settings(cache_dir=tmp_path / "c", use_cache=False)
    async with Extractor(settings, backend=FakeBackend(responder=lambda m: valid_answer(m))) as ex:
        constant = await run_eval(settings, gold_path=GOLD, paper_files=SEEDS, replay_path=None, extractor=ex)
    findings = check_gate(constant.papers, BASELINE, CONFIG)
    assert {"category_accuracy", "contribution_accuracy", "method_fuzzy", "category_macro_f1"} <= failed(findings)
    # The committed model (scored decisions since issue 24) beats always answering the commonest
    # category, so the majority-class warning is quiet on it; a model that falls to the constant
    # answer's accuracy hears it on every check.
    assert majority_class_finding(BASELINE) is None
    right = sum(s.category_correct for s in BASELINE)
    constant_right = round(majority_class_finding(constant.papers).baseline * len(BASELINE))  # type: ignore[union-attr]
    warning = majority_class_finding(flip(BASELINE, "category_accuracy", right - constant_right))
    assert warning is not None and warning.level == "warn" and "learning_from_feedback" in warning.message


def test_columnar_metrics_equal_the_headline_definitions() -> None:
    runs = [BASELINE, flip(BASELINE, "category_accuracy", 9), flip(BASELINE, "method_fuzzy", 5, right=True)]
    for scores in runs:
        classes = classes_of(scores)
        for name, col in COLUMNAR.items():
            assert float(col.from_sums(col.columns(scores, classes).sum(axis=0))) == pytest.approx(
                HEADLINE[name](scores)
            ), name


def test_the_permutation_test_is_mcnemar_on_an_accuracy() -> None:
    current = flip(flip(BASELINE, "category_accuracy", 7), "category_accuracy", 2, right=True, from_end=True)
    assert permutation_worse_p(current, BASELINE, "category_accuracy") == pytest.approx(mcnemar_worse_p(7, 2))
    assert permutation_worse_p(BASELINE, BASELINE, "dataset_f1") == 1.0


def test_holm_controls_the_family_not_each_test() -> None:
    assert holm({"a": 0.01, "b": 0.04}, 0.05) == {"a", "b"}  # 0.01 <= 0.025, then 0.04 <= 0.05
    assert holm({"a": 0.03, "b": 0.04}, 0.05) == set()  # each passes alone at 0.05
    assert holm({"a": 0.001, "b": 0.03, "c": 0.03}, 0.05) == {"a"}  # 0.03 > 0.05 / 2 stops the steps


def test_a_significant_drop_under_the_minimum_effect_only_warns() -> None:
    def score(i: int, right: bool) -> PaperScore:
        return PaperScore(id=str(i), title=str(i), valid=True, gold_primary="a",
                          pred_primary="a" if right else "b", category_correct=right)  # fmt: skip

    base = [score(i, i < 1000) for i in range(2000)]
    current = [score(i, i < 960) for i in range(2000)]  # 40 worse of 2000: p ~ 1e-12, 2 points
    config = GateConfig(
        min_effect=0.05, metrics={"category_accuracy": GateRule(test="mcnemar", field="category_correct")}
    )
    (finding,) = check_gate(current, base, config)
    assert finding.level == "warn" and "minimum effect" in finding.message
    (finding,) = check_gate(current, base, config.model_copy(update={"min_effect": 0.01}))
    assert finding.level == "fail"


# --------------------------------------------------------------------------------------
# The command CI runs


def run_check(tmp_path: Path, *args: str, replay: Path | None = None) -> subprocess.CompletedProcess[str]:
    if replay is None:
        replay = tmp_path / "replay.jsonl"
        shutil.copy(ROOT / "cache/replay/gold.jsonl", replay)  # the repo's copy stays as committed
    return subprocess.run(
        [sys.executable, "-m", "summarizer.cli", "eval", "--check", "--out", str(tmp_path),
         "--replay", str(replay), "--cache-dir", str(tmp_path / "cache"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_eval_check_passes_on_the_committed_baseline(tmp_path: Path) -> None:
    # Every gold paper replays from cache/replay/ (no model, no network); a stale store fails
    # at once (next test) instead of running the model.
    proc = run_check(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gate PASSED" in proc.stdout
    # Its first line says which backend the replayed answers are for, as tag's and summarize's do.
    assert proc.stderr.splitlines()[0] == f"backend: embedded {DEFAULT_MODEL_NAME} (no key, no network)"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["replayed"] == len(BASELINE) and report["live"] == 0
    assert report["summary"]["metrics"]["evidence_verbatim"]["value"] == 1.0
    assert len(report["papers"]) == len(GOLD.read_text().splitlines())


@pytest.mark.parametrize("worse", ["below", "at"])
def test_eval_check_exit_code_follows_the_detection_size(tmp_path: Path, worse: str) -> None:
    # A baseline k papers better than the replayed run is a run k papers worse than its baseline.
    assert DETECTION is not None
    k = DETECTION - 1 if worse == "below" else DETECTION
    raw = json.loads((ROOT / "evals/baseline.json").read_text(encoding="utf-8"))
    better = flip(BASELINE, "category_accuracy", k, right=True)
    raw["papers"] = [s.model_dump(mode="json") for s in better]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(raw), encoding="utf-8")
    proc = run_check(tmp_path, "--baseline", str(baseline))
    assert "Traceback" not in proc.stderr
    if worse == "below":
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "gate PASSED" in proc.stdout
    else:
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "gate FAILED" in proc.stdout and f"McNemar: {k} worse, 0 better" in proc.stdout


def test_a_stale_replay_store_fails_at_once_with_the_refresh_command(tmp_path: Path) -> None:
    lines = (ROOT / "cache/replay/gold.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    # The store holds every recorded configuration (generated and scored labels): drop all the
    # entries of three papers.
    dropped = sorted({json.loads(line)["paper_id"] for line in lines})[:3]
    stale = tmp_path / "stale.jsonl"
    stale.write_text("".join(line for line in lines if json.loads(line)["paper_id"] not in dropped), encoding="utf-8")
    before = stale.read_bytes()
    proc = run_check(tmp_path, replay=stale)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = proc.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert f"3 of {len(BASELINE)} gold papers" in message
    assert f"summarizer eval --replay {stale}" in message and "--allow-live" in message
    assert stale.read_bytes() == before  # refused before anything ran or was written
    assert not (tmp_path / "report.json").exists()


async def test_a_check_never_calls_the_model_for_missing_entries(tmp_path: Path) -> None:
    from summarizer.errors import StaleReplayError

    settings = Settings(cache_dir=tmp_path / "c", use_cache=False)
    silent = FakeBackend()  # raises if called
    async with Extractor(settings, backend=silent) as ex:
        with pytest.raises(StaleReplayError, match=f"{len(BASELINE)} of {len(BASELINE)} gold papers"):
            await run_eval(
                settings, gold_path=GOLD, paper_files=SEEDS, replay_path=tmp_path / "empty.jsonl", extractor=ex,
                live=False,
            )  # fmt: skip
    assert silent.calls == []


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        (
            '[metrics.category_acuracy]\ntest = "mcnemar"\nfield = "category_correct"\n',
            "unknown metrics category_acuracy",
        ),
        ('[metrics.dataset_f1]\ntest = "paired_bootstrap"\n', "metrics.dataset_f1.test: Input should be"),
        ('[metrics.category_accuracy]\ntest = "mcnemar"\n', "metric category_accuracy needs `field`"),
        ('[metrics.category_accuracy]\ntest = "mcnemar"\nfield = "pred_primary"\n', "needs `field`, one of"),
    ],
)
def test_a_bad_gate_file_is_one_line(tmp_path: Path, toml: str, says: str) -> None:
    gate = tmp_path / "gate.toml"
    gate.write_text(toml, encoding="utf-8")
    proc = run_check(tmp_path, "--gate", str(gate))
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_readme_states_the_majority_class_figure_of_the_gold_set() -> None:
    label, share = majority_class_accuracy(BASELINE)
    model = HEADLINE["category_accuracy"](BASELINE)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    n = len(BASELINE)
    assert f"**{share:.3f}** ({round(share * n)}/{n})" in readme and f"always `{label}`" in readme
    assert f"{model:.3f} ({round(model * n)}/{n})" in readme


def test_the_simulation_tool_runs_and_reports_the_gates_detection_size() -> None:
    # The command GUIDELINES.md quotes must keep working; a short run, not the quoted figures.
    proc = subprocess.run(
        [sys.executable, "evals/tools/gate_power.py", "--reruns", "5", "--churn", "0.25", "--sizes", str(DETECTION)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"nothing else changed): {DETECTION}\n" in proc.stdout
    assert re.search(r"\| 0\.25 \| \d+\.\d% \(\d/5\) \| \d+\.\d% \(\d/5\) \|", proc.stdout), proc.stdout
    # At churn 0 a drop of the detection size is always caught.
    assert re.search(rf"\| {DETECTION} \([\d.]+%\) \| 100% \|", proc.stdout), proc.stdout
