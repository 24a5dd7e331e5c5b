"""The regression gate as CI runs it: the committed gold set, baseline and replay store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_eval_check_passes_on_the_committed_baseline(tmp_path: Path) -> None:
    # An unchanged prompt replays every gold paper from cache/replay/ (no model, no network);
    # a changed one runs the embedded model live and the refreshed store must be committed.
    replay = tmp_path / "replay.jsonl"
    shutil.copy(ROOT / "cache/replay/gold.jsonl", replay)  # the repo's copy stays as committed
    proc = subprocess.run(
        [sys.executable, "-m", "summarizer.cli", "eval", "--check", "--out", str(tmp_path),
         "--replay", str(replay), "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gate PASSED" in proc.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["metrics"]["evidence_verbatim"]["value"] == 1.0
    assert len(report["papers"]) == len((ROOT / "evals/gold.jsonl").read_text().splitlines())
