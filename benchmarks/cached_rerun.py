"""A re-run where every paper is already cached: how fast is `run_tag` end to end?

10,000 distinct papers (the seed abstracts under varied titles) are put in the cache with
`FakeBackend`; then the full `run_tag` (read the JSONL input, key every paper, read the
cache, write records.jsonl and the manifest) runs into a fresh output directory. The
baseline is a bare loop of `diskcache` gets over the same keys.

Targets: >= 2,000 papers/s, and at most 3x the bare loop.

    python benchmarks/cached_rerun.py [--papers 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import diskcache

from summarizer.batch import run_tag
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.settings import Settings
from summarizer.sources import read_inputs

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(path: Path, n: int) -> None:
    seeds = read_inputs(sorted((ROOT / "examples" / "seeds").glob("*.txt")))
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            seed = seeds[i % len(seeds)]
            fh.write(json.dumps({"title": f"{seed.title} (replication {i})", "abstract": seed.abstract}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cached-rerun-"))
    try:
        inputs = work / "papers.jsonl"
        make_inputs(inputs, args.papers)
        settings = Settings(cache_dir=work / "cache", concurrency=8)
        t0 = time.perf_counter()
        fill = asyncio.run(run_tag([inputs], work / "fill", settings, backend=FakeBackend(responder=valid_answer),
                                   export=False))  # fmt: skip
        print(f"cache filled with {fill.done} records via FakeBackend in {time.perf_counter() - t0:.1f}s")

        papers = read_inputs([inputs])
        extractor = Extractor(settings, backend=FakeBackend())
        keys = [extractor.key_for(p) for p in papers]
        assert extractor.cache is not None
        extractor.cache.close()

        def bare() -> float:
            cache = diskcache.Cache(str(settings.cache_dir))
            t = time.perf_counter()
            hits = sum(cache.get(k) is not None for k in keys)
            elapsed = time.perf_counter() - t
            cache.close()
            assert hits == len(keys)
            return elapsed

        def stage(fn: object) -> float:
            t = time.perf_counter()
            fn()  # type: ignore[operator]
            return time.perf_counter() - t

        def rerun(i: int, export: bool) -> float:
            out = work / f"rerun-{export}-{i}"
            backend = FakeBackend()  # empty queue: any model call would fail the run
            t = time.perf_counter()
            summary = asyncio.run(run_tag([inputs], out, settings, backend=backend, export=export))
            elapsed = time.perf_counter() - t
            assert summary.cached == summary.done == args.papers and not backend.calls, summary
            assert sum(1 for _ in (out / "records.jsonl").open()) == args.papers
            return elapsed

        bare_s = [bare() for _ in range(args.repeat)]
        read_s = [stage(lambda: read_inputs([inputs])) for _ in range(args.repeat)]
        key_s = [stage(lambda: [extractor.key_for(p) for p in papers]) for _ in range(args.repeat)]
        run_s = [rerun(i, export=False) for i in range(args.repeat)]
        exp_s = [rerun(i, export=True) for i in range(args.repeat)]

        med = statistics.median
        n = args.papers
        print(f"papers: {n:,} (all cached), repeats: {args.repeat}, medians (all runs in brackets)")
        print(f"bare diskcache get loop:       {med(bare_s):.3f}s  {[round(x, 3) for x in bare_s]}")
        print(f"  read_inputs alone:           {med(read_s):.3f}s  {[round(x, 3) for x in read_s]}")
        print(f"  Extractor.key_for alone:     {med(key_s):.3f}s  {[round(x, 3) for x in key_s]}")
        print(f"run_tag, records.jsonl only:   {med(run_s):.3f}s  {[round(x, 3) for x in run_s]}")
        print(f"  -> {n / med(run_s):,.0f} papers/s (target >= 2,000); "
              f"ratio to bare loop {med(run_s) / med(bare_s):.1f}x (target <= 3)")  # fmt: skip
        rest = med(run_s) - med(read_s)
        print(f"  -> without input parsing (run_tag - read_inputs): {rest:.3f}s, "
              f"ratio to bare loop {rest / med(bare_s):.1f}x")  # fmt: skip
        print(f"run_tag + CSV/Parquet/digest:  {med(exp_s):.3f}s  {[round(x, 3) for x in exp_s]}  "
              f"-> {n / med(exp_s):,.0f} papers/s")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
