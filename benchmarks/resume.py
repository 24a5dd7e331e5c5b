"""kill -9 a real `summarizer tag` run five times at random points, resume each time.

A 500-paper run (`python -m summarizer.cli tag ...`, the real openai client) against a
`ScriptedServer` is killed with SIGKILL at a random number of finished records, five
times, and started again with the same command after each kill; the sixth start runs to
the end. Then records.jsonl must hold every paper exactly once, with no torn line, and
failures.jsonl must be empty.

    python benchmarks/resume.py [--papers 500] [--kills 5] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import summarizer.testserver as ts
from summarizer.schemas import paper_id
from summarizer.sources import read_inputs
from summarizer.testserver import ScriptedServer

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(path: Path, n: int) -> list[str]:
    seeds = read_inputs(sorted((ROOT / "examples" / "seeds").glob("*.txt")))
    titles = [f"{seeds[i % len(seeds)].title} [resume {i}]" for i in range(n)]
    with path.open("w", encoding="utf-8") as fh:
        for i, title in enumerate(titles):
            fh.write(json.dumps({"title": title, "abstract": seeds[i % len(seeds)].abstract}) + "\n")
    return [paper_id(t) for t in titles]


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=500)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    work = Path(tempfile.mkdtemp(prefix="resume-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SUMMARIZER_"))}
    try:
        inputs = work / "papers.jsonl"
        expected = make_inputs(inputs, args.papers)
        out = work / "out"
        records = out / "records.jsonl"
        # Each kill resets the client's open connections; the server would print a traceback
        # for every one of them. They are expected here, so they are not printed.
        ts._HTTPServer.handle_error = lambda self, request, client_address: None  # type: ignore[method-assign]
        with ScriptedServer(delay_s=args.latency) as server:
            cmd = [sys.executable, "-m", "summarizer.cli", "tag", str(inputs), "-o", str(out), "--backend", "openai",
                   "--base-url", server.base_url, "--model", "scripted", "--cache-dir", str(work / "cache"),
                   "-c", "16", "--log-format", "jsonl", "--no-export"]  # fmt: skip
            print(
                f"{args.papers} papers, {args.kills} kills (seed {seed}), server latency {args.latency * 1000:.0f} ms"
            )
            repairs = 0
            for round_no in range(1, args.kills + 2):
                before = count_lines(records)
                last = round_no == args.kills + 1
                # A random point in what is left, away from both ends so the kill lands mid-run.
                target = before + rng.randint(1, max(1, (args.papers - before) * 2 // 3))
                # The event log goes to a file: a pipe nobody reads would fill and stall the run.
                log = work / f"events-{round_no}.jsonl"
                with log.open("wb") as sink:
                    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.PIPE)
                t = time.monotonic()
                if not last:
                    while proc.poll() is None and count_lines(records) < target:
                        time.sleep(0.005)
                    time.sleep(rng.uniform(0, 0.1))  # and then at a random moment, not just after a write
                    proc.send_signal(signal.SIGKILL)
                _, stderr = proc.communicate(timeout=600)
                lines = log.read_text(encoding="utf-8").splitlines()
                events = [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]
                notes = [e["message"] for e in events if e["event"] == "notice"]
                repairs += sum("unfinished last line" in n for n in notes)
                after = count_lines(records)
                outcome = (
                    f"killed (rc {proc.returncode})" if proc.returncode == -signal.SIGKILL else f"rc {proc.returncode}"
                )
                repaired = f", repaired: {'; '.join(notes)}" if notes else ""
                print(f"  start {round_no}: {before:>3} records before, {after:>3} after, {outcome}, "
                      f"{time.monotonic() - t:.1f}s{repaired}")  # fmt: skip
                if last and proc.returncode != 0:
                    print(stderr.decode()[-2000:])
        raw = records.read_bytes()
        lines = raw.decode().splitlines()
        ids: list[str] = []
        torn = 0 if raw.endswith(b"\n") else 1
        for line in lines:
            try:
                ids.append(json.loads(line)["record"]["paper_id"])
            except (ValueError, KeyError):
                torn += 1
        lost = len(set(expected) - set(ids))
        duplicated = len(ids) - len(set(ids))
        failures = count_lines(out / "failures.jsonl")
        manifest = json.loads((out / "manifest.json").read_text())
        print(f"records: {len(ids)} lines for {args.papers} papers; lost {lost}, duplicated {duplicated}, "
              f"torn/unreadable lines {torn}, failures listed {failures}, torn tails repaired on start {repairs}; "
              f"manifest status {manifest['status']}, runs {manifest['cumulative']['runs']}")  # fmt: skip
        print("PASS" if lost == duplicated == torn == failures == 0 else "FAIL")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
