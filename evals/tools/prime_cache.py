"""Copy the records of a replay store into the response cache, under the keys they were recorded at.

Scored decisions start from the generated answer, cached under the generated record's key. The
replay store already holds that answer for every gold and dev paper (recorded by
`summarizer eval --decisions generated`), so copying it into the cache leaves a scored
re-recording only the one-token questions to ask the model. A key names everything the answer
depends on (backend, model, prompts, taxonomy, schema, sampling, paper), so a copied record is
exactly what the model would answer again; failures are not copied.

    python evals/tools/prime_cache.py cache/replay/gold.jsonl cache/replay/dev.jsonl [--cache-dir cache]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from summarizer.cache import ResponseCache
from summarizer.replay import ReplayStore
from summarizer.schemas import Result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    args = parser.parse_args()
    cache = ResponseCache(args.cache_dir)
    copied = 0
    try:
        for path in args.stores:
            store = ReplayStore.load(path)
            for key in store.keys():
                outcome = store.get(key)
                if isinstance(outcome, Result) and outcome.provenance.cache_key == key:
                    cache.set(key, outcome.model_dump(mode="json", exclude={"source"}))
                    copied += 1
    finally:
        cache.close()
    print(f"copied {copied} records into {args.cache_dir}")


if __name__ == "__main__":
    main()
