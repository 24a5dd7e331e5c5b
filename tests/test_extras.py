"""Issue 15 item 5: the base install is light. Parquet (pyarrow) and the evaluation tools
(numpy, rapidfuzz) are extras; without one, what needs it says in one line which extra to
install, and a run still writes everything else."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from pytest import MonkeyPatch
from typer.testing import CliRunner

from summarizer import DISTRIBUTION
from summarizer.batch import run_tag
from summarizer.cli import app
from summarizer.errors import MissingExtra, SummarizerError
from summarizer.export import CSV_FILE, DIGEST_FILE, PARQUET_FILE, export_run
from summarizer.extras import EXTRAS, require_extra
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.parquet_export import to_parquet
from summarizer.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seeds" / "001_3f36dc078def8be6.txt"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
runner = CliRunner()


def _block(monkeypatch: MonkeyPatch, *modules: str) -> None:
    """Make `import X` fail as it does where X is not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _names(requirements: list[str]) -> set[str]:
    return {r.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in requirements}


async def _run(tmp_path: Path) -> Path:
    outdir = tmp_path / "out"
    settings = Settings(cache_dir=tmp_path / "cache", concurrency=1)
    await run_tag([SEED], outdir, settings, backend=FakeBackend(responder=valid_answer))
    return outdir


def test_heavy_packages_are_extras_and_dev_pulls_them() -> None:
    base = _names(PROJECT["dependencies"])
    extras = PROJECT["optional-dependencies"]
    assert not base & {"pyarrow", "numpy", "rapidfuzz"}
    assert _names(extras["parquet"]) == {"pyarrow"}
    assert _names(extras["eval"]) == {"numpy", "rapidfuzz"}
    # CI installs ".[embedded,dev]": dev must bring every extra so the tests cover them.
    assert f"{DISTRIBUTION}[parquet,eval]" in extras["dev"]
    # The modules the code checks for are the ones the extras install.
    assert set(EXTRAS) <= set(extras)


def test_missing_extra_names_what_and_how(monkeypatch: MonkeyPatch) -> None:
    _block(monkeypatch, "pyarrow")
    with pytest.raises(MissingExtra) as caught:
        require_extra("parquet", "Parquet export")
    assert isinstance(caught.value, SummarizerError) and caught.value.extra == "parquet"
    assert caught.value.message == (
        "Parquet export needs the 'parquet' extra (pyarrow not installed): pip install 'paper-summarizer[parquet]'"
    )
    with pytest.raises(MissingExtra, match="parquet"):
        to_parquet([])


async def test_run_without_pyarrow_writes_the_rest_and_says_how_to_get_parquet(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    _block(monkeypatch, "pyarrow", "pyarrow.parquet")
    outdir = tmp_path / "out"
    settings = Settings(cache_dir=tmp_path / "cache", concurrency=1)
    summary = await run_tag([SEED], outdir, settings, backend=FakeBackend(responder=valid_answer))
    assert summary.failed == 0 and summary.done == summary.papers > 0
    assert set(summary.outputs) == {"csv", "md"}
    assert (outdir / CSV_FILE).is_file() and (outdir / DIGEST_FILE).is_file()
    assert not (outdir / PARQUET_FILE).exists()
    assert summary.notes == [
        "records.parquet not written: Parquet needs the 'parquet' extra (pip install 'paper-summarizer[parquet]')"
    ]


async def test_run_with_pyarrow_writes_parquet_and_no_note(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    settings = Settings(cache_dir=tmp_path / "cache", concurrency=1)
    summary = await run_tag([SEED], outdir, settings, backend=FakeBackend(responder=valid_answer))
    assert "parquet" in summary.outputs and (outdir / PARQUET_FILE).is_file()
    assert summary.notes == []


async def test_export_parquet_by_name_without_pyarrow_is_one_line(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    outdir = await _run(tmp_path)
    (outdir / PARQUET_FILE).unlink()
    (outdir / CSV_FILE).unlink()
    _block(monkeypatch, "pyarrow", "pyarrow.parquet")
    result = runner.invoke(app, ["export", str(outdir), "-f", "csv", "-f", "parquet"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # handled: no traceback
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "Parquet export needs the 'parquet' extra" in lines[0]
    assert "pip install 'paper-summarizer[parquet]'" in result.output
    # Refused before anything was written, not halfway.
    assert not (outdir / CSV_FILE).exists() and not (outdir / PARQUET_FILE).exists()


async def test_export_by_default_without_pyarrow_writes_csv_and_digest(
    tmp_path: Path, monkeypatch: MonkeyPatch
) -> None:
    outdir = await _run(tmp_path)
    (outdir / PARQUET_FILE).unlink()
    _block(monkeypatch, "pyarrow", "pyarrow.parquet")
    assert set(export_run(outdir)) == {"csv", "md"}
    result = runner.invoke(app, ["export", str(outdir)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and "paper-summarizer[parquet]" in result.output
    assert not (outdir / PARQUET_FILE).exists()


@pytest.mark.parametrize(
    ("command", "blocked"),
    [
        (["eval", "--gold", "nowhere.jsonl"], "numpy"),
        (["calibrate", "nowhere.txt"], "rapidfuzz"),
        (["eval-report", "nowhere.json"], "numpy"),
    ],
)
def test_eval_tools_without_their_extra_are_one_line(
    monkeypatch: MonkeyPatch, command: list[str], blocked: str
) -> None:
    _block(monkeypatch, blocked)
    result = runner.invoke(app, command)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert f"`summarizer {command[0]}` needs the 'eval' extra ({blocked} not installed)" in line
    assert "pip install 'paper-summarizer[eval]'" in line
