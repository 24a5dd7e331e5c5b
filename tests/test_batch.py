"""Batch runs: resume after crashes, failures, dedupe, shards, budgets, dry runs, locks, logs.

Everything runs against `FakeBackend` (in-process) or, where a real subprocess must be
killed, against `ScriptedServer` over HTTP: no model is ever started.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from summarizer.batch import Shard, price_for, run_tag
from summarizer.errors import ConfigError, ExtractionFailed, OutputError
from summarizer.export import RECORDS, record_id
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.pricing import estimate_usage
from summarizer.progress import (
    EXIT_BUDGET,
    EXIT_FAILURES,
    CacheHits,
    Event,
    JsonlSink,
    Notice,
    PaperDone,
    QuietSink,
    RunStarted,
)
from summarizer.schemas import paper_id
from summarizer.settings import Settings
from summarizer.sources import read_inputs
from summarizer.testserver import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "examples" / "seeds").glob("*.txt"))
SEED_PAPERS = read_inputs(SEEDS)


def write_jsonl(path: Path, n: int, *, prefix: str = "Study") -> list[str]:
    """n distinct papers built from the seed abstracts; returns their ids."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            seed = SEED_PAPERS[i % len(SEED_PAPERS)]
            title = f"{prefix} {i}: {seed.title}"
            fh.write(json.dumps({"title": title, "abstract": seed.abstract}) + "\n")
    return [paper_id(f"{prefix} {i}: {SEED_PAPERS[i % len(SEED_PAPERS)].title}") for i in range(n)]


def ids_in(outdir: Path, name: str = RECORDS) -> list[str]:
    text = (outdir / name).read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "a torn line was left behind"
    out = []
    for line in text.splitlines():
        value = json.loads(line)
        out.append(record_id(value) or value["paper_id"])
    return out


def settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", concurrency=kw.pop("concurrency", 4), **kw)


def fake(**kw: Any) -> FakeBackend:
    return FakeBackend(responder=valid_answer, **kw)


def manifest(outdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((outdir / "manifest.json").read_text())
    return data


# --------------------------------------------------------------------------------------
# A plain run and what it leaves


async def test_run_writes_records_failures_manifest_and_exports(tmp_path: Path) -> None:
    s = Settings(cache_dir=tmp_path / "cache", api_key="sk-test-SECRET-9876")  # type: ignore[arg-type]
    summary = await run_tag(SEEDS, tmp_path / "out", s, backend=fake())
    out = tmp_path / "out"
    assert summary.status == "completed" and summary.exit_code == 0
    assert summary.done == 77 and summary.failed == 0 and summary.cached == 0
    assert sorted(ids_in(out)) == sorted(p.id for p in SEED_PAPERS)
    assert (out / "failures.jsonl").read_text() == ""
    m = manifest(out)
    assert m["status"] == "completed" and m["finished_at"]
    assert m["counts"] == {
        "papers": 77, "done": 77, "cached": 0, "failed": 0, "skipped_already_done": 0, "not_attempted": 0,
    }  # fmt: skip
    assert [i["path"] for i in m["inputs"]] == [str(p) for p in SEEDS]
    assert all(len(i["sha256"]) == 64 for i in m["inputs"])
    assert m["settings"]["sampling"]["temperature"] == 0.0 and m["settings"]["prompt_hash"]
    assert m["tokens"]["total_tokens"] == 77 * 150
    assert "SECRET" not in (out / "manifest.json").read_text()
    for name in ("records.csv", "records.parquet", "digest.md"):
        assert (out / name).stat().st_size > 0


async def test_records_carry_full_provenance(tmp_path: Path) -> None:
    await run_tag(SEEDS[:1], tmp_path / "out", settings(tmp_path), backend=fake(), export=False)
    line = json.loads((tmp_path / "out" / RECORDS).read_text().splitlines()[0])
    prov = line["provenance"]
    for key in ("model", "prompt_hash", "taxonomy_hash", "cache_key", "usage", "latency_s", "started_at"):
        assert key in prov
    assert line["record"]["paper_id"] in {p.id for p in SEED_PAPERS}


async def test_cached_rerun_serves_raw_cache_and_marks_hits(tmp_path: Path) -> None:
    await run_tag(SEEDS, tmp_path / "a", settings(tmp_path), backend=fake(), export=False)
    backend, events = fake(), []
    summary = await run_tag(SEEDS, tmp_path / "b", settings(tmp_path), backend=backend, sink=events.append)
    assert backend.calls == [] and summary.cached == summary.done == 77
    assert summary.usage.total_tokens == 0
    assert sum(e.count for e in events if isinstance(e, CacheHits)) == 77
    assert not any(isinstance(e, PaperDone) for e in events)  # hits come in chunks, not per paper
    a = {json.loads(x)["record"]["paper_id"]: json.loads(x) for x in (tmp_path / "a" / RECORDS).open()}
    for line in (tmp_path / "b" / RECORDS).open():
        value = json.loads(line)
        assert value["provenance"]["cache_hit"] is True
        assert value["record"] == a[value["record"]["paper_id"]]["record"]


# --------------------------------------------------------------------------------------
# Resume


async def test_resume_after_torn_last_line_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    out, s = tmp_path / "out", settings(tmp_path, use_cache=False)
    await run_tag(SEEDS, out, s, backend=fake(), export=False)
    text = (out / RECORDS).read_bytes()
    lines = text.splitlines(keepends=True)
    # A crash after 40 whole lines, half-way through the 41st.
    (out / RECORDS).write_bytes(b"".join(lines[:40]) + lines[40][: len(lines[40]) // 2])
    backend, events = fake(), []
    summary = await run_tag(SEEDS, out, s, backend=backend, sink=events.append, export=False)
    ids = ids_in(out)
    assert len(ids) == len(set(ids)) == 77
    assert summary.skipped == 40 and summary.done == 37 and len(backend.calls) == 37
    assert any("unfinished last line" in getattr(e, "message", "") for e in events)


async def test_unreadable_middle_line_is_dropped_and_its_paper_redone(tmp_path: Path) -> None:
    out, s = tmp_path / "out", settings(tmp_path, use_cache=False)
    await run_tag(SEEDS[:1], out, s, backend=fake(), export=False)
    lines = (out / RECORDS).read_text().splitlines(keepends=True)
    (out / RECORDS).write_text("".join(lines[:2]) + "{not json\n" + "".join(lines[3:]))
    backend = fake()
    await run_tag(SEEDS[:1], out, s, backend=backend, export=False)
    ids = ids_in(out)
    assert len(backend.calls) == 1 and len(ids) == len(set(ids)) == 6


async def test_cancelled_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    out, s = tmp_path / "out", settings(tmp_path, use_cache=False, concurrency=2)
    task = asyncio.create_task(run_tag(SEEDS, out, s, backend=fake(delay_s=0.01), export=False))
    while not (out / RECORDS).exists() or len((out / RECORDS).read_text().splitlines()) < 10:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert manifest(out)["status"] == "interrupted"
    first = len(ids_in(out))
    summary = await run_tag(SEEDS, out, s, backend=fake(), export=False)
    ids = ids_in(out)
    assert summary.skipped == first and len(ids) == len(set(ids)) == 77


def _cli(args: list[str], **kw: Any) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SUMMARIZER_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "summarizer.cli", "tag", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


def test_kill_9_of_a_real_run_then_resume(tmp_path: Path) -> None:
    inputs = tmp_path / "papers.jsonl"
    expected = write_jsonl(inputs, 40)
    out = tmp_path / "out"
    with ScriptedServer(delay_s=0.1) as server:
        args = [str(inputs), "-o", str(out), "--backend", "openai", "--base-url", server.base_url, "--model",
                "scripted", "--cache-dir", str(tmp_path / "cache"), "-c", "2", "--quiet", "--no-export"]  # fmt: skip
        proc = _cli(args)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / RECORDS).exists() and len((out / RECORDS).read_bytes().splitlines()) >= 5:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        assert manifest(out)["status"] == "running"  # nothing got to say goodbye
        with (out / RECORDS).open("ab") as fh:  # and as if the kill landed mid-write
            fh.write(b'{"provenance":{"attempts":1,"backend":"op')
        done_before = len((out / RECORDS).read_bytes().splitlines()) - 1
        proc = _cli([*args, "--log-format", "jsonl"])
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    ids = ids_in(out)
    assert sorted(ids) == sorted(expected) and len(ids) == len(set(ids))
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[0]["event"] == "backend" and events[0]["backend"] == "openai"  # every run says this first
    assert events[1]["event"] == "notice" and "unfinished last line" in events[1]["message"]
    started = next(e for e in events if e["event"] == "run_started")
    assert started["already_done"] == done_before and started["papers"] == 40
    assert events[-1]["event"] == "run_finished" and events[-1]["summary"]["status"] == "completed"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_a_real_run_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    inputs = tmp_path / "papers.jsonl"
    # Enough papers (20 s of work) that a loaded machine cannot finish the run before the signal.
    write_jsonl(inputs, 400)
    out = tmp_path / "out"
    with ScriptedServer(delay_s=0.1) as server:
        args = [str(inputs), "-o", str(out), "--backend", "openai", "--base-url", server.base_url, "--model",
                "scripted", "--cache-dir", str(tmp_path / "cache"), "-c", "2", "--quiet", "--no-export"]  # fmt: skip
        proc = _cli(args)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / RECORDS).exists() and len((out / RECORDS).read_bytes().splitlines()) >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in " ".join(stderr.split())
    m = manifest(out)
    assert m["status"] == "interrupted" and m["finished_at"]
    ids = ids_in(out)
    assert len(ids) == len(set(ids)) == m["counts"]["done"] < 400


async def test_full_disk_leaves_whole_lines_and_the_run_resumes(tmp_path: Path, monkeypatch: Any) -> None:
    import errno

    out, s = tmp_path / "out", settings(tmp_path, concurrency=1, use_cache=False)
    real_write = os.write
    state = {"writes": 0}

    def filling_up(fd: int, data: Any) -> int:
        state["writes"] += 1
        if state["writes"] == 4:  # the disk fills half-way through a record
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", filling_up)
    with pytest.raises(OutputError, match="No space left"):
        await run_tag(SEEDS[:1], out, s, backend=fake(), export=False)
    monkeypatch.setattr(os, "write", real_write)
    assert (out / RECORDS).read_bytes().endswith(b"\n")  # the half line was cut back
    assert len(ids_in(out)) == 3
    assert manifest(out)["status"] == "error" and "No space left" in manifest(out)["stop_reason"]
    await run_tag(SEEDS[:1], out, s, backend=fake(), export=False)
    ids = ids_in(out)
    assert len(ids) == len(set(ids)) == 6


async def test_failures_are_recorded_then_retried_and_cleared_on_success(tmp_path: Path) -> None:
    papers = SEED_PAPERS[:6]
    doomed = {papers[1].title, papers[4].title}

    def flaky(messages: list[dict[str, str]]) -> dict[str, Any]:
        if any(t in messages[-1]["content"] for t in doomed):
            return {"summary": "not a valid answer"}
        return valid_answer(messages)

    out, s = tmp_path / "out", settings(tmp_path)
    first = await run_tag(SEEDS[:1], out, s, backend=FakeBackend(responder=flaky), export=False)
    assert first.failed == 2 and first.done == 4 and first.exit_code == EXIT_FAILURES
    failed = [json.loads(x) for x in (out / "failures.jsonl").open()]
    assert {f["title"] for f in failed} == doomed and all(f["reason"] and f["attempts"] == 3 for f in failed)
    # The failed attempts were paid for: 3 calls each, all counted.
    assert first.usage.total_tokens == (4 + 2 * 3) * 150
    # Second run: one of the two now succeeds, the other fails again.
    doomed.discard(papers[1].title)
    backend = FakeBackend(responder=flaky)
    second = await run_tag(SEEDS[:1], out, s, backend=backend, export=False)
    assert second.skipped == 4 and second.done == 1 and second.failed == 1
    assert [json.loads(x)["title"] for x in (out / "failures.jsonl").open()] == [papers[4].title]
    # Third run: all good; failures.jsonl ends empty and every paper is in records once.
    doomed.clear()
    third = await run_tag(SEEDS[:1], out, s, backend=fake(), export=False)
    assert third.done == 1 and third.failed == 0 and third.exit_code == 0
    assert (out / "failures.jsonl").read_text() == ""
    assert sorted(ids_in(out)) == sorted(p.id for p in papers)


async def test_stale_failure_of_a_done_paper_is_reconciled_on_start(tmp_path: Path) -> None:
    # A kill between "record appended" and "failure removed" leaves both behind.
    out, s = tmp_path / "out", settings(tmp_path)
    await run_tag(SEEDS[:1], out, s, backend=fake(), export=False)
    done_id = ids_in(out)[0]
    stale = {"paper_id": done_id, "title": "x", "error": "E", "reason": "r", "finished_at": "t"}
    (out / "failures.jsonl").write_text(json.dumps(stale) + "\n" + '{"paper_id": "torn')
    await run_tag(SEEDS[:1], out, s, backend=fake(), export=False)
    assert (out / "failures.jsonl").read_text() == ""


async def test_unexpected_backend_error_costs_one_paper_not_the_run(tmp_path: Path) -> None:
    backend = FakeBackend([RuntimeError("boom")], responder=valid_answer)
    summary = await run_tag(SEEDS[:1], tmp_path / "out", settings(tmp_path, concurrency=1), backend=backend)
    assert summary.failed == 1 and summary.done == 5
    failure = json.loads((tmp_path / "out" / "failures.jsonl").read_text())
    assert failure["error"] == "RuntimeError" and failure["reason"] == "boom"


# --------------------------------------------------------------------------------------
# Inputs: dedupe, bad lines, shards


async def test_dedupe_across_inputs_and_formats(tmp_path: Path) -> None:
    page1, page2 = SEEDS[1], SEEDS[2]
    extra = tmp_path / "extra.csv"
    dup = read_inputs([page1])[0]
    extra.write_text(f'title,abstract\n"{dup.title.upper()}","{dup.abstract}"\n', encoding="utf-8")
    summary = await run_tag([page1, page2, extra], tmp_path / "out", settings(tmp_path), backend=fake())
    ids = ids_in(tmp_path / "out")
    assert summary.papers == 71 and len(ids) == len(set(ids)) == 71


async def test_bad_input_lines_are_reported_and_the_rest_still_run(tmp_path: Path) -> None:
    inputs = tmp_path / "papers.jsonl"
    write_jsonl(inputs, 3)
    with inputs.open("a") as fh:
        fh.write("{broken json\n")
        fh.write(json.dumps({"title": "No abstract here"}) + "\n")
    summary = await run_tag([inputs], tmp_path / "out", settings(tmp_path), backend=fake())
    assert summary.done == 3
    assert [(e["line"], e["path"]) for e in summary.input_errors] == [(4, str(inputs)), (5, str(inputs))]
    assert manifest(tmp_path / "out")["input_errors"] == summary.input_errors


async def test_repaired_input_is_a_warning_not_an_error_and_quiet_mode_still_says_so(tmp_path: Path) -> None:
    inputs = tmp_path / "papers.jsonl"
    write_jsonl(inputs, 2)
    with inputs.open("a") as fh:
        fh.write("{broken json\n")
        fh.write(json.dumps({"title": "Lone surrogate", "abstract": "We study \ud800 repairs. It works."}) + "\n")
    stream = io.StringIO()
    summary = await run_tag([inputs], tmp_path / "out", settings(tmp_path), backend=fake(), sink=QuietSink(stream))
    assert summary.done == 3  # the repaired paper ran
    assert [(e["line"], e["repaired"]) for e in summary.input_errors] == [(3, False), (4, True)]
    printed = stream.getvalue().splitlines()
    assert printed[0].startswith(f"input error: {inputs}:3: ")
    assert printed[1].startswith(f"input warning: {inputs}:4: ") and "surrogate" in printed[1]
    QuietSink(stream)(Notice("the cache is locked"))
    assert stream.getvalue().splitlines()[-1] == "notice: the cache is locked"


async def test_shards_partition_the_papers(tmp_path: Path) -> None:
    all_ids = {p.id for p in SEED_PAPERS}
    seen: list[set[str]] = []
    for i in (1, 2, 3):
        out = tmp_path / f"shard{i}"
        await run_tag(SEEDS, out, settings(tmp_path), shard=Shard(i, 3), backend=fake(), export=False)
        seen.append(set(ids_in(out)))
        assert all(int(pid, 16) % 3 == i - 1 for pid in seen[-1])
    assert set().union(*seen) == all_ids
    assert sum(len(s) for s in seen) == len(all_ids)  # disjoint
    assert all(seen)  # 77 papers: every shard gets some


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0", ""])
def test_bad_shard_spec_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        Shard.parse(text)


def test_shard_parse() -> None:
    assert Shard.parse("2/5") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"
    assert Shard(1, 1).owns("abc")
    assert Shard(1, 2).owns("not-hex") != Shard(2, 2).owns("not-hex")  # any id lands in exactly one shard


# --------------------------------------------------------------------------------------
# Budgets, prices, dry runs


async def test_token_budget_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    out, s = tmp_path / "out", settings(tmp_path, concurrency=2, max_total_tokens=8000)
    summary = await run_tag(SEEDS[1:2], out, s, backend=fake())
    assert summary.status == "budget_exhausted" and summary.exit_code == EXIT_BUDGET
    assert summary.done > 0 and summary.not_attempted > 0
    assert summary.done + summary.failed + summary.not_attempted == 42
    assert summary.usage.total_tokens <= 8000
    m = manifest(out)
    assert m["status"] == "budget_exhausted" and "token budget" in m["stop_reason"]
    assert (out / "digest.md").exists()  # what is done is exported
    rest = await run_tag(SEEDS[1:2], out, settings(tmp_path), backend=fake())
    ids = ids_in(out)
    assert rest.status == "completed" and len(ids) == len(set(ids)) == 42


async def test_cost_budget_uses_the_price_table_and_counts_reasks(tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[models."fake-model"]\ninput = 1000.0\noutput = 1000.0\n')  # $0.15 a call
    s = settings(tmp_path, concurrency=1, price_table_path=prices, expected_output_tokens=1)
    # Room for the biggest paper's estimate plus about 13 calls ($0.15 each) actually spent.
    ex = Extractor(s.model_copy(update={"use_cache": False}), backend=FakeBackend())
    biggest = max(estimate_usage(ex, p).total_tokens for p in read_inputs(SEEDS[1:2])) * 1000.0 / 1e6
    s = s.model_copy(update={"max_cost_usd": biggest + 2.0})
    backend = FakeBackend([{"summary": "invalid"}], responder=valid_answer)  # the first paper needs a re-ask
    summary = await run_tag(SEEDS[1:2], tmp_path / "out", s, backend=backend)
    assert summary.status == "budget_exhausted" and summary.done > 1 and summary.not_attempted > 0
    assert summary.cost_usd is not None and summary.cost_usd <= biggest + 2.0
    assert len(backend.calls) == summary.done + 1
    assert summary.usage.total_tokens == len(backend.calls) * 150  # the re-ask is in it
    assert manifest(tmp_path / "out")["cost_usd"] == pytest.approx(summary.cost_usd)


async def test_max_cost_without_a_price_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="price"):
        await run_tag(SEEDS[:1], tmp_path / "out", settings(tmp_path, max_cost_usd=1.0), backend=fake())


def test_prices_known_models_snapshots_and_local_servers(tmp_path: Path) -> None:
    s = Settings()
    price = price_for({"backend": "openai", "model": "gpt-4o-mini-2024-07-18"}, s)
    assert price is not None and (price.input_per_m, price.output_per_m) == (0.15, 0.60)
    embedded = price_for({"backend": "embedded", "model": "gguf:x"}, s)
    assert embedded is not None and embedded.input_per_m == embedded.output_per_m == 0.0
    local = price_for({"backend": "openai", "base_url": "http://localhost:1/v1", "model": "m"}, s)
    assert local is not None and local.input_per_m == local.output_per_m == 0.0
    assert price_for({"backend": "openai", "base_url": "https://api.example.com/v1", "model": "mystery"}, s) is None


async def test_dry_run_counts_cached_and_estimates_without_sending(tmp_path: Path) -> None:
    s = settings(tmp_path)
    await run_tag(SEEDS[:1], tmp_path / "warm", s, backend=fake(), export=False)  # 6 papers cached
    await run_tag(SEEDS[1:2], tmp_path / "out", s, shard=None, backend=fake(), export=False)  # 42 done here
    backend = fake()
    summary = await run_tag(SEEDS, tmp_path / "out", s, dry_run=True, backend=backend)
    plan = summary.plan
    assert plan is not None and summary.status == "dry_run" and backend.calls == []
    assert (plan.papers, plan.already_done, plan.cached) == (77, 42, 6)
    assert plan.to_send == 77 - 42 - 6
    assert plan.completion_tokens == plan.to_send * s.expected_output_tokens
    # ~chars/4 of the prompt: system prompt and worked examples (~20 kB) plus the paper.
    assert 3000 * plan.to_send < plan.prompt_tokens < 8000 * plan.to_send
    assert plan.cost_usd is None  # the fake model has no price
    assert not (tmp_path / "new").exists()
    fresh = await run_tag(SEEDS, tmp_path / "new", s, dry_run=True, backend=fake())
    assert fresh.plan is not None and fresh.plan.already_done == 0 and not (tmp_path / "new").exists()


# --------------------------------------------------------------------------------------
# Locks, concurrency, logs


async def test_second_run_on_the_same_outdir_is_refused(tmp_path: Path) -> None:
    out, s = tmp_path / "out", settings(tmp_path, concurrency=1, use_cache=False)
    first = asyncio.create_task(run_tag(SEEDS, out, s, backend=fake(delay_s=0.05), export=False))
    while not (out / "manifest.json").exists():
        await asyncio.sleep(0.01)
    with pytest.raises(OutputError, match="another run is writing"):
        await run_tag(SEEDS, out, s, backend=fake(), export=False)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The lock is gone with the first run: a third run may proceed.
    assert (await run_tag(SEEDS[:1], out, s, backend=fake(), export=False)).status == "completed"


def test_lock_conflict_through_the_cli(tmp_path: Path) -> None:
    from filelock import FileLock
    from typer.testing import CliRunner

    from summarizer.cli import app

    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import filelock, sys, time; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
        "print('held', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(out / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        args = ["tag", str(SEEDS[0]), "-o", str(out), "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1",
                "--cache-dir", str(tmp_path / "c")]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1
        assert "another run is writing" in result.output
    finally:
        holder.kill()
        holder.wait()
    assert FileLock(str(out / ".lock"), timeout=1).acquire()  # released with its holder


async def test_embedded_backend_runs_one_request_at_a_time(tmp_path: Path) -> None:
    class Embedded(FakeBackend):
        in_flight = peak = 0

        @property
        def identity(self) -> dict[str, str]:
            return {"backend": "embedded", "model": "gguf:test"}

        async def complete(self, *args: Any, **kwargs: Any) -> Any:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                return await super().complete(*args, **kwargs)
            finally:
                self.in_flight -= 1

    backend, events = Embedded(responder=valid_answer, delay_s=0.001), []
    await run_tag(SEEDS[:1], tmp_path / "out", settings(tmp_path, concurrency=16), backend=backend, sink=events.append)
    assert backend.peak == 1
    assert next(e for e in events if isinstance(e, RunStarted)).concurrency == 1


async def test_concurrency_is_used_against_servers(tmp_path: Path) -> None:
    class Counting(FakeBackend):
        in_flight = peak = 0

        async def complete(self, *args: Any, **kwargs: Any) -> Any:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            try:
                return await super().complete(*args, **kwargs)
            finally:
                self.in_flight -= 1

    backend = Counting(responder=valid_answer, delay_s=0.02)
    s = settings(tmp_path, concurrency=8, requests_per_minute=10_000, tokens_per_minute=10_000_000)
    await run_tag(SEEDS[1:2], tmp_path / "out", s, backend=backend, export=False)
    assert backend.peak == 8


async def test_jsonl_log_lines_parse(tmp_path: Path) -> None:
    stream = io.StringIO()
    backend = FakeBackend([ExtractionFailed("nope", attempts=1)], responder=valid_answer)
    s = settings(tmp_path, concurrency=1)
    await run_tag(SEEDS[:1], tmp_path / "out", s, backend=backend, sink=JsonlSink(stream))
    await run_tag(SEEDS[:1], tmp_path / "again", s, backend=fake(), sink=JsonlSink(stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    kinds = Counter(e["event"] for e in events)
    assert kinds["run_started"] == kinds["run_finished"] == 2
    # Run 1: 5 done, 1 failed. Run 2: the 5 from cache in chunks, the failed one done now.
    assert kinds["paper_done"] == 6 and kinds["paper_failed"] == 1 and kinds["cache_hits"] >= 1
    assert all("ts" in e for e in events)
    failed = next(e for e in events if e["event"] == "paper_failed")
    assert failed["error"] == "ExtractionFailed" and failed["reason"] == "nope"


async def test_events_account_for_every_paper(tmp_path: Path) -> None:
    events: list[Event] = []
    await run_tag(SEEDS, tmp_path / "out", settings(tmp_path), backend=fake(), sink=events.append)
    await run_tag(SEEDS, tmp_path / "out2", settings(tmp_path), backend=fake(), sink=events.append)
    done = [e for e in events if isinstance(e, PaperDone)]
    hits = sum(e.count for e in events if isinstance(e, CacheHits))
    assert len(done) == 77 and hits == 77


async def test_rich_display_runs_and_shows_paper_text_literally(tmp_path: Path) -> None:
    from rich.console import Console

    from summarizer.progress import RichSink, render_summary

    inputs = tmp_path / "papers.jsonl"
    abstract = SEED_PAPERS[0].abstract
    inputs.write_text(json.dumps({"title": "A [bold red]marked[/] title", "abstract": abstract}) + "\n")
    console = Console(file=io.StringIO(), width=200)
    backend = FakeBackend([ExtractionFailed("no [i]valid[/i] answer")], responder=valid_answer)
    with RichSink(console) as sink:
        summary = await run_tag([inputs], tmp_path / "out", settings(tmp_path), backend=backend, sink=sink)
    console.print(render_summary(summary))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "A [bold red]marked[/] title" in text and "no [i]valid[/i] answer" in text
    assert "failed" in text and "resume" in text


async def test_a_server_with_another_model_behind_the_same_url_is_not_served_the_cache(tmp_path: Path) -> None:
    # With no --model, the key holds the model the server reports: before, it held "" and a
    # server restarted with another model behind the same URL got the first model's records.
    inputs = tmp_path / "papers.jsonl"
    write_jsonl(inputs, 3)
    runs = []
    with ScriptedServer() as server:
        s = Settings(backend="openai", base_url=server.base_url, cache_dir=tmp_path / "cache", max_retries=0)
        for n, model in enumerate(("model-a", "model-b", "model-a")):
            server.model = model  # what /v1/models reports from now on
            before = len(server.hits)
            summary = await run_tag([inputs], tmp_path / f"out-{n}", s, export=False)
            runs.append((summary, len(server.hits) - before, manifest(tmp_path / f"out-{n}")))
    (_, a_requests, a_manifest), (_, b_requests, b_manifest), (again, again_requests, _) = runs
    assert a_requests == 3 and b_requests == 3  # model B was asked, not served model A's records
    assert again_requests == 0 and again.cached == 3  # model A's own records are still its own
    assert a_manifest["settings"]["model"] == "openai:model-a" and b_manifest["settings"]["model"] == "openai:model-b"


async def test_summarize_keys_by_the_reported_model_too(tmp_path: Path) -> None:
    paper = read_inputs([SEEDS[0]])[0]
    keys = []
    with ScriptedServer() as server:
        s = Settings(backend="openai", base_url=server.base_url, cache_dir=tmp_path / "cache", max_retries=0)
        for model in ("model-a", "model-b"):
            server.model = model
            async with Extractor(s) as ex:
                result = await ex.extract(paper)
            keys.append(result.provenance.cache_key)
            assert not result.provenance.cache_hit and result.provenance.model == f"openai:{model}"
    assert keys[0] != keys[1]


async def test_nothing_is_cached_under_an_unknown_model(tmp_path: Path) -> None:
    paper = read_inputs([SEEDS[0]])[0]
    s = settings(tmp_path)
    for _ in range(2):
        async with Extractor(s, backend=FakeBackend(responder=valid_answer, model="")) as ex:
            assert not ex.cacheable
            result = await ex.extract(paper)
        assert not result.provenance.cache_hit
