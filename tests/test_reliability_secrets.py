"""The API key never reaches a file, a log or the terminal, over a whole run with failures.

tests/test_transport.py checks one extractor's records, failures, log records and tracebacks,
and tests/test_cache_keys.py the cache key material. This runs the real commands end to end:
`summarizer tag` with faults, failures and a resume, every library logger at DEBUG (and the
openai client's own OPENAI_LOG=debug), then `export`, `report`, `cache stats` and
`summarize`, with the key given as OPENAI_API_KEY and as SUMMARIZER_API_KEY. Then every byte
written (run directory, cache directory with SQLite's own files, stdout, stderr) is searched.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from summarizer.faultrun import make_inputs, run_env, tag_command
from summarizer.settings import PROJECT_ROOT as ROOT
from summarizer.testserver import Faults, ScriptedServer

# `python -c` with this runs the CLI as `summarizer` would, with every logger at DEBUG on stderr.
DEBUG_CLI = "import logging; logging.basicConfig(level=logging.DEBUG); from summarizer.cli import main; main()"


def test_api_key_appears_in_no_file_and_no_output_of_a_whole_run(tmp_path: Path) -> None:
    keys = {name: f"sk-SENTINEL-{uuid.uuid4().hex}" for name in ("OPENAI_API_KEY", "SUMMARIZER_API_KEY")}
    papers = make_inputs(tmp_path / "papers.jsonl", 60)
    out, cache = tmp_path / "out", tmp_path / "cache"
    outputs: list[str] = []

    def run(args: list[str], key_var: str) -> subprocess.CompletedProcess[str]:
        env = run_env(timeout_s=0.5, max_retries=1, retry_max_wait_s=0.02, max_reasks=1)
        env.update({key_var: keys[key_var], "OPENAI_LOG": "debug"})
        command = [sys.executable, "-c", DEBUG_CLI, *args]
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        outputs.extend((proc.stdout, proc.stderr))
        return proc

    faults = Faults.spread(0.3, seed=4, retry_after_s=0.01, hang_s=0.8, slow_s=0.05)
    with ScriptedServer(faults=faults, script=[("status", 401)]) as server:
        tag = tag_command(tmp_path / "papers.jsonl", out, server.base_url, cache, "-c", "8", "--log-format", "jsonl")
        first = run(tag[3:], "OPENAI_API_KEY")  # the 401 stops it at once
        second = run(tag[3:], "SUMMARIZER_API_KEY")  # the resume, with the other variable
        paper = ["--title", papers[0].title, "--abstract", papers[0].abstract]
        where = ["--backend", "openai", "--base-url", server.base_url, "--model", "scripted", "--no-cache"]
        one = ["summarize", *paper, "--json", *where]
        single = run(one, "OPENAI_API_KEY")
        sent = {hit.headers.get("authorization") for hit in server.hits}
    assert first.returncode == 1 and second.returncode in (0, 4), (first.stderr[-2000:], second.stderr[-2000:])
    assert "HTTP 401" in first.stderr  # the run met an authentication error, and said so
    assert single.returncode == 0, single.stderr[-2000:]
    for command in (["export", str(out)], ["report", str(out)], ["cache", "stats", "--cache-dir", str(cache)]):
        proc = run(command, "OPENAI_API_KEY")
        assert proc.returncode == 0, proc.stderr[-2000:]
    # The keys were really in play, and DEBUG logging really was on.
    assert sent == {f"Bearer {key}" for key in keys.values()}
    assert "DEBUG" in first.stderr and "Request options" in first.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {
        "records.jsonl", "failures.jsonl", "manifest.json", "records.csv", "records.parquet", "digest.md",
        "report.html", "cache.db",
    }  # fmt: skip
    for key in keys.values():
        secret = key.encode()
        distinctive = key.removeprefix("sk-SENTINEL-")[4:-4].encode()  # catches a masked or partial copy too
        for path in written:
            data = path.read_bytes()
            assert secret not in data and distinctive not in data, path
        for text in outputs:
            assert key not in text and distinctive.decode() not in text
