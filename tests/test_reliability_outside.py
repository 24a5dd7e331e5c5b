"""Defects a hostile outside test found (issue 14), one regression test or more per item.

Each test failed before its fix. Runs go through the real path where the defect lived: the
CLI (typer's runner), `run_tag` against `ScriptedServer` on loopback, the export functions.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from summarizer.batch import run_tag
from summarizer.cli import app
from summarizer.errors import ServiceError
from summarizer.export import FAILURES, MANIFEST, RECORDS
from summarizer.faultrun import audit_run, count_lines, make_inputs, run_env, tag_command
from summarizer.settings import PROJECT_ROOT, Settings
from summarizer.testserver import ScriptedServer


def one_line(output: str) -> str:
    """The output, asserted to be exactly one line with no traceback."""
    assert "Traceback" not in output, output
    text = output.strip()
    assert text and "\n" not in text, output
    return text


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


# --------------------------------------------------------------------------------------
# Item 4: a wrong key or a dead server failed paper by paper (200 failures, exit 4; 31 s each)


def settings_for(base_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backend": "openai", "base_url": base_url, "model": "scripted", "cache_dir": tmp_path / "cache",
        "timeout_s": 3.0, "max_retries": 2, "retry_max_wait_s": 0.02, "max_reasks": 1, "concurrency": 1,
        **overrides,
    }  # fmt: skip
    return Settings(**values)


def manifest_of(outdir: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
    return value


@pytest.mark.parametrize("code", [401, 403, 404])
async def test_a_refused_key_stops_the_run_at_once_and_the_same_command_resumes(tmp_path: Path, code: int) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 20)
    out = tmp_path / "out"
    with ScriptedServer(script=[("ok",)] * 5 + [("status", code)] * 50) as server:
        s = settings_for(server.base_url, tmp_path)
        with pytest.raises(ServiceError) as stopped:
            await run_tag(tmp_path / "papers.jsonl", out, s, export=False)
        sent = len(server.requests)
    assert sent == 6  # five answers, one refusal, and not one request more
    assert f"HTTP {code}" in stopped.value.message and "run the same command again" in stopped.value.message
    assert count_lines(out / RECORDS) == 5 and count_lines(out / FAILURES) == 0  # no paper blamed for it
    meta = manifest_of(out)
    assert meta["status"] == "error" and f"HTTP {code}" in meta["stop_reason"]
    with ScriptedServer() as server:
        summary = await run_tag(tmp_path / "papers.jsonl", out, settings_for(server.base_url, tmp_path))
    assert (summary.status, summary.skipped, summary.done, summary.failed) == ("completed", 5, 15, 0)
    audit = audit_run(out, papers)
    assert audit.clean and audit.records == 20, audit.problems()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("concurrency", [1, 16])
async def test_a_dead_server_stops_the_run_within_seconds(tmp_path: Path, concurrency: int) -> None:
    make_inputs(tmp_path / "papers.jsonl", 200)
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    # The default retry schedule (1 s doubling to 60 s, 6 attempts): 31 s per paper before.
    s = settings_for(base_url, tmp_path, max_retries=5, retry_max_wait_s=60.0, concurrency=concurrency)
    started = time.monotonic()
    with pytest.raises(ServiceError) as stopped:
        await run_tag(tmp_path / "papers.jsonl", tmp_path / "out", s, export=False)
    elapsed = time.monotonic() - started
    assert "cannot reach the server" in stopped.value.message and base_url in stopped.value.message
    assert elapsed < 15.0, elapsed
    assert count_lines(tmp_path / "out" / FAILURES) == 0
    assert manifest_of(tmp_path / "out")["status"] == "error"


def test_the_cli_says_why_in_one_line_and_exits_1(tmp_path: Path) -> None:
    make_inputs(tmp_path / "papers.jsonl", 30)
    with ScriptedServer(script=[("status", 401)] * 50) as server:
        command = tag_command(tmp_path / "papers.jsonl", tmp_path / "out", server.base_url, tmp_path / "cache")
        env = run_env(timeout_s=3.0, max_retries=2, retry_max_wait_s=0.02, api_key="sk-SENTINEL-x9")
        proc = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
        sent = len(server.requests)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert sent <= 8  # the requests in flight when the first refusal came back (default concurrency)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.rstrip("\n").endswith(errors[0])
    assert "rejected the API key (HTTP 401)" in errors[0] and "sk-SENTINEL" not in proc.stderr + proc.stdout


# --------------------------------------------------------------------------------------
# Item 5: 600 s per request times 6 attempts was an hour per paper


def test_request_timeouts_fit_the_backend() -> None:
    from summarizer.llm import OpenAIBackend

    remote = Settings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m")
    embedded = Settings(backend="embedded")
    assert (remote.request_timeout_s, remote.resolved_paper_deadline_s) == (120.0, 600.0)
    assert (embedded.request_timeout_s, embedded.resolved_paper_deadline_s) == (300.0, 900.0)
    backend = OpenAIBackend(remote)
    backend._ensure_client()
    assert backend._client is not None and backend._client.timeout == 120.0  # what the client really uses
    assert Settings(backend="openai", base_url="http://h/v1", timeout_s=7, paper_deadline_s=9).request_timeout_s == 7


async def test_a_paper_that_keeps_hanging_fails_at_its_deadline(tmp_path: Path) -> None:
    from summarizer.extract import Extractor
    from summarizer.schemas import Failure
    from summarizer.sources import read_inputs

    make_inputs(tmp_path / "papers.jsonl", 1)
    (paper,) = read_inputs([tmp_path / "papers.jsonl"])
    with ScriptedServer(script=[("hang", 30.0)] * 20) as server:
        s = settings_for(server.base_url, tmp_path, timeout_s=1.0, paper_deadline_s=2.5, max_retries=5)
        started = time.monotonic()
        async with Extractor(s) as extractor:
            outcome = await extractor.extract_or_failure(paper)
        elapsed = time.monotonic() - started
        sent = len(server.requests)
    assert isinstance(outcome, Failure) and "per-paper deadline of 2.5s" in outcome.reason, outcome
    assert outcome.attempts == sent >= 2
    assert 2.5 <= elapsed < 5.0  # six hung attempts of 1 s each, plus waits, would be well past it


# --------------------------------------------------------------------------------------
# Item 6: `summarizer eval` on another backend wiped the committed store's embedded answers


async def test_eval_on_another_backend_keeps_the_committed_replay_entries(tmp_path: Path) -> None:
    import os
    import shutil

    from summarizer.evaluate import load_gold, run_eval
    from summarizer.extract import Extractor
    from summarizer.fakes import FakeBackend, valid_answer

    committed = PROJECT_ROOT / "cache" / "replay" / "gold.jsonl"
    replay = tmp_path / "gold.jsonl"
    shutil.copyfile(committed, replay)
    before = set(replay.read_text(encoding="utf-8").splitlines())
    gold_path = tmp_path / "gold.jsonl.subset"
    gold_path.write_text("".join(PROJECT_ROOT.joinpath("evals/gold.jsonl").open().readlines()[:3]), encoding="utf-8")
    seeds = sorted((PROJECT_ROOT / "examples" / "seeds").glob("*.txt"))
    settings = Settings(cache_dir=tmp_path / "cache", use_cache=False)
    backend = FakeBackend(responder=valid_answer)
    async with Extractor(settings, backend=backend) as ex:
        run = await run_eval(settings, gold_path=gold_path, paper_files=seeds, replay_path=replay, extractor=ex)
    assert run.live == 3 and len(backend.calls) == 3  # the fake's keys are not the embedded model's
    after = set(replay.read_text(encoding="utf-8").splitlines())
    assert before <= after, f"{len(before - after)} committed entries dropped"
    assert len(after - before) == 3
    # A run that changes nothing does not rewrite the file.
    stamp = os.stat(replay).st_mtime_ns, os.stat(replay).st_ino
    silent = FakeBackend()  # raises if called
    async with Extractor(settings, backend=silent) as ex:
        again = await run_eval(settings, gold_path=gold_path, paper_files=seeds, replay_path=replay, extractor=ex)
    assert again.replayed == 3 and silent.calls == []
    assert (os.stat(replay).st_mtime_ns, os.stat(replay).st_ino) == stamp
    assert len(load_gold(gold_path)) == 3


def test_a_replay_store_prunes_only_its_own_models_stale_entries(tmp_path: Path) -> None:
    from summarizer.replay import ReplayStore
    from summarizer.schemas import Failure

    def failure(pid: str) -> Failure:
        return Failure(paper_id=pid, title=pid, error="ExtractionFailed", reason="r", finished_at="t")

    store = ReplayStore()
    store.put("a-old", "p1", failure("p1"), model="A")
    store.put("a-new", "p1", failure("p1"), model="A")
    store.put("b-old", "p1", failure("p1"), model="B")
    path = tmp_path / "replay.jsonl"
    assert store.save(path, keep={"a-new"}, model="A")
    assert {json.loads(line)["key"] for line in path.read_text().splitlines()} == {"a-new", "b-old"}
    with pytest.raises(ValueError):
        store.save(path, keep={"a-new"})  # pruning without saying whose entries: refused


# --------------------------------------------------------------------------------------
# Item 9: a bad SUMMARIZER_* value or option value printed a 45-line traceback


@pytest.mark.parametrize(
    ("env", "args", "needles"),
    [
        (
            {"SUMMARIZER_TEMPERATURE": "abc"},
            ["tag", "p.jsonl", "-o", "out"],
            ["SUMMARIZER_TEMPERATURE='abc'", "number"],
        ),
        (
            {"SUMMARIZER_BACKEND": "Embedded"},
            ["cache", "stats"],
            ["SUMMARIZER_BACKEND", "'auto', 'embedded' or 'openai'"],
        ),
        ({"SUMMARIZER_TOP_P": "5"}, ["eval"], ["SUMMARIZER_TOP_P='5'", "less than or equal to 1"]),
        (
            {"SUMMARIZER_CONCURRENCY": "0"},
            ["summarize", "--title", "T", "--abstract", "A."],
            ["SUMMARIZER_CONCURRENCY"],
        ),
        ({}, ["tag", "p.jsonl", "-o", "out", "--max-cost", "-1"], ["--max-cost=-1.0", "greater than 0"]),
    ],
    ids=["env-float", "env-choice", "env-range-eval", "env-summarize", "option-range"],
)
def test_a_bad_setting_is_one_line_naming_it_and_what_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], args: list[str], needles: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    line = one_line(result.output)
    assert line.startswith("error: invalid setting: ")
    for needle in needles:
        assert needle in line, line


def test_backend_option_is_a_typed_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # Any case is the same backend: this reaches the input check (exit 2, one line), not a traceback.
    accepted = CliRunner().invoke(app, ["tag", "missing.jsonl", "-o", "out", "--backend", "Embedded"])
    assert accepted.exit_code == 2 and "file not found" in one_line(accepted.output)
    refused = CliRunner().invoke(app, ["tag", "missing.jsonl", "-o", "out", "--backend", "llama"])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "'auto'" in refused.output and "'embedded'" in refused.output and "'openai'" in refused.output


def test_load_settings_never_echoes_a_key_or_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from summarizer.errors import ConfigError
    from summarizer.settings import load_settings

    monkeypatch.setenv("SUMMARIZER_MAX_RETRIES", "many")
    with pytest.raises(ConfigError) as bad:
        load_settings({"api_key": "sk-SENTINEL-abc", "base_url": "http://h/v1"}, names={"api_key": "--key"})
    assert bad.value.message.startswith("invalid setting: SUMMARIZER_MAX_RETRIES='many'")
    assert "SENTINEL" not in bad.value.message


# --------------------------------------------------------------------------------------
# Item 8: terminal escape sequences in model output reached the terminal, digest.md and records.csv

ESCAPES = [
    "\x1b[2J\x1b[H",  # clear the screen
    "\x1b]8;;http://e.vil/\x1b\\click here\x1b]8;;\x1b\\",  # an OSC 8 link
    "\x1b[31;1m",  # a colour
    "\x1b]0;window title\x07",  # a window title
    "\x9b2J",  # clear screen as an 8-bit control
    "\r\x08\x07",  # carriage return, backspace, bell
    "\u202e",  # right-to-left override
]
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def escaping_responder(request: dict[str, Any]) -> dict[str, Any]:
    from summarizer.testserver import default_responder

    answer = default_responder(request)
    payload = "".join(ESCAPES)
    answer["summary"] = f"A summary {payload} ends here."
    answer["method_description"] = f"Does {payload} things."
    answer["category_reasoning"] = f"Because {payload}."
    answer["claims"][0]["statement"] = f"It {payload} works."
    return answer


def test_escape_sequences_from_the_model_are_stored_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from summarizer.batch import run_tag_sync

    make_inputs(tmp_path / "papers.jsonl", 3)
    with ScriptedServer(responder=escaping_responder) as server:
        summary = run_tag_sync(tmp_path / "papers.jsonl", tmp_path / "out", settings_for(server.base_url, tmp_path))
        monkeypatch.chdir(tmp_path)
        paper = ["--title", "A paper", "--abstract", "We study a thing. It works well."]
        where = ["--backend", "openai", "--base-url", server.base_url, "--model", "scripted", "--no-cache"]
        printed = CliRunner().invoke(app, ["summarize", *paper, *where])
    assert summary.done == 3 and printed.exit_code == 0, printed.output
    assert "click here" in printed.output and "ends here" in printed.output  # the text stays, the controls go
    for name in ("records.jsonl", "records.csv", "digest.md"):
        text = (tmp_path / "out" / name).read_text(encoding="utf-8")
        assert "ends here" in text
        assert not CONTROL.search(text.replace("\n", "")), (name, CONTROL.findall(text))
        assert "\\u001b" not in text and "\\u009b" not in text and "e.vil" not in text, name
    assert not CONTROL.search(printed.output.replace("\n", "")), repr(printed.output)


def test_strip_controls_removes_whole_sequences() -> None:
    from summarizer.schemas import strip_controls

    assert strip_controls("A\x1b[2Jb") == "Ab"  # not "A[2Jb"
    assert strip_controls("x \x1b]8;;http://e.vil\x1b\\link\x1b]8;;\x1b\\ y") == "x link y"
    assert strip_controls("a\rb\tc\nd") == "a b\tc\nd"  # tab and newline are text
    assert strip_controls("plain text, 日本語") == "plain text, 日本語"


# --------------------------------------------------------------------------------------
# Item 14: a key in the base URL's query string or path passed the credential check

SECRET = "SENTINEL0key0a1b2c3d4e5f6a7b8c9d0e1f2"


@pytest.mark.parametrize(
    "base_url",
    [
        f"https://gw.example/v1?api_key={SECRET}",
        f"https://gw.example/v1?key={SECRET}&x=1",
        f"https://gw.example/v1#{SECRET}",
        f"https://gw.example/sk-proj-{SECRET}/v1",
        f"https://gw.example/key/{SECRET}/v1",
        f"https://gw.example/v1/hf_{SECRET}",
    ],
    ids=["query-api_key", "query-key", "fragment", "path-sk", "path-token", "path-hf"],
)
def test_a_key_anywhere_in_the_base_url_is_refused_without_echoing_it(tmp_path: Path, base_url: str) -> None:
    from summarizer.errors import ConfigError
    from summarizer.extract import Extractor

    with pytest.raises(ConfigError) as refused:
        Extractor(Settings(base_url=base_url, backend="openai", model="m", cache_dir=tmp_path))
    assert "credentials" in refused.value.message
    assert SECRET not in str(refused.value) + repr(refused.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8000/v1",
        "https://api.openai.com/v1",
        "https://openrouter.ai/api/v1",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "https://res.openai.azure.com/openai/deployments/gpt-4o-mini-2024-07-18",
    ],
)
def test_ordinary_base_urls_pass_the_credential_check(base_url: str) -> None:
    from summarizer.settings import url_credentials

    assert url_credentials(base_url) is None


# --------------------------------------------------------------------------------------
# Item 15: instructor's own log lines reached stderr with --quiet and --log-format jsonl


@pytest.mark.parametrize("display", [["--quiet"], ["--log-format", "jsonl"]], ids=["quiet", "jsonl"])
def test_quiet_and_jsonl_runs_print_nothing_of_instructors_own(tmp_path: Path, display: list[str]) -> None:
    make_inputs(tmp_path / "papers.jsonl", 3)
    with ScriptedServer(script=[("bad_schema",)] * 6 + [("status", 503)] * 6) as server:
        command = tag_command(tmp_path / "papers.jsonl", tmp_path / "out", server.base_url, tmp_path / "c", *display)
        env = run_env(timeout_s=3.0, max_retries=1, retry_max_wait_s=0.02, max_reasks=1, concurrency=1)
        proc = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr[-2000:]  # papers failed: instructor had errors to log
    assert proc.stderr == "", proc.stderr[-2000:]
    if "jsonl" in display:
        assert all(json.loads(line) for line in proc.stdout.splitlines())


# --------------------------------------------------------------------------------------
# Item 17: `--concurrency 200000` on 2 papers made 200,000 worker tasks


async def test_workers_are_bounded_by_the_work(tmp_path: Path) -> None:
    import asyncio

    from summarizer.fakes import FakeBackend, valid_answer

    tasks_seen: list[int] = []

    def responder(messages: list[dict[str, str]]) -> dict[str, Any]:
        tasks_seen.append(len(asyncio.all_tasks()))
        return valid_answer(messages)

    make_inputs(tmp_path / "papers.jsonl", 2)
    settings = Settings(cache_dir=tmp_path / "cache", use_cache=False, concurrency=20_000)
    summary = await run_tag(
        tmp_path / "papers.jsonl", tmp_path / "out", settings, backend=FakeBackend(responder=responder), export=False
    )
    assert summary.done == 2 and len(tasks_seen) == 2
    assert max(tasks_seen) <= 4, tasks_seen  # this test's own task and one worker per paper (+1 to spare)


# --------------------------------------------------------------------------------------
# Item 11: cache entries and records.jsonl lines were trusted unchecked


async def test_a_tampered_cache_entry_is_a_miss(tmp_path: Path) -> None:
    from summarizer.cache import ResponseCache
    from summarizer.extract import Extractor
    from summarizer.sources import read_inputs

    papers = make_inputs(tmp_path / "papers.jsonl", 6)
    with ScriptedServer() as server:
        s = settings_for(server.base_url, tmp_path, concurrency=4)
        await run_tag(tmp_path / "papers.jsonl", tmp_path / "first", s, export=False)
        sent = len(server.requests)
        (first, second, third) = read_inputs([tmp_path / "papers.jsonl"])[:3]
        async with Extractor(s) as ex:
            keys = [ex.key_for(p) for p in (first, second, third)]
        with ResponseCache(s.cache_dir) as cache:
            entry = cache.get(keys[0])
            assert entry is not None
            entry["record"]["category"]["primary"] = "made_up_category"
            cache.set(keys[0], entry)
            entry = cache.get(keys[1])
            assert entry is not None
            entry["record"]["claims"][0]["evidence"] = "A sentence that no abstract holds."
            cache.set(keys[1], entry)
            entry = cache.get(keys[2])
            assert entry is not None
            cache.set(keys[2], {"record": {"paper_id": third.id}})
        summary = await run_tag(tmp_path / "papers.jsonl", tmp_path / "second", s, export=True)
        resent = len(server.requests) - sent
    assert (summary.done, summary.cached, resent) == (6, 3, 3)  # the three tampered entries were asked for again
    audit = audit_run(tmp_path / "second", papers)
    assert audit.clean and audit.records == 6, audit.problems()
    exported = (tmp_path / "second" / "records.csv").read_text(encoding="utf-8")
    assert "made_up_category" not in exported and "no abstract holds" not in exported


async def test_a_stub_or_tampered_line_in_records_jsonl_is_redone_on_resume(tmp_path: Path) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 4)
    out = tmp_path / "out"
    with ScriptedServer() as server:
        s = settings_for(server.base_url, tmp_path, use_cache=False)
        await run_tag(tmp_path / "papers.jsonl", out, s, export=False)
        lines = (out / RECORDS).read_text(encoding="utf-8").splitlines()
        stub = json.dumps({"record": {"paper_id": json.loads(lines[0])["record"]["paper_id"]}})
        bad = json.loads(lines[1])
        bad["record"]["category"]["primary"] = "made_up_category"
        (out / RECORDS).write_text("\n".join([stub, json.dumps(bad), *lines[2:]]) + "\n", encoding="utf-8")
        summary = await run_tag(tmp_path / "papers.jsonl", out, s)
    assert (summary.skipped, summary.done) == (2, 2)  # the stub and the tampered record were done again
    audit = audit_run(out, papers)
    assert audit.clean and audit.records == 4, audit.problems()
    rejected = (out / "records.rejected.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rejected) == 2 and "made_up_category" in rejected[1]  # kept aside, not lost
    assert len((out / "records.csv").read_text(encoding="utf-8").splitlines()) == 5  # header and four papers


# --------------------------------------------------------------------------------------
# Item 12: `summarize` sent binary data or a CSV on standard input to the model

PIPED = {
    "binary": (bytes(range(256)) * 8, "binary data"),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
    "csv": (b"title,abstract\nA paper,We study a thing. It works.\nB paper,We study more.\n", "a CSV table"),
    "jsonl": (b'{"title": "A", "abstract": "We study."}\n{"title": "B", "abstract": "We do."}\n', "JSON Lines"),
    "json-array": (b'[{"title": "A", "abstract": "We study."}]', "a JSON array"),
}


@pytest.mark.parametrize("kind", list(PIPED))
def test_standard_input_is_checked_like_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    data, reason = PIPED[kind]
    monkeypatch.chdir(tmp_path)
    with ScriptedServer() as server:
        where = ["--backend", "openai", "--base-url", server.base_url, "--model", "scripted", "--no-cache"]
        result = CliRunner().invoke(app, ["summarize", *where], input=data)
        sent = len(server.requests)
    assert result.exit_code == 2 and reason in one_line(result.output), result.output
    assert sent == 0  # nothing went to the model


def test_a_paper_on_standard_input_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with ScriptedServer() as server:
        where = ["--backend", "openai", "--base-url", server.base_url, "--model", "scripted", "--no-cache"]
        text = b"A Paper About Things\nWe study a thing. It works on ThingBench.\n"
        result = CliRunner().invoke(app, ["summarize", "-", "--json", *where], input=text)
        sent = len(server.requests)
    assert result.exit_code == 0, result.output
    # The record is stdout; stderr says which backend ran (issue 15 item 4).
    assert sent == 1 and json.loads(result.stdout)["record"]["title"] == "A Paper About Things"
    assert result.stderr.startswith("backend: openai scripted at http://127.0.0.1:")


# --------------------------------------------------------------------------------------
# Item 13: a named pipe as input hung forever (the manifest re-opened it to hash it)


def test_a_named_pipe_as_input_is_read_once_and_the_run_finishes(tmp_path: Path) -> None:
    import os
    import threading

    source = tmp_path / "source.jsonl"
    make_inputs(source, 3)
    fifo = tmp_path / "papers.jsonl"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as fh:  # blocks until the run opens it for reading
            fh.write(source.read_bytes())

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with ScriptedServer() as server:
        command = tag_command(fifo, tmp_path / "out", server.base_url, tmp_path / "cache", "--quiet")
        env = run_env(timeout_s=3.0, max_retries=1, retry_max_wait_s=0.02)
        try:
            proc = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
        finally:
            if writer.is_alive():  # the run never opened it: let the writer go
                with open(fifo, "rb") as fh:
                    fh.read()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert count_lines(tmp_path / "out" / RECORDS) == 3
    (entry,) = manifest_of(tmp_path / "out")["inputs"]
    assert entry["path"] == str(fifo) and "not a regular file" in entry["error"]
