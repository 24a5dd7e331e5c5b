"""Defects a hostile outside test found (issue 14), one regression test or more per item.

Each test failed before its fix. Runs go through the real path where the defect lived: the
CLI (typer's runner), `run_tag` against `ScriptedServer` on loopback, the export functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from summarizer.cli import app
from summarizer.export import FAILURES, MANIFEST, RECORDS


def one_line(output: str) -> str:
    """The output, asserted to be exactly one line with no traceback."""
    assert "Traceback" not in output, output
    assert output.count("\n") == 1, output
    return output


# --------------------------------------------------------------------------------------
# Item 2: `report -o` overwrote any file, a run's records and inputs included


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A finished run: no records (the report of an empty run is enough), a manifest naming its input."""
    source = tmp_path / "papers.jsonl"
    source.write_text('{"title": "A", "abstract": "An abstract."}\n', encoding="utf-8")
    outdir = tmp_path / "run"
    outdir.mkdir()
    (outdir / RECORDS).write_text("", encoding="utf-8")
    (outdir / FAILURES).write_text("", encoding="utf-8")
    manifest: dict[str, Any] = {"status": "completed", "inputs": [{"path": str(source)}]}
    (outdir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return outdir


def report(*args: str) -> Any:
    return CliRunner().invoke(app, ["report", *args])


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("name", [RECORDS, FAILURES, MANIFEST, "../papers.jsonl"])
def test_report_never_replaces_a_run_file_or_an_input(run_dir: Path, name: str, force: bool) -> None:
    target = run_dir / name
    before = target.read_bytes()
    result = report(str(run_dir), "-o", str(target), *(["--force"] if force else []))
    assert result.exit_code == 1
    assert "refusing" in one_line(result.output) and "choose another --output" in result.output
    assert target.read_bytes() == before


def test_report_needs_force_to_replace_a_file_it_did_not_write(run_dir: Path, tmp_path: Path) -> None:
    mine = tmp_path / "notes.html"
    mine.write_text("<!doctype html><p>my own page</p>\n", encoding="utf-8")
    refused = report(str(run_dir), "-o", str(mine))
    assert refused.exit_code == 1 and "--force" in one_line(refused.output)
    assert mine.read_text(encoding="utf-8") == "<!doctype html><p>my own page</p>\n"
    forced = report(str(run_dir), "-o", str(mine), "--force")
    assert forced.exit_code == 0, forced.output
    assert "my own page" not in mine.read_text(encoding="utf-8")


def test_report_replaces_its_own_earlier_report(run_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.html"
    assert report(str(run_dir), "-o", str(target)).exit_code == 0
    assert report(str(run_dir), "-o", str(target)).exit_code == 0  # no --force: it is a report
    assert report(str(run_dir)).exit_code == 0
    assert report(str(run_dir)).exit_code == 0  # the default OUTDIR/report.html likewise


def test_report_through_a_link_to_an_input_is_refused(run_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.html"
    link.symlink_to(run_dir / RECORDS)
    result = report(str(run_dir), "-o", str(link), "--force")
    assert result.exit_code == 1 and "refusing" in one_line(result.output)
    assert link.is_symlink()


def test_eval_report_never_replaces_its_source(tmp_path: Path) -> None:
    source = tmp_path / "report.json"
    source.write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval-report", str(source), "-o", str(source), "--force"])
    assert result.exit_code == 1 and "refusing" in one_line(result.output)
    assert source.read_text(encoding="utf-8") == "{}"
