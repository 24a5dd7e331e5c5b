"""The HTML reports, checked in a real browser (Debian's headless chromium).

A run directory is built from every seed file plus a hostile paper (markup in its title and
abstract) and a paper that fails, with `FakeBackend` choosing categories, contribution types
and datasets from a hash of the title so that several of each appear. The page is opened
with `#selftest&...`: its own script then works the real controls (selects, search box,
chart bars, claim buttons) and writes what it saw into `<pre id="selftest">`, which
`--dump-dom` hands back for the assertions here. Screenshots go to tests/artifacts/.

Chromium is required, never skipped: install it with `apt-get install -y chromium`.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from typer.testing import CliRunner

from summarizer.batch import run_tag
from summarizer.cli import app
from summarizer.errors import ExtractionFailed
from summarizer.evaluate import EvalRun, write_run
from summarizer.export import load_failures, load_results
from summarizer.fakes import FakeBackend, names_of, sentences_of, valid_answer
from summarizer.gate import changed_papers
from summarizer.report import render_run_report
from summarizer.schemas import Confidence, Result, normalise_ws, paper_id
from summarizer.scoring import PaperScore, summarise
from summarizer.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "examples" / "seeds").glob("*.txt"))
ARTIFACTS = ROOT / "tests" / "artifacts"
INSTALL = (
    "headless chromium is needed for the report tests and was not found on PATH. Install it with "
    "`apt-get install -y chromium` (run `apt-get update` first if the package list is stale)."
)

CATEGORIES = ["learning_from_feedback", "safety_evaluation", "interpretability", "governance", "not_alignment"]
CONTRIBUTIONS = ["new_method", "dataset_or_benchmark", "empirical_study", "survey"]
TITLE = re.compile(r"^Title: (.*)$", re.MULTILINE)

HOSTILE_TITLE = 'Zyxwv </script><script>window.__pwned="title"</script> & <b>bold</b> "quoted"'
HOSTILE_ABSTRACT = (
    "We study escaping in reports with the ZyxBench suite. "
    "Our abstract mentions <img src=x onerror=\"window.__pwned='img'\"> as plain text. "
    "A closing tag </script> must not end the data block. "
    "We show that <script>window.__pwned='abstract';document.title='PWNED'</script> stays inert text & so does &amp;. "
    "The final sentence reports that nothing ran."
)
FAILING_TITLE = "Fails on purpose <img src=x onerror=\"window.__pwned='failure'\">"


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)


def responder(messages: list[dict[str, str]]) -> dict[str, Any]:
    """A valid answer whose category, contribution and datasets vary with the title."""
    match = TITLE.search(messages[-1]["content"])
    title = match.group(1) if match else ""
    if title.startswith("Fails on purpose"):
        raise ExtractionFailed("model answered <script>window.__pwned='reason'</script> & gave up", attempts=1)
    h = _hash(title)
    answer = valid_answer(messages, category=CATEGORIES[h % len(CATEGORIES)])
    answer["contribution_type"] = CONTRIBUTIONS[(h // 7) % len(CONTRIBUTIONS)]
    names = names_of(messages, datasets_only=True)
    if names and h % 3:
        answer["datasets"] = [{"name": names[0], "role": "used"}]
    n = len(sentences_of(messages))
    first = 1 + n // 3
    if n - 1 >= first:  # two claims where the abstract allows, to highlight one of several
        answer["claims"] = [
            {"sentence": n - 1, "statement": "An earlier finding."},
            {"sentence": n, "statement": "The final finding."},
        ]
    return answer


# --------------------------------------------------------------------------------------
# Browser driving


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(INSTALL)


def browse(page: Path, profile: Path, *, fragment: str = "", size: str = "1280,2000", shot: Path | None = None) -> str:
    args = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-extensions", "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}", f"--window-size={size}",
    ]  # fmt: skip
    args.append(f"--screenshot={shot}" if shot else "--dump-dom")
    args.append(page.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    if shot:
        assert shot.is_file() and shot.stat().st_size > 10_000, f"no screenshot written: {proc.stderr[-2000:]}"
    return proc.stdout


def selftest(dom: str) -> dict[str, Any]:
    found = re.findall(r'<pre id="selftest">([^<]*)</pre>', dom)
    assert found, "the page's self-test did not run (no <pre id=selftest> in the DOM)"
    result: dict[str, Any] = json.loads(html.unescape(found[-1]))
    assert "error" not in result, result.get("error")
    return result


# --------------------------------------------------------------------------------------
# Fixtures: one run, one report, one browser pass


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report")
    extra = base / "extra.jsonl"
    with extra.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"title": HOSTILE_TITLE, "abstract": HOSTILE_ABSTRACT}) + "\n")
        fh.write(json.dumps({"title": FAILING_TITLE, "abstract": HOSTILE_ABSTRACT + " Again."}) + "\n")
    outdir = base / "run"
    settings = Settings(cache_dir=base / "cache", concurrency=4)
    summary = asyncio.run(
        run_tag([*SEEDS, extra], outdir, settings, backend=FakeBackend(responder=responder), export=False)
    )
    assert summary.failed == 1 and summary.done >= 10
    return outdir


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    result = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(run_dir / "report.html")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    return run_dir / "report.html"


@pytest.fixture(scope="module")
def results(run_dir: Path) -> list[Result]:
    return load_results(run_dir)


def expected_filters(results: list[Result]) -> dict[str, str]:
    counts = Counter(r.record.category.primary for r in results)
    category = sorted(counts, key=lambda c: (-counts[c], c))[1]  # not the largest: a filter must hide most
    datasets = Counter(normalise_ws(d.name).casefold() for r in results for d in r.record.datasets)
    return {"category": category, "dataset": min(datasets, key=lambda k: (datasets[k], k)), "q": "zyxwv"}


@pytest.fixture(scope="module")
def browser_result(report: Path, results: list[Result], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    hostile = paper_id(HOSTILE_TITLE)
    seed = next(r for r in results if len(r.record.claims) == 2 and r.record.paper_id != hostile)
    params = [*expected_filters(results).items(), ("claim", f"{hostile}:0"), ("claim", f"{seed.record.paper_id}:1")]
    profile = tmp_path_factory.mktemp("chromium")
    # A narrow window (500 px, headless chromium's smallest, below the 640 px breakpoint):
    # the checks double as a test of the responsive layout.
    dom = browse(report, profile, fragment="selftest&" + urlencode(params), size="500,1000")
    # Screenshots for people, with the first card's second claim selected (its evidence highlighted).
    first = re.findall(r'<article class="card" id="p-([0-9a-f]+)"', dom)[0]
    ARTIFACTS.mkdir(exist_ok=True)
    shown = "selftest&" + urlencode({"claim": f"{first}:1"})
    browse(report, profile, fragment=shown, shot=ARTIFACTS / "report.png")
    browse(report, profile, size="500,1400", shot=ARTIFACTS / "report-narrow.png")
    return {"dom": dom, "selftest": selftest(dom), "seed": seed.record.paper_id}


# --------------------------------------------------------------------------------------
# The run report in the browser


def test_chart_counts_match_the_records(browser_result: dict[str, Any], results: list[Result]) -> None:
    chart = browser_result["selftest"]["chart"]
    categories = Counter(r.record.category.primary for r in results)
    assert len(categories) >= 3, "the fake run should spread papers over several categories"
    assert chart["category"] == dict(categories)
    assert chart["contribution"] == dict(Counter(r.record.contribution_type for r in results))
    assert browser_result["selftest"]["cards"] == len(results)


def test_filters_hide_the_right_cards(browser_result: dict[str, Any], results: list[Result]) -> None:
    got = browser_result["selftest"]["filters"]
    wanted = expected_filters(results)
    every = {r.record.paper_id for r in results}
    by_category = {r.record.paper_id for r in results if r.record.category.primary == wanted["category"]}
    by_dataset = {
        r.record.paper_id
        for r in results
        if any(normalise_ws(d.name).casefold() == wanted["dataset"] for d in r.record.datasets)
    }
    assert got["category"]["value"] == wanted["category"] and got["category"]["control"] == "select"
    assert set(got["category"]["visible"]) == by_category != every
    assert got["category"]["status"] == f"Showing {len(by_category)} of {len(results)} papers"
    assert got["dataset"]["value"] == wanted["dataset"] and by_dataset
    assert set(got["dataset"]["visible"]) == by_dataset
    assert got["q"]["control"] == "input" and got["q"]["visible"] == [paper_id(HOSTILE_TITLE)]
    # The default contribution filter (first option) shows exactly that type.
    contribution = got["contribution"]["value"]
    assert set(got["contribution"]["visible"]) == {
        r.record.paper_id for r in results if r.record.contribution_type == contribution
    }
    # Clicking a chart bar filters too, and clicking it again shows everything.
    bars = browser_result["selftest"]["bars"]
    assert bars["value"] == wanted["category"] and bars["pressed"] == "true"
    assert set(bars["visible"]) == by_category and bars["after"] == len(results)


def test_a_claim_click_highlights_its_evidence_in_the_abstract(
    browser_result: dict[str, Any], results: list[Result]
) -> None:
    by_id = {r.record.paper_id: r for r in results}
    claims = browser_result["selftest"]["claims"]
    assert len(claims) == 2
    for claim in claims:
        pid, index = claim["spec"].rsplit(":", 1)
        evidence = normalise_ws(by_id[pid].record.claims[int(index)].evidence)
        assert claim["tag"] == "button" and claim["focused"] and claim["pressed"] == "true"
        assert not claim["outline"].startswith("none"), "a focused claim must show a visible focus ring"
        assert claim["highlighted"] == evidence
        assert claim["highlightedInAbstract"] >= 1 and claim["detailsOpen"] is True
    # The hostile paper's evidence is markup shown as text, highlighted like any other.
    assert "<script>window.__pwned='abstract'" in claims[0]["highlighted"]


def test_markup_in_paper_or_model_text_never_runs(browser_result: dict[str, Any], report: Path) -> None:
    result = browser_result["selftest"]
    assert result["pwned"] is None
    assert result["title"] != "PWNED"
    assert result["scripts"] == 2, "only the data block and the page's own script may exist"
    assert result["foreignElements"] == 0, "no <img>, <iframe>, <link> … may come from paper text"
    raw = report.read_text(encoding="utf-8")
    assert raw.count("<script") == 2 and raw.count("</script>") == 2
    assert "\\u003c/script\\u003e" in raw  # inside the JSON block
    assert "&lt;script&gt;window.__pwned=&#39;abstract&#39;" in raw  # in the card
    assert "Fails on purpose &lt;img src=x" in raw  # the failure's title, escaped
    assert "&lt;script&gt;window.__pwned=&#39;reason&#39;&lt;/script&gt; &amp; gave up" in raw


def test_the_page_is_offline_responsive_and_keyboard_usable(browser_result: dict[str, Any], report: Path) -> None:
    result = browser_result["selftest"]
    assert result["viewport"] <= 500 and result["overflowX"] is False, "horizontal scrolling in a narrow window"
    raw = report.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", raw), "an external resource"
    assert "<link" not in raw and "@import" not in raw and "url(" not in raw
    assert "default-src 'none'" in html.unescape(raw)  # the CSP; the page's own script runs by its hash
    assert ":focus-visible" in raw
    assert re.search(r'<select id="f-category"', raw) and re.search(r'<input type="search" id="f-q"', raw)


def test_failures_and_provenance_are_shown(browser_result: dict[str, Any], run_dir: Path) -> None:
    dom = browser_result["dom"]
    failures = load_failures(run_dir)
    assert [f.title for f in failures] == [FAILING_TITLE]
    assert "Failed papers (1)" in dom
    assert html.escape(FAILING_TITLE, quote=False) in dom
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "fake:fake-model" in dom
    assert manifest["settings"]["prompt_hash"][:12] in dom
    assert manifest["settings"]["taxonomy_hash"][:12] in dom


def test_missing_input_shows_quotes_alone(run_dir: Path, tmp_path: Path, results: list[Result]) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("records.jsonl", "failures.jsonl"):
        shutil.copy(run_dir / name, copy / name)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    extra = next(i for i in manifest["inputs"] if i["path"].endswith("extra.jsonl"))
    extra["path"] = str(tmp_path / "gone.jsonl")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert "gone.jsonl is missing" in result.output
    raw = (copy / "report.html").read_text(encoding="utf-8")
    assert "gone.jsonl is missing" in raw
    card = raw.split(f'id="p-{paper_id(HOSTILE_TITLE)}"', 1)[1].split("</article>", 1)[0]
    assert "Abstract unavailable (its input file is missing)" in card
    assert '<details class="abstract">' not in card
    hostile = next(r for r in results if r.record.paper_id == paper_id(HOSTILE_TITLE))
    for claim in hostile.record.claims:
        assert html.escape(claim.evidence).replace("&#x27;", "&#39;") in card
    # Papers from inputs still present keep their abstracts.
    assert raw.count('<details class="abstract">') == len(results) - 1


def test_a_scored_run_is_listed_by_p_on_topic_and_flags_show_their_reasons(
    results: list[Result], tmp_path: Path
) -> None:
    # The fake run's records given scored confidences: P(on-topic) from a hash of the id, the
    # middle band flagged, as the scored path flags uncertain papers.
    scored = []
    for r in results:
        p = (_hash(r.record.paper_id) % 1000) / 1000
        flagged = 0.3 <= p <= 0.7
        record = r.record.model_copy(update={
            "confidence": Confidence(subject=p, category=0.6), "needs_review": flagged,
            "review_reasons": [f"subject {p:.2f} is uncertain"] if flagged else [],
        })  # fmt: skip
        scored.append(r.model_copy(update={"record": record}))
    expected = [r.record.paper_id for r in sorted(scored, key=lambda r: -(r.record.confidence.subject or 0.0))]
    page = tmp_path / "report.html"
    page.write_text(render_run_report(scored), encoding="utf-8")
    dom = browse(page, tmp_path / "chromium", fragment="selftest&review=yes", size="500,1000")
    browse(page, tmp_path / "chromium", size="500,1400", shot=ARTIFACTS / "report-ranked.png")
    result = selftest(dom)
    assert re.findall(r'<article class="card" id="p-([0-9a-f]+)"', dom) == expected
    flagged = [pid for pid in expected if next(r for r in scored if r.record.paper_id == pid).record.needs_review]
    assert flagged and result["filters"]["review"]["visible"] == flagged
    assert result["overflowX"] is False, "the probability badge must not widen a narrow window"
    first = dom.split('<article class="card"')[1].split("</article>")[0]
    top = next(r for r in scored if r.record.paper_id == expected[0]).record.confidence
    assert top is not None and f">P(on-topic) {top.subject:.2f}</span>" in first
    assert dom.count('<p class="review-note">needs review: subject ') == len(flagged)


# --------------------------------------------------------------------------------------
# The eval dashboard


def _scores(flip: set[int]) -> list[PaperScore]:
    gold = ["learning_from_feedback", "safety_evaluation", "interpretability", "governance"]
    scores = []
    for i in range(16):
        g = gold[i % len(gold)]
        pred = gold[(i + 1) % len(gold)] if i in flip else g
        valid = i != 15
        scores.append(
            PaperScore(
                id=f"p{i}", title=f"Paper {i} <i>x</i>", valid=valid, gold_primary=g,
                pred_primary=pred if valid else None, category_correct=valid and pred == g,
                contribution_correct=i % 3 != 0, method_fuzzy=i % 2 == 0, datasets_tp=1 if i in flip else 2,
                error=None if valid else "ExtractionFailed: <b>no</b>",
            )
        )  # fmt: skip
    return scores


def _eval_run(scores: list[PaperScore], created: str) -> EvalRun:
    return EvalRun(
        created_at=created, model="fake:m", backend={"backend": "fake"}, prompt_hash="p" * 16,
        taxonomy_hash="t" * 16, schema_hash="s" * 16, gold_path="evals/gold.jsonl", replayed=16, live=0,
        summary=summarise(scores), papers=scores,
    )  # fmt: skip


def test_eval_report_renders_metrics_heat_map_and_changes(tmp_path: Path) -> None:
    current = _eval_run(_scores({1, 2, 5}), "2026-01-02T00:00:00+00:00")
    baseline = _eval_run(_scores({2, 9}), "2026-01-01T00:00:00+00:00")
    write_run(current, tmp_path / "report.json")
    write_run(baseline, tmp_path / "baseline.json")
    page = tmp_path / "report.html"
    args = ["eval-report", str(tmp_path / "report.json"), "-o", str(page)]
    result = CliRunner().invoke(app, [*args, "--baseline", str(tmp_path / "baseline.json")])
    assert result.exit_code == 0, result.output
    ARTIFACTS.mkdir(exist_ok=True)
    profile = tmp_path / "chromium"
    dom = browse(page, profile, size="1280,1800")
    browse(page, profile, size="1280,1800", shot=ARTIFACTS / "eval.png")
    assert "<script" not in page.read_text(encoding="utf-8")
    # Per-field table: every headline metric with its interval.
    for name, m in current.summary["metrics"].items():
        row = re.search(rf'<tr data-metric="{name}">(.*?)</tr>', dom, re.DOTALL)
        assert row, name
        assert f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" in row.group(1)
    # Heat map: one cell per (gold, predicted) pair, counts as in the run's confusion matrix.
    cell = r'<td class="cell[^"]*" style="--heat: [0-9.]+" data-gold="([^"]+)" data-pred="([^"]+)"[^>]*>(\d*)</td>'
    cells = re.findall(cell, dom)
    confusion = current.summary["confusion"]
    assert cells and len(cells) == len(confusion) * len({c for _, c, _ in cells})
    for gold, pred, count in cells:
        assert int(count or 0) == confusion[html.unescape(gold)].get(html.unescape(pred), 0)
    # Per-paper differences from the baseline.
    changes = changed_papers(current.papers, baseline.papers)
    rows = re.findall(r'<tr class="change" data-id="([^"]+)" data-field="([^"]+)"', dom)
    assert sorted(rows) == sorted((c["id"], f) for c in changes for f in c["fields"])
    assert "Paper 1 &lt;i&gt;x&lt;/i&gt;" in dom and "ExtractionFailed: &lt;b&gt;no&lt;/b&gt;" in dom


def test_a_missing_chromium_fails_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match=r"apt-get install -y chromium"):
        chromium()
