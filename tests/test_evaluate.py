from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from summarizer.evalreport import render_markdown
from summarizer.evaluate import run_eval
from summarizer.extract import Extractor, split_sentences
from summarizer.fakes import FakeBackend, names_of, valid_answer
from summarizer.gate import GateConfig, GateRule, changed_papers, check_gate, load_gate_config, mcnemar_p
from summarizer.schemas import normalise_ws, paper_id
from summarizer.scoring import GoldPaper, PaperScore, bootstrap, load_gold, match_one_to_one, method_scores
from summarizer.settings import Settings
from summarizer.sources import read_inputs

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "evals/gold.jsonl"
SEEDS = sorted((ROOT / "examples/seeds").glob("*.txt"))


def oracle(gold: list[GoldPaper]) -> Any:
    """A fake model that answers with the gold labels: the scorer must give it full marks."""
    by_id = {g.id: g for g in gold}
    abstracts = {p.id: p.abstract for p in read_inputs(SEEDS)}

    def sentence_of(sentences: list[str], quote: str) -> int:
        q = normalise_ws(quote)
        for i, s in enumerate(sentences, 1):
            if q in s or s in q:
                return i
        joined = " ".join(sentences)
        start = joined.find(q)
        offset = 0
        for i, s in enumerate(sentences, 1):
            offset += len(s) + 1
            if start < offset:
                return i
        return 1

    def closest(name: str | None, candidates: list[str]) -> str | None:
        # The schema only admits the abstract's candidate names: the oracle picks the one
        # that matches its label, as a perfect model would.
        if name is None:
            return None
        return next((c for c in candidates if method_scores(name, c)[1]), None)

    def answer(messages: list[dict[str, str]]) -> dict[str, Any]:
        title = messages[-1]["content"].split("Title: ", 1)[1].split("\n", 1)[0]
        g = by_id[paper_id(title)]
        sentences = split_sentences(abstracts[g.id])
        candidates = names_of(messages)
        datasets = [(closest(d.name, candidates), d.role) for d in g.datasets]
        cited = [(sentence_of(sentences, c.evidence), c) for c in g.claims]
        claims = [(n, c) for n, c in cited if n > len(sentences) // 3]  # the schema's citable range
        data = valid_answer(messages, category=g.primary)
        data.update(
            contribution_type=g.contribution_type,
            method_name=closest(g.method, candidates),
            datasets=[{"name": name, "role": role} for name, role in datasets if name is not None],
            claims=[{"sentence": n, "statement": c.statement[:200]} for n, c in claims]
            or valid_answer(messages)["claims"],
            secondary_categories=g.secondary,
        )
        return data

    return answer


async def test_gold_set_is_complete_and_the_oracle_scores_full_marks(tmp_path: Path) -> None:
    gold = load_gold(GOLD)
    assert len(gold) >= 60
    assert len({g.id for g in gold}) == len(gold)
    backend = FakeBackend(responder=oracle(gold))
    ex = Extractor(Settings(cache_dir=tmp_path / "c"), backend=backend)
    run = await run_eval(Settings(), gold_path=GOLD, paper_files=SEEDS, replay_path=None, extractor=ex)
    await ex.aclose()
    m = run.summary["metrics"]
    for name in ("category_accuracy", "category_macro_f1", "contribution_accuracy"):
        assert m[name]["value"] == 1.0, name
    # Names outside the abstract's candidate list cannot be chosen: a few gold names are not in it.
    assert m["method_fuzzy"]["value"] >= 0.95 and m["dataset_f1"]["value"] >= 0.85
    assert m["claim_recall"]["value"] >= 0.9  # gold claims in an abstract's first third cannot be cited
    assert m["evidence_verbatim"]["value"] == 1.0 and m["schema_valid"]["value"] == 1.0


async def test_replay_store_replays_without_calling_the_model(tmp_path: Path) -> None:
    gold = load_gold(GOLD)
    replay = tmp_path / "replay.jsonl"
    backend = FakeBackend(responder=oracle(gold))
    settings = Settings(cache_dir=tmp_path / "c", use_cache=False)
    async with Extractor(settings, backend=backend) as ex:
        first = await run_eval(settings, gold_path=GOLD, paper_files=SEEDS, replay_path=replay, extractor=ex)
    assert first.live == len(gold) and len(backend.calls) == len(gold)
    lines = replay.read_text().splitlines()
    assert len(lines) == len(gold)
    assert [json.loads(x)["paper_id"] for x in lines] == sorted(g.id for g in gold)
    silent = FakeBackend()  # raises if called
    async with Extractor(settings, backend=silent) as ex:
        second = await run_eval(settings, gold_path=GOLD, paper_files=SEEDS, replay_path=replay, extractor=ex)
    assert second.replayed == len(gold) and silent.calls == []
    assert second.summary["metrics"] == first.summary["metrics"]


async def test_a_recording_keeps_each_finished_paper_on_disk_as_it_goes(tmp_path: Path) -> None:
    # A live recording of the gold set takes most of an hour on the embedded model; stopped by a
    # kill (no `finally` runs), the store on disk must already hold every paper finished.
    gold = load_gold(GOLD)
    replay = tmp_path / "replay.jsonl"
    answer = oracle(gold)
    on_disk: list[int] = []

    def responder(messages: list[dict[str, str]]) -> dict[str, Any]:
        on_disk.append(len(replay.read_text().splitlines()) if replay.exists() else 0)
        return answer(messages)  # type: ignore[no-any-return]

    settings = Settings(cache_dir=tmp_path / "c", use_cache=False, concurrency=1)
    async with Extractor(settings, backend=FakeBackend(responder=responder)) as ex:
        await run_eval(settings, gold_path=GOLD, paper_files=SEEDS, replay_path=replay, extractor=ex)
    assert on_disk[:5] == [0, 1, 2, 3, 4]


async def test_a_worse_model_fails_the_gate_and_an_equal_one_passes(tmp_path: Path) -> None:
    gold = load_gold(GOLD)
    settings = Settings(cache_dir=tmp_path / "c", use_cache=False)
    async with Extractor(settings, backend=FakeBackend(responder=oracle(gold))) as ex:
        baseline = await run_eval(settings, gold_path=GOLD, paper_files=SEEDS, replay_path=None, extractor=ex)
    # "Deliberately worsened": a model that puts everything in the majority class.
    worse = FakeBackend(responder=lambda m: valid_answer(m, category="learning_from_feedback"))
    async with Extractor(settings, backend=worse) as ex:
        current = await run_eval(settings, gold_path=GOLD, paper_files=SEEDS, replay_path=None, extractor=ex)
    config = load_gate_config(ROOT / "evals/gate.toml")
    findings = {f.metric: f for f in check_gate(current.papers, baseline.papers, config)}
    assert findings["category_accuracy"].level == "fail"
    assert "McNemar" in findings["category_accuracy"].message
    assert findings["dataset_f1"].level == "fail"
    # An equal model under another configuration (one request at a time, through the disk
    # cache, papers in reverse order) is a separate run that must pass, not the same object.
    other = Settings(cache_dir=tmp_path / "other", use_cache=True, concurrency=1)
    async with Extractor(other, backend=FakeBackend(responder=oracle(gold))) as ex:
        again = await run_eval(other, gold_path=GOLD, paper_files=SEEDS[::-1], replay_path=None, extractor=ex)
    assert again.papers is not baseline.papers and again.live == len(gold)
    assert all(f.level == "ok" for f in check_gate(again.papers, baseline.papers, config))
    report = render_markdown(
        current, findings=list(findings.values()), changes=changed_papers(current.papers, baseline.papers)
    )
    assert "| category_accuracy | **fail**" in report
    assert "Papers that changed versus the baseline" in report


def score(i: int, correct: bool) -> PaperScore:
    return PaperScore(id=str(i), title=f"p{i}", valid=True, gold_primary="a", pred_primary="a" if correct else "b",
                      category_correct=correct)  # fmt: skip


def test_small_noisy_drops_only_warn() -> None:
    base = [score(i, i < 40) for i in range(60)]
    cur = [score(i, i < 38) for i in range(60)]  # 2 papers worse: not significant
    config = GateConfig(metrics={"category_accuracy": GateRule(test="mcnemar", field="category_correct")})
    (finding,) = check_gate(cur, base, config)
    assert finding.level == "warn"
    cur = [score(i, i < 30) for i in range(60)]  # 10 worse, 0 better: significant
    (finding,) = check_gate(cur, base, config)
    assert finding.level == "fail"


def test_mcnemar_exact_values() -> None:
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(6, 0) == pytest.approx(0.03125)
    assert mcnemar_p(5, 0) == pytest.approx(0.0625)
    assert mcnemar_p(3, 3) == 1.0


def test_bootstrap_interval_brackets_the_value() -> None:
    scores = [score(i, i % 3 != 0) for i in range(60)]
    interval = bootstrap(scores, lambda s: sum(x.category_correct for x in s) / len(s))
    assert interval.low < interval.value < interval.high
    assert interval.value == pytest.approx(40 / 60)


def test_name_matching() -> None:
    assert method_scores(None, None) == (True, True)
    assert method_scores("DeAL", None) == (False, False)
    assert method_scores("Decoding-time Alignment of LLMs (DeAL)", "DeAL") == (False, True)
    assert method_scores("CLPD", "clpd") == (True, True)
    assert match_one_to_one(["AlpacaEval 2.0", "MATH500"], ["alpacaeval 2.0", "Arena-Hard", "MATH 500"]) == 2
