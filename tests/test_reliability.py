"""Batch runs under faults: every paper ends as one valid record or one failure with a reason.

Runs go through the real path (`run_tag`, or `summarizer tag` in a subprocess that can be
killed): the openai client, instructor's re-asks and tenacity's retries, over HTTP on
loopback against `ScriptedServer`, which injects 429s, 5xx, resets, hangs past the
timeout, truncated and schema-breaking JSON, names not in the abstract, empty and slow
answers. `summarizer.faultrun.audit_run` checks what each run leaves behind.

The cache is broken on purpose too: a damaged or locked cache is a warning and the run goes
on. test_reliability_disk.py has full and read-only disks; test_reliability_secrets.py
searches everything a whole run writes for the API key.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import summarizer.cache as cache_module
from summarizer.batch import run_tag
from summarizer.cache import DB_NAME, ResponseCache, RunCache
from summarizer.cli import app
from summarizer.errors import CacheError
from summarizer.export import MANIFEST
from summarizer.extract import Extractor
from summarizer.faultrun import audit_run, kill_and_resume, make_inputs, run_env, tag_command
from summarizer.progress import Event, Notice, PaperDone
from summarizer.schemas import Result
from summarizer.settings import PROJECT_ROOT as ROOT
from summarizer.settings import Settings
from summarizer.testserver import Faults, ScriptedServer, ServerProcess

# A short timeout keeps a hang cheap, but not shorter than a loaded 2-core machine can stall a busy
# client or server: a request that times out before the server has read it is one the client
# counted and the server never saw. The retry budget is small so that some papers do fail.
TIMEOUT_S, HANG_S, MAX_RETRIES, MAX_REASKS = 3.0, 3.5, 2, 1
BUDGET = (MAX_RETRIES + 1) * (MAX_REASKS + 1)  # transport retries apply to each (re-)ask
FAULT_KINDS = ("429", "5xx", "reset", "hang", "truncated", "bad_schema", "bad_quote", "empty", "slow")


def faults(seed: int) -> Faults:
    """30 % of requests faulted, spread evenly over every kind."""
    return Faults.spread(0.30, seed=seed, retry_after_s=0.01, hang_s=HANG_S, slow_s=0.2)


def settings_for(server: ScriptedServer | ServerProcess, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backend": "openai",
        "base_url": server.base_url,
        "model": "scripted",
        "cache_dir": tmp_path / "cache",
        "timeout_s": TIMEOUT_S,
        "max_retries": MAX_RETRIES,
        "retry_max_wait_s": 0.02,
        "max_reasks": MAX_REASKS,
        "concurrency": 64,
        **overrides,
    }
    return Settings(**values)


def cli_env(**extra: Any) -> dict[str, str]:
    return run_env(timeout_s=TIMEOUT_S, max_retries=MAX_RETRIES, retry_max_wait_s=0.02, max_reasks=MAX_REASKS, **extra)


def manifest(outdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
    return data


# --------------------------------------------------------------------------------------
# 1. 1,000 papers, 30 % of requests faulted


async def test_1000_papers_under_30_percent_faults_each_end_as_one_record_or_one_failure(tmp_path: Path) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 1000)
    out = tmp_path / "out"
    # The server gets its own process: sharing the client's GIL, it could read a request only
    # after the client had timed out on it, and the accounting below would be off by those.
    with ServerProcess(faults=faults(seed=20)) as server:
        summary = await run_tag(tmp_path / "papers.jsonl", out, settings_for(server, tmp_path), export=False)
        report = server.report()
    sent, counts = report.requests, report.counts
    audit = audit_run(out, papers)
    assert audit.clean, audit.problems()
    assert audit.records + audit.failures == 1000
    assert (summary.done, summary.failed) == (audit.records, audit.failures)
    # Every kind of fault was injected, about 30 % of all requests.
    assert all(counts.get(kind, 0) >= 10 for kind in FAULT_KINDS), counts
    faulted = sent - counts["ok"] - counts["slow"]  # a slow answer is still a good one
    assert 0.22 < faulted / sent < 0.32, counts
    # Some papers ran out of retries or re-asks, and say which.
    assert audit.failures > 0 and set(audit.failure_reasons) <= {"TransportError", "ExtractionFailed"}
    assert 1 <= audit.max_attempts <= BUDGET
    assert audit.attempts == sent  # every request the server saw is accounted to exactly one paper
    assert manifest(out)["counts"]["failed"] == audit.failures

    # A second run retries the failed papers only, and (faults gone) finishes every one.
    with ScriptedServer() as server:
        again = await run_tag(tmp_path / "papers.jsonl", out, settings_for(server, tmp_path), export=False)
        assert len(server.hits) == audit.failures
    assert (again.skipped, again.done, again.failed) == (audit.records, audit.failures, 0)
    final = audit_run(out, papers)
    assert final.clean and (final.records, final.failures) == (1000, 0), final.problems()


# --------------------------------------------------------------------------------------
# 2. kill -9 at random points, under the same faults


def test_kill_9_at_random_points_under_faults_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 300)
    out = tmp_path / "out"
    with ScriptedServer(faults=faults(seed=21)) as server:
        args = ("-c", "32", "--log-format", "jsonl", "--no-export")
        command = tag_command(tmp_path / "papers.jsonl", out, server.base_url, tmp_path / "cache", *args)
        starts = kill_and_resume(command, out, papers=300, kills=4, rng=random.Random(7), env=cli_env())
        sent = len(server.hits)
    assert [s.killed for s in starts] == [True] * 4 + [False], starts
    assert all(s.records_after > s.records_before for s in starts[:-1]), starts  # each kill landed mid-run
    assert starts[-1].returncode in (0, 4)  # done; 4 when some papers failed for good
    audit = audit_run(out, papers)
    assert audit.clean, audit.problems()
    assert audit.records + audit.failures == 300
    assert audit.max_attempts <= BUDGET
    # Requests in flight at a kill were sent but belong to no paper's final outcome.
    assert audit.attempts <= sent
    m = manifest(out)
    assert m["status"] == "completed" and m["cumulative"]["runs"] == 5
    assert m["counts"]["failed"] == audit.failures


# --------------------------------------------------------------------------------------
# 3. Two runs at once, one cache


def test_two_runs_sharing_one_cache_at_once_both_finish_and_the_cache_stays_readable(tmp_path: Path) -> None:
    first = make_inputs(tmp_path / "a.jsonl", 200)
    second = make_inputs(tmp_path / "b.jsonl", 200, start=100)  # papers 100-199 are in both
    cache = tmp_path / "cache"
    with ScriptedServer(delay_s=0.02) as server:
        commands = [
            tag_command(tmp_path / f"{name}.jsonl", tmp_path / f"out-{name}", server.base_url, cache, "-c", "16",
                        "--quiet", "--no-export")
            for name in ("a", "b")
        ]  # fmt: skip
        pipe = subprocess.PIPE
        procs = [
            subprocess.Popen(command, cwd=ROOT, env=cli_env(), stdout=pipe, stderr=pipe, text=True)
            for command in commands
        ]
        outputs = [proc.communicate(timeout=300) for proc in procs]
        base_url = server.base_url
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    a, b = manifest(tmp_path / "out-a"), manifest(tmp_path / "out-b")
    assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]  # they did overlap
    records: dict[str, list[dict[str, Any]]] = {}
    for name, papers in (("a", first), ("b", second)):
        audit = audit_run(tmp_path / f"out-{name}", papers)
        assert audit.clean and (audit.records, audit.failures) == (200, 0), audit.problems()
        for line in (tmp_path / f"out-{name}" / "records.jsonl").open(encoding="utf-8"):
            value = json.loads(line)
            records.setdefault(value["record"]["paper_id"], []).append(value["record"])
    assert all(len(v) == 2 and v[0] == v[1] for k, v in records.items() if k in {p.id for p in first[100:]})
    # Afterwards the cache opens cleanly and holds one valid record per distinct paper, under its key.
    settings = Settings(backend="openai", base_url=base_url, model="scripted", max_reasks=MAX_REASKS, use_cache=False)
    keys = Extractor(settings)
    distinct = {p.id: p for p in [*first, *second]}
    with ResponseCache(cache) as opened:
        assert opened.stats().entries == len(distinct) == 300
        for paper in distinct.values():
            value = opened.get(keys.key_for(paper))
            assert value is not None and Result.model_validate(value).record.paper_id == paper.id


# --------------------------------------------------------------------------------------
# 4. A damaged or locked cache: a warning, and no record lost


def notices(events: list[Event]) -> list[str]:
    return [e.message for e in events if isinstance(e, Notice)]


def hold_lock(db: Path) -> subprocess.Popen[str]:
    """Another process holding an EXCLUSIVE transaction on the cache index until killed."""
    code = (
        "import sqlite3, sys, time; con = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "con.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
async def test_damaged_cache_is_moved_aside_and_the_run_loses_nothing(tmp_path: Path, damage: str) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 40)
    db = tmp_path / "cache" / DB_NAME
    with ScriptedServer() as server:
        s = settings_for(server, tmp_path, concurrency=8)
        await run_tag(tmp_path / "papers.jsonl", tmp_path / "first", s, export=False)
        size = db.stat().st_size
        if damage == "garbage":
            db.write_bytes(random.Random(1).randbytes(size))
        else:
            os.truncate(db, size // 2)
        damaged = db.read_bytes()
        # A one-off command stops and says what to do.
        cli = CliRunner().invoke(app, ["cache", "stats", "--cache-dir", str(db.parent)])
        assert cli.exit_code == 1
        assert cli.output.count("\n") == 1 and str(db) in cli.output and "delete the folder" in cli.output
        # A batch run warns, moves the broken index aside, and carries on.
        events: list[Event] = []
        sent = len(server.hits)
        summary = await run_tag(tmp_path / "papers.jsonl", tmp_path / "second", s, sink=events.append, export=False)
        resent = len(server.hits) - sent
        # The fresh index works: the same papers once more are all cache hits (the key holds the server's URL).
        third = await run_tag(tmp_path / "papers.jsonl", tmp_path / "third", s)
        assert third.cached == 40 and len(server.hits) == sent + resent
    (note,) = notices(events)
    assert "damaged" in note and str(db) in note and "moved it to" in note and "no record is lost" in note
    assert (summary.status, summary.done, summary.failed) == ("completed", 40, 0)
    audit = audit_run(tmp_path / "second", papers)
    assert audit.clean and audit.records == 40, audit.problems()
    assert resent == 40  # what the broken cache held was asked for again
    (aside,) = db.parent.glob(f"{DB_NAME}.broken-*")
    assert aside.read_bytes() == damaged and str(aside) in note  # kept, for whoever wants to look
    assert manifest(tmp_path / "second")["warnings"] == [note]


async def test_cache_locked_past_the_timeout_at_start_is_a_warning_not_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "LOCK_TIMEOUT_S", 0.5)
    papers = make_inputs(tmp_path / "papers.jsonl", 30)
    db = tmp_path / "cache" / DB_NAME
    with ScriptedServer() as server:
        s = settings_for(server, tmp_path, concurrency=8)
        await run_tag(tmp_path / "papers.jsonl", tmp_path / "first", s, export=False)
        holder = hold_lock(db)
        try:
            with pytest.raises(CacheError) as strict:  # what one-off commands get
                ResponseCache(db.parent)
            events: list[Event] = []
            clock = time.monotonic()
            summary = await run_tag(tmp_path / "papers.jsonl", tmp_path / "second", s, sink=events.append)
            elapsed = time.monotonic() - clock
        finally:
            holder.kill()
            holder.wait()
    assert strict.value.problem == "locked" and strict.value.path == db
    assert "--no-cache" in strict.value.message and "more than 0.5s" in strict.value.message
    (note,) = notices(events)
    assert str(db) in note and "locked" in note and "carries on without the cache" in note
    assert (summary.status, summary.done, summary.cached) == ("completed", 30, 0)
    assert elapsed < 15  # waited about the timeout once, not once per paper
    audit = audit_run(tmp_path / "second", papers)
    assert audit.clean and audit.records == 30, audit.problems()
    assert manifest(tmp_path / "second")["warnings"] == [note]
    with ResponseCache(db.parent) as cache:  # the lock is gone with its holder; nothing was damaged
        assert cache.stats().entries == 30


async def test_cache_locked_in_the_middle_of_a_run_is_one_warning_and_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "LOCK_TIMEOUT_S", 0.5)
    papers = make_inputs(tmp_path / "papers.jsonl", 40)
    db = tmp_path / "cache" / DB_NAME
    holders: list[subprocess.Popen[str]] = []
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if sum(isinstance(e, PaperDone) for e in events) == 10 and not holders:
            holders.append(hold_lock(db))  # ten records in, someone takes the cache's lock and keeps it

    try:
        with ScriptedServer(delay_s=0.01) as server:
            s = settings_for(server, tmp_path, concurrency=4)
            summary = await run_tag(tmp_path / "papers.jsonl", tmp_path / "out", s, sink=sink, export=False)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert holders, "the lock was never taken"
    (note,) = notices(events)
    assert str(db) in note and "locked" in note and "carries on without the cache" in note
    assert (summary.status, summary.done) == ("completed", 40)
    audit = audit_run(tmp_path / "out", papers)
    assert audit.clean and audit.records == 40, audit.problems()
    with ResponseCache(db.parent) as cache:
        assert 10 <= cache.stats().entries < 40  # cached until the lock, not after


def test_index_damaged_while_in_use_is_moved_aside_once_and_the_cache_goes_on(tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    with ResponseCache(directory) as cache:
        for i in range(200):
            cache.set(f"k{i}", {"i": i, "pad": "x" * 1300})
    warnings: list[str] = []
    cache = RunCache(directory, warnings.append)
    db = directory / DB_NAME
    size = db.stat().st_size
    with db.open("r+b") as fh:  # a disk error lands in the middle of the index while the run holds it open
        fh.seek(size // 4)
        fh.write(random.Random(0).randbytes(size // 2))
    served = [cache.get(f"k{i}") for i in range(200)]
    good = [v for v in served if v is not None]
    assert good and all(v == {"i": v["i"], "pad": "x" * 1300} for v in good)  # never a damaged value
    (warning,) = warnings
    assert "damaged" in warning and "moved it to" in warning
    assert cache.active and len(list(directory.glob(f"{DB_NAME}.broken-*"))) == 1
    cache.set("after", {"ok": True})
    assert cache.get("after") == {"ok": True}
    cache.close()


# --------------------------------------------------------------------------------------
# The embedded model server dies with the process that started it

_PARENT = """
import subprocess, sys, time
from summarizer.llm import popen_tied_to_parent
start = popen_tied_to_parent if sys.argv[1] == "tied" else subprocess.Popen
child = start([sys.executable, "-c", "import time; time.sleep(120)  # helper"])
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its parent's reaping is left


def _orphan_after_kill_9(how: str) -> int:
    """Start a parent that starts a helper, SIGKILL the parent; return the helper's pid."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, how], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while b"# helper" not in Path(f"/proc/{pid}/cmdline").read_bytes():  # the shim has exec'd
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    return pid


@pytest.mark.skipif(sys.platform != "linux", reason="the tie is PR_SET_PDEATHSIG, a Linux feature")
def test_a_helper_started_tied_dies_when_its_parent_is_killed() -> None:
    untied = _orphan_after_kill_9("plain")
    try:
        time.sleep(1)
        assert _alive(untied)  # what happened to the model server before: it kept running
    finally:
        os.kill(untied, 9)
    tied = _orphan_after_kill_9("tied")
    deadline = time.monotonic() + 10
    while _alive(tied) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(tied)
