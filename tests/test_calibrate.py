"""`summarizer calibrate`: questions asked through the cache, fitted on dev, saved per model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from summarizer.calibrate import calibrate
from summarizer.calibration import load_calibrations
from summarizer.decisions import NO, YES
from summarizer.errors import InputError
from summarizer.fakes import FakeBackend
from summarizer.schemas import paper_id
from summarizer.settings import Settings

ABOUT = [
    ("Reward models that learn what people prefer", "We train reward models from human preference pairs."),
    ("Debate as scalable oversight", "Two models argue and a weaker judge decides which answer is right."),
    ("Probing a language model for deception", "We find linear directions that predict deceptive answers."),
]
OFF = [
    ("Faster sparse matrix kernels", "We speed up sparse matrix multiplication on GPUs by 2x."),
    ("A corpus of Swahili news", "We release 50,000 Swahili news articles for topic classification."),
    ("Protein folding with diffusion", "A diffusion model predicts protein structures from sequences."),
]


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    pool = tmp_path / "pool.jsonl"
    dev = tmp_path / "dev.jsonl"
    rows = [{"title": t, "abstract": a} for t, a in ABOUT + OFF]
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    labels = [
        {"id": paper_id(t), "title": t, "primary": p, "contribution_type": "new_method", "method": None}
        for (t, _), p in zip(
            ABOUT + OFF,
            ["learning_from_feedback", "scalable_oversight", "interpretability", *["not_alignment"] * 3],
            strict=True,
        )
    ]
    dev.write_text("".join(json.dumps(r) + "\n" for r in labels), encoding="utf-8")
    return pool, dev


def chooser(messages: list[dict[str, str]], options: tuple[str, ...]) -> list[tuple[str, float]]:
    # The model says Yes to everything, but more firmly to papers about the subject: only a
    # threshold fitted on the dev labels separates them (raw log-odds 0 would let all through).
    text = messages[-1]["content"]
    about = any(t in text for t, _ in ABOUT)
    if set(options) == {YES, NO}:
        return [(YES, -0.05), (NO, -3.0)] if about else [(YES, -0.4), (NO, -1.2)]
    return [(o, -1.0 - i) for i, o in enumerate(options)]


def test_calibrate_fits_the_gate_on_dev_and_reuses_cached_answers(tmp_path: Path) -> None:
    pool, dev = write_inputs(tmp_path)
    out = tmp_path / "calibration.json"
    settings = Settings(cache_dir=tmp_path / "cache")

    first = FakeBackend(chooser=chooser)
    cal = asyncio.run(calibrate(settings, pool_files=[pool], dev_path=dev, out_path=out, backend=first))
    assert 0.8 < cal.subject.threshold < 2.95
    assert cal.fitted["pool_papers"] == 6 and cal.fitted["dev_papers"] == 6
    assert cal.fitted["subject_dev_balanced_accuracy"] == 1.0
    assert load_calibrations(out).for_model("fake:fake-model") == cal
    assert len(first.calls) > 6

    second = FakeBackend(chooser=chooser)
    again = asyncio.run(calibrate(settings, pool_files=[pool], dev_path=dev, out_path=out, backend=second))
    assert second.calls == [] and again == cal


def test_gold_papers_are_refused_as_dev_papers(tmp_path: Path) -> None:
    pool, dev = write_inputs(tmp_path)
    with pytest.raises(InputError, match="also gold papers"):
        asyncio.run(
            calibrate(
                Settings(cache_dir=tmp_path / "cache"),
                pool_files=[pool],
                dev_path=dev,
                out_path=tmp_path / "c.json",
                gold_path=dev,
                backend=FakeBackend(chooser=chooser),
            )
        )


def test_cli_calibrate_reports_a_bad_dev_file_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from summarizer.cli import app

    pool, _ = write_inputs(tmp_path)
    bad = tmp_path / "dev.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    result: Any = CliRunner().invoke(app, ["calibrate", str(pool), "--dev", str(bad), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2
    assert "dev.jsonl" in result.output and "Traceback" not in result.output


def test_cli_calibrate_says_its_backend_first_once_the_inputs_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import summarizer.calibrate
    from summarizer.cli import app
    from summarizer.llm import describe_backend

    real = summarizer.calibrate.calibrate
    backend = FakeBackend(chooser=chooser)

    async def on_the_fake(settings: Settings, **kw: Any) -> Any:  # the CLI's call, answered by the fake
        return await real(settings, backend=backend, **kw)

    monkeypatch.setattr(summarizer.calibrate, "calibrate", on_the_fake)
    pool, dev = write_inputs(tmp_path)
    out = tmp_path / "cal.json"
    args = ["calibrate", str(pool), "--dev", str(dev), "--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    result: Any = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # The line tag and summarize print, naming the backend that answered.
    assert (
        result.stderr.splitlines()
        == [describe_backend(Settings(), backend).line]
        == ["backend: fake fake-model (no key, no network)"]
    )
    assert result.stdout.startswith("calibrated fake:fake-model") and out.is_file()
