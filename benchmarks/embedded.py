"""Embedded model: seconds per paper with and without re-use of the shared prompt prefix.

llama.cpp keeps the KV cache of the previous request and re-uses its longest common token
prefix. Papers share the system prompt (instructions + taxonomy), so from the second paper
on only the paper's own tokens are processed. To measure the same papers *without* re-use,
a tiny unrelated request is sent before each paper: it replaces the KV cache, so the next
paper must process the whole prompt again. Only the paper requests are timed.

    python benchmarks/embedded.py [N_PAPERS]      (default 20; about 25 minutes on 2 cores)

With `--decisions`, the same papers go through both decision modes in one run (prefix re-used,
empty response cache each): generated labels (one JSON answer) against scored decisions
(the same JSON answer, then one-token questions), with requests, prompt and output tokens per
paper:

    python benchmarks/embedded.py --decisions [N_PAPERS]     (default 10; about 10 minutes)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

from summarizer.extract import Extractor
from summarizer.llm import EmbeddedBackend
from summarizer.schemas import Failure, PaperRecord, Result
from summarizer.settings import Settings
from summarizer.sources import read_inputs

ROOT = Path(__file__).resolve().parent.parent


def recorded() -> dict[str, dict]:
    """Records in the committed replay stores (gold and dev), by cache key."""
    found: dict[str, dict] = {}
    for name in ("gold", "dev"):
        for line in (ROOT / f"cache/replay/{name}.jsonl").read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if "result" in entry:
                # Through the model, so that fields added since with their defaults compare equal.
                found[entry["key"]] = PaperRecord.model_validate(entry["result"]["record"]).model_dump(mode="json")
    return found


SAME: list[bool] = []  # per timed paper with a recorded record: the same record again?
RECORDED = recorded()


async def run(papers: list, bust: bool, decisions: str = "generated") -> list[tuple[float, int, int, bool, int]]:
    # The response cache is on (empty, in a fresh folder): the scored path keeps its sub-answers
    # there, as a user's run does; no paper is asked twice, so nothing is a cache hit.
    settings = Settings(cache_dir=Path(tempfile.mkdtemp()), concurrency=1, decisions=decisions)  # type: ignore[arg-type]
    rows = []
    async with Extractor(settings) as ex:
        assert isinstance(ex.backend, EmbeddedBackend)
        # Start the server and warm the prefix once, so both variants start equal.
        await ex.extract_or_failure(papers[0])
        server = ex.backend._server
        assert server is not None
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", timeout=600, max_retries=0)
        for paper in papers[1:]:
            if bust:
                await client.chat.completions.create(
                    model="x", messages=[{"role": "user", "content": "Say OK."}], max_tokens=1
                )
            started = time.perf_counter()
            outcome = await ex.extract_or_failure(paper)
            elapsed = time.perf_counter() - started
            if isinstance(outcome, Result):
                earlier = RECORDED.get(outcome.provenance.cache_key)
                if earlier is not None:
                    SAME.append(outcome.record.model_dump(mode="json") == earlier)
                usage = outcome.provenance.usage
                assert not outcome.provenance.cache_hit
                rows.append((elapsed, usage.prompt_tokens, usage.completion_tokens, True, outcome.provenance.attempts))
            else:
                assert isinstance(outcome, Failure)
                u = outcome.usage
                rows.append((elapsed, u.prompt_tokens, u.completion_tokens, False, outcome.attempts))
        await client.close()
    return rows


def report(name: str, rows: list[tuple[float, int, int, bool, int]]) -> float:
    mean = statistics.mean(r[0] for r in rows)
    print(
        f"{name:>16}: {mean:6.1f} s/paper (median {statistics.median(r[0] for r in rows):.1f}), "
        f"{statistics.mean(r[4] for r in rows):.1f} requests/paper, "
        f"prompt {statistics.mean(r[1] for r in rows):.0f} tok/paper, "
        f"completion {statistics.mean(r[2] for r in rows):.0f} tok/paper, "
        f"{sum(r[3] for r in rows)}/{len(rows)} valid"
    )
    return mean


def decisions(n: int) -> None:
    papers = read_inputs(sorted((ROOT / "examples/seeds").glob("*.txt")))[: n + 1]
    print(f"embedded model, {n} seed papers timed per mode (one more warms the server), prefix re-used")
    generated = report("generated", asyncio.run(run(papers, bust=False, decisions="generated")))
    scored = report("scored", asyncio.run(run(papers, bust=False, decisions="scored")))
    print(f"scored / generated seconds per paper: {scored / generated:.2f}")
    # A faster engine must not change what it writes: records the replay stores hold for the
    # same cache key (gold and dev papers) are compared field by field. Not all equal even so:
    # a prompt prefix reused from a different earlier request is computed in different batches,
    # which moves log-probabilities in the last digits (benchmarks/RESULTS.md).
    print(f"records equal to the committed replay stores' for the same key: {sum(SAME)} of {len(SAME)}")


def main() -> None:
    if "--decisions" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--decisions"]
        decisions(int(args[0]) if args else 10)
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    papers = read_inputs(sorted((ROOT / "examples/seeds").glob("*.txt")))[: n + 1]
    print(f"embedded model, {n} seed papers timed (one more warms the server), n_threads = all cores")
    with_reuse = report("prefix re-used", asyncio.run(run(papers, bust=False)))
    without = report("no re-use", asyncio.run(run(papers, bust=True)))
    print(f"wall time saved by prefix re-use: {(1 - with_reuse / without) * 100:.1f}%  (target >= 30%)")


if __name__ == "__main__":
    main()
