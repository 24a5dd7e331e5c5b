"""A full disk and a read-only output directory: one clear line, a non-zero exit, no record lost.

The disks are real: a small tmpfs mounted for the test (the tests run as root, as CI does),
filled up or remounted read-only under a real `summarizer tag` process, so the errors are
the kernel's ENOSPC and EROFS, not simulated ones. (tests/test_batch.py covers a write that
fails half-way through a line, by patching os.write.)
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from summarizer.batch import run_tag
from summarizer.errors import OutputError
from summarizer.export import RECORDS
from summarizer.faultrun import audit_run, make_inputs, run_env, tag_command
from summarizer.settings import PROJECT_ROOT as ROOT
from summarizer.settings import Settings
from summarizer.testserver import ScriptedServer


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.fail(f"these tests mount a tmpfs, which needs root (CAP_SYS_ADMIN): {mounted.stderr.decode()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def tag(inputs: Path, out: Path, server: ScriptedServer, cache: Path) -> subprocess.CompletedProcess[str]:
    command = tag_command(inputs, out, server.base_url, cache, "-c", "8", "--quiet")
    return subprocess.run(command, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=300)


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_full_disk_stops_with_one_clear_line_and_keeps_every_record(tmp_path: Path) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 120)
    make_inputs(tmp_path / "first.jsonl", 40)  # the same first 40 papers
    with tmpfs(tmp_path / "disk", "2m") as disk, ScriptedServer() as server:
        out = disk / "out"
        assert tag(tmp_path / "first.jsonl", out, server, tmp_path / "cache").returncode == 0
        before = (out / RECORDS).read_bytes()
        # Fill the disk but for 48 KiB: room for a few dozen more records, not 80.
        stat = os.statvfs(disk)
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 48 * 1024))
        proc = tag(tmp_path / "papers.jsonl", out, server, tmp_path / "cache")
        line = assert_one_clear_line(proc, "No space left on device", str(out), "run the same command again to resume")
        after = (out / RECORDS).read_bytes()
        assert after.startswith(before) and len(after) > len(before)  # it got some way, and kept what it had
        audit = audit_run(out, papers)
        assert not (audit.invalid or audit.duplicated or audit.torn), (line, audit.problems())
        assert 40 < audit.records < 120
        # The manifest says the run stopped, and why (it said "running" before: no room for a copy).
        meta = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        assert meta["status"] == "error" and "No space left on device" in meta["stop_reason"], meta
        assert meta["finished_at"] is not None
        # Space again: the same command finishes the run.
        ballast.unlink()
        proc = tag(tmp_path / "papers.jsonl", out, server, tmp_path / "cache")
        assert proc.returncode == 0, proc.stderr
        audit = audit_run(out, papers)
        assert audit.clean and (audit.records, audit.failures) == (120, 0), audit.problems()
        assert (out / "records.parquet").exists()


async def test_read_only_output_directory_is_one_clear_line_and_leaves_records_untouched(tmp_path: Path) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 40)
    make_inputs(tmp_path / "first.jsonl", 20)
    with tmpfs(tmp_path / "disk", "4m") as disk, ScriptedServer() as server:
        out = disk / "out"
        assert tag(tmp_path / "first.jsonl", out, server, tmp_path / "cache").returncode == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        remount(disk, "ro")
        try:
            proc = tag(tmp_path / "papers.jsonl", out, server, tmp_path / "cache")
            assert_one_clear_line(proc, "Read-only file system", str(out), "--out")
            # The library says which path, for callers that are not the CLI.
            settings = Settings(backend="openai", base_url=server.base_url, cache_dir=tmp_path / "cache")
            with pytest.raises(OutputError) as locked:
                await run_tag(tmp_path / "papers.jsonl", out, settings)
            with pytest.raises(OutputError) as fresh:
                await run_tag(tmp_path / "papers.jsonl", out / "new", settings)
            assert locked.value.path == out / ".lock" and fresh.value.path == out / "new"
            assert "cannot create output directory" in fresh.value.message
            assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not a byte changed
        finally:
            remount(disk, "rw")
        proc = tag(tmp_path / "papers.jsonl", out, server, tmp_path / "cache")
        assert proc.returncode == 0, proc.stderr
        audit = audit_run(out, papers)
        assert audit.clean and (audit.records, audit.failures) == (40, 0), audit.problems()


async def test_full_disk_at_export_time_says_the_records_are_complete(tmp_path: Path) -> None:
    papers = make_inputs(tmp_path / "papers.jsonl", 40)
    with tmpfs(tmp_path / "disk", "1m") as disk, ScriptedServer() as server:
        out = disk / "out"
        settings = Settings(backend="openai", base_url=server.base_url, model="scripted", cache_dir=tmp_path / "c")
        await run_tag(tmp_path / "papers.jsonl", out, settings, export=False)
        records = (out / RECORDS).read_bytes()
        stat = os.statvfs(disk)
        (disk / "ballast").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 16 * 1024))
        with pytest.raises(OutputError) as full:  # the manifest still fits; the exports do not
            await run_tag(tmp_path / "papers.jsonl", out, settings)
        assert "No space left on device" in full.value.message and full.value.path is not None
        assert full.value.path.parent == out and f"every record is in {out / RECORDS}" in full.value.message
        assert f"summarizer export {out}" in full.value.message
        assert (out / RECORDS).read_bytes() == records
        assert audit_run(out, papers).clean


@pytest.mark.parametrize("command", [["export"], ["report"], ["report", "-o", "{out}/page.html"]])
def test_export_and_report_into_a_read_only_directory_is_one_line(tmp_path: Path, command: list[str]) -> None:
    # atomic_write's clean-up of its temporary file raised EROFS too, and that printed a traceback.
    from typer.testing import CliRunner

    from summarizer.cli import app

    with tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        out.mkdir()
        (out / RECORDS).write_text("", encoding="utf-8")
        remount(disk, "ro")
        try:
            args = [part.format(out=out) for part in command]
            result = CliRunner().invoke(app, [args[0], str(out), *args[1:]])
        finally:
            remount(disk, "rw")
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot write"), result.output
        assert "Read-only file system" in lines[0] and str(out) in lines[0]
        assert sorted(p.name for p in out.iterdir()) == [RECORDS]


async def test_a_cache_on_a_read_only_mount_is_read_and_not_written(tmp_path: Path) -> None:
    # It was not even read: diskcache opens its index with a write lock, which a read-only mount refuses.
    from typer.testing import CliRunner

    from summarizer.cli import app
    from summarizer.progress import Event, Notice

    make_inputs(tmp_path / "papers.jsonl", 12)
    with tmpfs(tmp_path / "disk", "8m") as disk, ScriptedServer() as server:
        cache = disk / "cache"
        settings = Settings(backend="openai", base_url=server.base_url, model="scripted", cache_dir=cache)
        await run_tag(tmp_path / "papers.jsonl", tmp_path / "first", settings, export=False)
        sent = len(server.requests)
        before = {p.name: p.read_bytes() for p in cache.iterdir()}
        remount(disk, "ro")
        try:
            events: list[Event] = []
            summary = await run_tag(tmp_path / "papers.jsonl", tmp_path / "second", settings, sink=events.append)
            stats = CliRunner().invoke(app, ["cache", "stats", "--cache-dir", str(cache)])
            after = {p.name: p.read_bytes() for p in cache.iterdir()}
        finally:
            remount(disk, "rw")
        resent = len(server.requests) - sent
    assert (summary.done, summary.cached, resent) == (12, 12, 0)  # every paper served from the cache
    notes = [e.message for e in events if isinstance(e, Notice)]
    assert len(notes) == 1 and "cannot be written" in notes[0] and str(cache) in notes[0], notes
    assert stats.exit_code == 0 and "12 records" in stats.output, stats.output
    assert after == before
