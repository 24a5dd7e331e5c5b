"""Batch runs under injected faults: is every paper one record or one failure, and nothing lost?

Part 1: `run_tag` (the library function behind `summarizer tag`) over 1,000 distinct papers
through the real openai client and instructor, against a `ScriptedServer` (in a child process)
that faults 30 % of requests, spread evenly over 429 + Retry-After, 5xx, connection resets,
hangs past the client's timeout, truncated JSON, schema-breaking JSON, names not in the
abstract, empty content and slow answers.

Part 2: the same papers and faults through the CLI (`python -m summarizer.cli tag`), killed
with SIGKILL at random points and started again after each kill, until a start runs to
the end.

Both are audited line by line (`summarizer.faultrun.audit_run`): every record re-validated
against its abstract, every failure has a reason; lost, duplicated, torn; the attempts the
papers account for against the requests the server saw.

    python benchmarks/faults.py [--papers 1000] [--rate 0.3] [--kills 5] [--concurrency 64] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import time
from pathlib import Path

from summarizer.batch import run_tag
from summarizer.faultrun import Audit, audit_run, kill_and_resume, make_inputs, run_env, tag_command
from summarizer.settings import Settings
from summarizer.testserver import Faults, ScriptedServer, ServerProcess

TIMEOUT_S, HANG_S, MAX_RETRIES, MAX_REASKS = 3.0, 3.5, 2, 1
BUDGET = (MAX_RETRIES + 1) * (MAX_REASKS + 1)
KINDS = ("429", "5xx", "reset", "hang", "truncated", "bad_schema", "bad_quote", "empty", "slow")


def faults(rate: float, seed: int) -> Faults:
    return Faults.spread(rate, seed=seed, retry_after_s=0.01, hang_s=HANG_S, slow_s=0.2)


def print_faults(counts: dict[str, int], requests: int) -> None:
    injected = {kind: counts.get(kind, 0) for kind in KINDS}
    total = sum(injected.values())
    faulted = total - injected["slow"]
    print(f"  server requests:  {requests:,} ({counts.get('ok', 0):,} answered normally)")
    print(f"  faults injected:  {total:,} = {100 * total / requests:.1f}% of requests "
          f"({faulted:,} = {100 * faulted / requests:.1f}% not counting slow-but-good answers)")  # fmt: skip
    print("    by kind:        " + ", ".join(f"{kind} {n}" for kind, n in injected.items()))


def print_audit(audit: Audit, papers: int) -> None:
    reasons = ", ".join(f"{error} {n}" for error, n in sorted(audit.failure_reasons.items())) or "none"
    print(f"  papers:           {papers:,}")
    print(f"  records:          {audit.records:,} (valid, re-checked against their abstracts; {audit.cache_hits} "
          "served from the cache)")  # fmt: skip
    print(f"  failures:         {audit.failures:,} ({reasons}), every one with a reason")
    print(f"  lost:             {len(audit.lost)}")
    print(f"  duplicated:       {len(audit.duplicated)}")
    print(f"  invalid lines:    {len(audit.invalid)}; torn last line: {'yes' if audit.torn else 'no'}")
    print(f"  max attempts/paper: {audit.max_attempts} (budget {BUDGET} = (max_retries {MAX_RETRIES} + 1) x "
          f"(max_reasks {MAX_REASKS} + 1))")  # fmt: skip


def part1(work: Path, n: int, rate: float, concurrency: int, seed: int) -> bool:
    papers = make_inputs(work / "papers.jsonl", n)
    # The server runs in a child process: sharing this one's GIL with a busy client, it could read
    # a request only after the client had timed out on it, and the two counts would differ by those.
    with ServerProcess(faults=faults(rate, seed)) as server:
        settings = Settings(
            backend="openai", base_url=server.base_url, model="scripted", cache_dir=work / "cache-1",
            timeout_s=TIMEOUT_S, max_retries=MAX_RETRIES, retry_max_wait_s=0.02, max_reasks=MAX_REASKS,
            concurrency=concurrency,
        )  # fmt: skip
        clock = time.monotonic()
        asyncio.run(run_tag(work / "papers.jsonl", work / "out-1", settings, export=False))
        wall = time.monotonic() - clock
        report = server.report()
    audit = audit_run(work / "out-1", papers)
    print(f"part 1: run_tag, {n:,} papers, {rate:.0%} of requests faulted (seed {seed}), concurrency {concurrency}, "
          f"timeout {TIMEOUT_S:g}s, hang {HANG_S:g}s")  # fmt: skip
    print_faults(report.counts, report.requests)
    print_audit(audit, n)
    print(f"  attempts:         {audit.attempts:,} counted by the papers vs {report.requests:,} requests the server "
          f"saw ({'equal' if audit.attempts == report.requests else 'DIFFERENT'})")  # fmt: skip
    print(f"  wall time:        {wall:.1f}s ({n / wall:.1f} papers/s)")
    ok = audit.clean and audit.records + audit.failures == n and audit.max_attempts <= BUDGET
    return ok and audit.attempts == report.requests


def part2(work: Path, n: int, rate: float, kills: int, concurrency: int, seed: int) -> bool:
    papers = make_inputs(work / "papers.jsonl", n)
    out = work / "out-2"
    env = run_env(timeout_s=TIMEOUT_S, max_retries=MAX_RETRIES, retry_max_wait_s=0.02, max_reasks=MAX_REASKS)
    # The client is a separate process here, so the server can share this (otherwise idle) one.
    with ScriptedServer(faults=faults(rate, seed + 1)) as server:
        args = ("-c", str(concurrency), "--log-format", "jsonl", "--no-export")
        command = tag_command(work / "papers.jsonl", out, server.base_url, work / "cache-2", *args)
        clock = time.monotonic()
        starts = kill_and_resume(command, out, papers=n, kills=kills, rng=random.Random(seed), env=env)
        wall = time.monotonic() - clock
        requests, counts = len(server.hits), dict(server.counts)
    audit = audit_run(out, papers)
    print(f"part 2: `summarizer tag` CLI, {n:,} papers, same faults, SIGKILL at {kills} random points, "
          "restarted after each")  # fmt: skip
    for s in starts:
        how = "killed (SIGKILL)" if s.killed else f"exit {s.returncode}"
        repaired = "; ".join(x for x in s.notices if "unfinished last line" in x)
        print(f"  start {s.number}: {s.records_before:>5,} records before, {s.records_after:>5,} after, {how}, "
              f"{s.seconds:.1f}s" + (f", repaired: {repaired}" if repaired else ""))  # fmt: skip
    print_faults(counts, requests)
    print_audit(audit, n)
    unaccounted = requests - audit.attempts
    print(f"  attempts:         {audit.attempts:,} counted by the papers' final lines vs {requests:,} requests the "
          f"server saw; {unaccounted:,} belong to no final line (in flight at a kill, or spent on a failure "
          "that a later start retried)")  # fmt: skip
    print(f"  wall time:        {wall:.1f}s over {len(starts)} starts")
    killed = all(s.killed for s in starts[:-1]) and not starts[-1].killed
    return audit.clean and audit.records + audit.failures == n and audit.max_attempts <= BUDGET and killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0.3, help="share of requests faulted")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    work = Path(tempfile.mkdtemp(prefix="faults-"))
    try:
        results = {
            "part 1": part1(work, args.papers, args.rate, args.concurrency, seed),
            "part 2": part2(work, args.papers, args.rate, args.kills, args.concurrency, seed),
        }
        print(" ".join(f"{name}: {'PASS' if ok else 'FAIL'}" for name, ok in results.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
