"""Embedded engines side by side: llama-cpp-python's server (today) against llama.cpp's own
`llama-server` built from the C++ sources that the llama-cpp-python sdist vendors.

Both serve the same default GGUF on loopback with the same thread count; each runs today's
generated-label path (`Extractor`, one JSON answer per paper, schema-constrained decoding)
over the same seed papers with an empty response cache, after one warm-up paper that fills
the shared prompt prefix. Then a floor per paper from measured rates: the paper's own prompt
tokens at the measured prefill rate plus its output tokens at the measured free decode rate
(both read from `llama-server`'s own timings on a free-text request).

    python benchmarks/engines.py --llama-server PATH [N_PAPERS]   (default 20)

Build `llama-server` from the registry sdist (no downloaded binaries):
    pip download llama-cpp-python==0.3.36 --no-binary :all: --no-deps -d sdist && tar xzf ...
    cmake -B build -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_SERVER=ON
    cmake --build build --target llama-server -j2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from summarizer.extract import Extractor
from summarizer.llm import popen_tied_to_parent
from summarizer.models import default_model_path
from summarizer.schemas import Result
from summarizer.settings import Settings
from summarizer.sources import read_inputs

ROOT = Path(__file__).resolve().parent.parent
Row = tuple[float, int, int, bool, str | None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_server(binary: Path, model: Path, threads: int, ctx: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", str(ctx),
           "-t", str(threads), "-tb", str(threads), "--parallel", "1", "--alias", model.stem, "--no-webui"]  # fmt: skip
    proc = popen_tied_to_parent(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama-server did not become healthy")


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def own_tokens(url: str, papers: list[Any]) -> float:
    """Mean tokens of each paper's own turn (what follows the cached shared prefix)."""
    ex = Extractor(Settings(use_cache=False))
    counts = [
        len(post(url + "/tokenize", {"content": ex.prepare(p).messages[-1]["content"]})["tokens"]) for p in papers
    ]
    return statistics.mean(counts)


def rates(url: str, paper_text: str) -> tuple[float, float]:
    """Prefill and free-decode tokens/s from llama-server's own timings."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": paper_text + "\n\nSummarise this abstract in about 80 words."}],
        "max_tokens": 120,
        "temperature": 0,
        "cache_prompt": False,
    }
    t = post(url + "/v1/chat/completions", body)["timings"]
    return float(t["prompt_per_second"]), float(t["predicted_per_second"])


async def run(settings: Settings, papers: list[Any]) -> list[Row]:
    rows: list[Row] = []
    async with Extractor(settings) as ex:
        await ex.extract_or_failure(papers[0])  # warm: server start and the shared prefix
        for paper in papers[1:]:
            started = time.perf_counter()
            outcome = await ex.extract_or_failure(paper)
            elapsed = time.perf_counter() - started
            usage = outcome.provenance.usage if isinstance(outcome, Result) else outcome.usage
            label = outcome.record.category.primary if isinstance(outcome, Result) else None
            rows.append((elapsed, usage.prompt_tokens, usage.completion_tokens, isinstance(outcome, Result), label))
    return rows


def report(name: str, rows: list[Row]) -> float:
    mean = statistics.mean(r[0] for r in rows)
    print(
        f"{name:>22}: {mean:6.1f} s/paper (median {statistics.median(r[0] for r in rows):.1f}), "
        f"prompt {statistics.mean(r[1] for r in rows):.0f} tok/paper, "
        f"output {statistics.mean(r[2] for r in rows):.0f} tok/paper, {sum(r[3] for r in rows)}/{len(rows)} valid",
        flush=True,
    )
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llama-server", type=Path, required=True)
    parser.add_argument("n", type=int, nargs="?", default=20)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    papers = read_inputs(sorted((ROOT / "examples/seeds").glob("*.txt")))[: args.n + 1]
    model = default_model_path()
    print(f"{args.n} seed papers timed (one more warms each server), {threads} threads, empty cache; load "
          f"{os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    cache = Path(tempfile.mkdtemp())
    today = run(Settings(use_cache=False, cache_dir=cache, concurrency=1), papers)
    today_rows = asyncio.run(today)
    t_today = report("llama-cpp-python server", today_rows)

    proc, url = start_llama_server(args.llama_server, model, threads, 8192)
    try:
        settings = Settings(
            backend="openai", base_url=url + "/v1", api_key="local", model=model.stem,
            instructor_mode="json_schema", use_cache=False, cache_dir=cache, concurrency=1,
        )  # fmt: skip
        native_rows = asyncio.run(run(settings, papers))
        t_native = report("llama-server", native_rows)
        paper_text = papers[1].title + "\n\n" + papers[1].abstract
        prefill, decode = rates(url, paper_text)
        own = own_tokens(url, papers[1:])
    finally:
        proc.terminate()
    # The floor: the paper's own tokens (its prompt minus the shared prefix, which is cached)
    # at the prefill rate plus its output tokens at the free decode rate.
    out_tokens = statistics.mean(r[2] for r in native_rows)
    floor = own / prefill + out_tokens / decode
    same = sum(a[4] == b[4] for a, b in zip(today_rows, native_rows, strict=True))
    print(f"measured rates (llama-server timings): prefill {prefill:.0f} tok/s, free decode {decode:.1f} tok/s")
    print(f"floor: ~{own:.0f} own prompt tok / {prefill:.0f} + {out_tokens:.0f} output tok / {decode:.1f} = "
          f"{floor:.1f} s/paper")  # fmt: skip
    print(f"ratio to floor: today {t_today / floor:.2f}, llama-server {t_native / floor:.2f}; "
          f"llama-server / today {t_native / t_today:.2f}")  # fmt: skip
    print(f"same category on {same}/{len(today_rows)} papers")


if __name__ == "__main__":
    main()
