"""Issue 13 item 4: the embedded backend's cold start is said while it runs, timed, and paid once.

No real model or server: a small file stands in for the default GGUF (its official size and
sha256 patched to match) and `EmbeddedServer` is pointed at a scripted OpenAI-compatible server.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from summarizer import models
from summarizer.batch import run_tag
from summarizer.cli import app
from summarizer.extract import summarize
from summarizer.llm import EmbeddedServer
from summarizer.progress import ColdStart, Event, JsonlSink, PaperDone, RichSink, RunStarted
from summarizer.settings import Settings
from summarizer.sources import read_papers
from summarizer.testserver import ScriptedServer

SEEDS = Path(__file__).parent.parent / "examples" / "seeds"
PAPERS = read_papers(SEEDS / "000_8bcbaaa93f595634.txt")
SERVER_START_S = 0.2  # what the stand-in server takes to come up


@pytest.fixture
def hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A stand-in default model in tmp_path/models; returns the list of files sha256_file hashed."""
    target = tmp_path / "models" / models.DEFAULT_FILENAME
    target.parent.mkdir()
    target.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    monkeypatch.setattr(models, "DEFAULT_MODEL_SIZE", target.stat().st_size)
    monkeypatch.setattr(models, "DEFAULT_MODEL_SHA256", hashlib.sha256(target.read_bytes()).hexdigest())
    calls: list[Path] = []
    real = models.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(models, "sha256_file", counting)
    return calls


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """EmbeddedServer answered by a scripted server; returns the model paths it was started with."""
    started: list[Path] = []
    with ScriptedServer() as scripted:
        port = int(scripted.base_url.rsplit(":", 1)[1].split("/")[0])

        def launch(self: EmbeddedServer) -> None:
            started.append(self.model_path)
            self.port = port

        def wait_ready(self: EmbeddedServer) -> None:
            time.sleep(SERVER_START_S)

        monkeypatch.setattr(EmbeddedServer, "launch", launch)
        monkeypatch.setattr(EmbeddedServer, "wait_ready", wait_ready)
        yield started


def embedded(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        backend="embedded",
        model_cache_dir=tmp_path / "models",
        cache_dir=tmp_path / "cache",
        decisions="generated",
        max_retries=0,
        **kw,
    )


def cold(events: list[Event]) -> list[tuple[str, bool, str]]:
    return [(e.step, e.seconds is not None, e.message) for e in events if isinstance(e, ColdStart)]


def manifest(outdir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((outdir / "manifest.json").read_text())
    return data


def write_papers(path: Path, n: int) -> Path:
    path.write_text(
        "".join(
            json.dumps({"title": f"{i}: {p.title}", "abstract": p.abstract}) + "\n" for i, p in enumerate(PAPERS[:n])
        )
    )
    return path


async def test_a_run_says_what_its_cold_start_does_and_keeps_its_seconds(
    tmp_path: Path, hashed: list[Path], served: list[Path]
) -> None:
    inputs = write_papers(tmp_path / "papers.jsonl", 2)
    events: list[Event] = []
    summary = await run_tag([inputs], tmp_path / "out", embedded(tmp_path), sink=events.append, export=False)
    assert summary.done == 2 and summary.failed == 0
    assert cold(events) == [
        ("verify", False, "verifying the model file (1.1 GB, once)"),
        ("verify", True, cold(events)[1][2]),
        ("server", False, "starting the embedded server"),
        ("server", True, cold(events)[3][2]),
    ]
    assert cold(events)[1][2].startswith("model file verified in ")
    assert cold(events)[3][2] == f"embedded server ready in {events_seconds(events, 'server'):.1f} s"
    # Said once the progress line is up, before the first paper's record; the model is the one verified.
    kinds = [type(e) for e in events]
    assert kinds.index(RunStarted) < kinds.index(ColdStart) and kinds.index(ColdStart) < kinds.index(PaperDone)
    assert served == [tmp_path / "models" / models.DEFAULT_FILENAME] and len(hashed) == 1
    seconds = manifest(tmp_path / "out")["cold_start_s"]
    assert set(seconds) == {"verify", "server"}
    assert seconds["server"] == events_seconds(events, "server") >= SERVER_START_S
    assert 0 <= seconds["verify"] < SERVER_START_S


def events_seconds(events: list[Event], step: str) -> float:
    (seconds,) = [e.seconds for e in events if isinstance(e, ColdStart) and e.step == step and e.seconds is not None]
    return seconds


async def test_the_next_run_skips_the_hash_and_a_cached_run_pays_nothing(
    tmp_path: Path, hashed: list[Path], served: list[Path]
) -> None:
    inputs = write_papers(tmp_path / "papers.jsonl", 2)
    await run_tag([inputs], tmp_path / "first", embedded(tmp_path), export=False)
    events: list[Event] = []
    more = write_papers(tmp_path / "more.jsonl", 3)  # one paper the cache does not hold
    await run_tag([more], tmp_path / "second", embedded(tmp_path), sink=events.append, export=False)
    assert [step for step, _, _ in cold(events)] == ["server", "server"] and len(hashed) == 1
    assert set(manifest(tmp_path / "second")["cold_start_s"]) == {"server"}
    events.clear()
    summary = await run_tag([inputs], tmp_path / "third", embedded(tmp_path), sink=events.append, export=False)
    assert summary.cached == 2 and cold(events) == [] and len(served) == 2  # all from the cache: no server
    assert manifest(tmp_path / "third")["cold_start_s"] == {}


async def test_a_bad_model_file_still_stops_the_run_with_the_same_error(
    tmp_path: Path, hashed: list[Path], served: list[Path]
) -> None:
    target = tmp_path / "models" / models.DEFAULT_FILENAME
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    events: list[Event] = []
    inputs = write_papers(tmp_path / "papers.jsonl", 1)
    with pytest.raises(Exception, match="Delete it and run again"):
        await run_tag([inputs], tmp_path / "out", embedded(tmp_path), sink=events.append, export=False)
    assert [(step, done) for step, done, _ in cold(events)] == [("verify", False)] and served == []


async def test_summarize_tells_its_listener(tmp_path: Path, hashed: list[Path], served: list[Path]) -> None:
    said: list[ColdStart] = []
    result = await summarize(PAPERS[0], embedded(tmp_path), on_cold_start=said.append)
    assert result.record.summary
    assert [(e.step, e.seconds is None) for e in said] == [
        ("verify", True),
        ("verify", False),
        ("server", True),
        ("server", False),
    ]


def test_the_summarize_command_prints_the_steps_on_stderr(
    tmp_path: Path, hashed: list[Path], served: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"MODEL_CACHE_DIR": "models", "CACHE_DIR": "cache"}.items():
        monkeypatch.setenv(f"SUMMARIZER_{name}", str(tmp_path / value))
    paper = PAPERS[0]
    args = ["summarize", "--title", paper.title, "--abstract", paper.abstract, "--decisions", "generated", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[1:4] == ["verifying the model file (1.1 GB, once)", lines[2], "starting the embedded server"]
    assert lines[2].startswith("model file verified in ") and lines[4].startswith("embedded server ready in ")
    assert json.loads(result.stdout)["record"]["summary"]  # stdout stays the record


def test_the_rich_display_shows_the_step_in_the_progress_line_and_keeps_its_time() -> None:
    stream = io.StringIO()
    with RichSink(Console(file=stream, width=200, force_terminal=False)) as sink:
        sink(RunStarted(outdir="out", papers=1, already_done=0, to_do=1, concurrency=1, model="embedded:x"))
        assert sink._progress is not None
        sink(ColdStart("server", None, "starting the embedded server"))
        assert sink._progress.tasks[0].description == "starting the embedded server"
        sink(ColdStart("server", 6.31, "embedded server ready in 6.3 s"))
        assert sink._progress.tasks[0].description == "tagging"
    assert "starting: embedded server ready in 6.3 s" in stream.getvalue()


def test_the_jsonl_display_carries_the_step_and_its_seconds() -> None:
    stream = io.StringIO()
    JsonlSink(stream)(ColdStart("verify", 4.25, "model file verified in 4.2 s"))
    event = json.loads(stream.getvalue())
    assert (event["event"], event["step"], event["seconds"]) == ("cold_start", "verify", 4.25)


def test_the_seconds_of_a_step_paid_twice_are_summed() -> None:
    # Scored decisions start a second server for the questions: the manifest's cold start must
    # count both, not the last one alone.
    from types import SimpleNamespace

    from summarizer.coldstart import ColdStartClock, listen

    clock = ColdStartClock()
    heard: list[str] = []
    seconds = listen(SimpleNamespace(cold_start=clock), lambda event: heard.append(event.message))
    clock._end("server", clock._begin("server") - 2.0)
    clock._end("server", clock._begin("server") - 1.0)
    assert 3.0 <= seconds["server"] < 3.5
    assert heard[0] == "starting the embedded server" and len(heard) == 4
