"""Concurrency against an OpenAI-compatible server: does `run_tag` keep C requests in flight?

A `ScriptedServer` answers every request with a valid record after L = 300 ms. 2,000
distinct papers (the seed abstracts under varied titles) go through the real `run_tag`
with the real openai client and instructor at concurrency 64, into an empty cache. The
ideal wall time is N·L/C; the ratio to it is the overhead of everything around the wait.
A sequential loop (`Extractor.extract`, one paper after another) over a 100-paper slice is
the comparison. Two more runs separate the batch layer from the model path: the same calls
without it (a bare `asyncio.gather` + semaphore over `Extractor.extract`), and the same
`run_tag` with `FakeBackend` sleeping L (no HTTP, no instructor).

The server runs in a child process so that its request handling does not compete with the
client for the GIL, and each measurement runs in a fresh process of its own.
Its sockets get TCP_NODELAY here: as shipped, `ScriptedServer` writes headers and body in
two sends, and Nagle's algorithm against the client's delayed ACK adds ~45 ms to every
request (measured: 48.8 ms vs 3.6 ms per bare request), i.e. L would not be 300 ms.
--keep-nagle measures the server as shipped.

    python benchmarks/concurrency.py [--papers 2000] [--concurrency 64] [--latency 0.3] [--sequential 100]
                                     [--keep-nagle]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from summarizer.batch import run_tag
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.settings import Settings
from summarizer.sources import read_inputs
from summarizer.testserver import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent


def no_nagle() -> None:
    import socket

    import summarizer.testserver as ts

    setup = ts._Handler.setup

    def setup_nodelay(self: ts._Handler) -> None:
        setup(self)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    ts._Handler.setup = setup_nodelay  # type: ignore[method-assign,assignment]


def serve(latency: float, keep_nagle: bool, conn: Connection) -> None:
    if not keep_nagle:
        no_nagle()
    server = ScriptedServer(delay_s=latency).start()
    conn.send(server.base_url)
    conn.recv()  # until told to stop
    conn.send({"peak_in_flight": server.peak_in_flight, "requests": len(server.hits), **server.counts})
    server.stop()


class Server:
    """The scripted server in a child process."""

    def __init__(self, latency: float, keep_nagle: bool) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.get_context("spawn").Process(target=serve, args=(latency, keep_nagle, child), daemon=True)
        self.proc.start()
        self.base_url = str(self.conn.recv())

    def stop(self) -> dict[str, Any]:
        self.conn.send("stop")
        stats: dict[str, Any] = self.conn.recv()
        self.proc.join(timeout=10)
        return stats


def make_inputs(path: Path, n: int) -> None:
    seeds = read_inputs(sorted((ROOT / "examples" / "seeds").glob("*.txt")))
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            seed = seeds[i % len(seeds)]
            fh.write(json.dumps({"title": f"{seed.title}: variant {i}", "abstract": seed.abstract}) + "\n")


# Each measurement runs in a fresh process: the first run in a process pays for importing
# openai and instructor and fills module-level caches that later runs would get for free.


def measure(kind: str, inputs: Path, work: Path, base_url: str, concurrency: int, latency: float, n: int) -> Any:
    return asyncio.run(_measure(kind, inputs, work, base_url, concurrency, latency, n))


async def _measure(
    kind: str, inputs: Path, work: Path, base_url: str, concurrency: int, latency: float, n: int
) -> tuple[float, float]:
    settings = Settings(
        cache_dir=work / f"cache-{kind}", concurrency=concurrency, backend="openai", base_url=base_url, model="scripted"
    )
    t, cpu = time.perf_counter(), time.process_time()
    if kind == "run_tag":
        summary = await run_tag([inputs], work / kind, settings, export=False)
        assert summary.done == n and summary.cached == 0 and summary.failed == 0, summary
    elif kind == "control":  # the batch layer alone: no HTTP, no instructor
        backend = FakeBackend(responder=valid_answer, delay_s=latency)
        settings = Settings(cache_dir=work / f"cache-{kind}", concurrency=concurrency)
        summary = await run_tag([inputs], work / kind, settings, backend=backend, export=False)
        assert summary.done == n, summary
    else:
        papers = read_inputs([inputs])[:n]
        gate = asyncio.Semaphore(concurrency if kind == "gather" else 1)
        async with Extractor(settings) as extractor:

            async def one(paper: Any) -> None:
                async with gate:
                    await extractor.extract(paper)

            if kind == "gather":  # the same calls without the batch layer
                await asyncio.gather(*(one(p) for p in papers))
            else:  # sequential: one paper after another
                for paper in papers:
                    await extractor.extract(paper)
    return time.perf_counter() - t, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--sequential", type=int, default=100)
    parser.add_argument("--keep-nagle", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="concurrency-"))
    try:
        inputs = work / "papers.jsonl"
        make_inputs(inputs, args.papers)
        results: dict[str, tuple[float, float]] = {}
        stats: dict[str, dict[str, Any]] = {}
        for kind, n in (("run_tag", args.papers), ("gather", args.papers), ("control", args.papers),
                        ("sequential", args.sequential)):  # fmt: skip
            server = Server(args.latency, args.keep_nagle)
            try:
                with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
                    job = pool.submit(measure, kind, inputs, work, server.base_url, args.concurrency, args.latency, n)
                    results[kind] = job.result()
            finally:
                stats[kind] = server.stop()
        ideal = args.papers * args.latency / args.concurrency
        wall, cpu = results["run_tag"]
        gathered, control, seq = results["gather"][0], results["control"][0], results["sequential"][0]

        nagle = "as shipped (Nagle on)" if args.keep_nagle else "with TCP_NODELAY"
        print(f"server: ScriptedServer in a child process, {nagle}, L = {args.latency * 1000:.0f} ms per request; "
              f"each measurement in a fresh process")  # fmt: skip
        print(f"run_tag: {args.papers} papers, concurrency {args.concurrency}, real openai client + instructor, "
              f"empty cache")  # fmt: skip
        print(f"  wall time:        {wall:.2f}s  ({args.papers / wall:.1f} papers/s)")
        print(f"  ideal N*L/C:      {ideal:.2f}s")
        print(f"  ratio:            {wall / ideal:.3f}  (target <= 1.15)")
        print(f"  server saw:       {stats['run_tag'].get('requests')} requests, "
              f"peak {stats['run_tag'].get('peak_in_flight')} in flight")  # fmt: skip
        print(f"  client CPU:       {cpu:.2f}s = {cpu / args.papers * 1000:.1f} ms/paper "
              f"(CPU-bound once this exceeds L/C = {args.latency / args.concurrency * 1000:.1f} ms)")  # fmt: skip
        print(f"baseline: bare asyncio.gather + Semaphore({args.concurrency}) over Extractor.extract, same server: "
              f"{gathered:.2f}s, ratio {gathered / ideal:.3f}; run_tag / bare = {wall / gathered:.3f}")  # fmt: skip
        print(f"control: same run_tag, FakeBackend sleeping {args.latency * 1000:.0f} ms (no HTTP, no instructor): "
              f"{control:.2f}s, ratio {control / ideal:.3f}")  # fmt: skip
        per = seq / args.sequential
        print(f"sequential loop ({args.sequential} papers, Extractor.extract one at a time): {seq:.2f}s "
              f"= {per * 1000:.0f} ms/paper -> {per * args.papers:.0f}s for {args.papers} "
              f"({per * args.papers / wall:.1f}x the concurrent run_tag)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
