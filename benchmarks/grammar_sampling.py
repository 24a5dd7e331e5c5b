"""Constrained decoding: the library's sampler chain against asking the grammar about the picked token.

llama-cpp-python applies the JSON grammar to all 151,936 candidates before every greedy pick;
`summarizer.llamacpp_server` picks first and asks the grammar about that token only. This
runs the real default model in-process on the generated request of N seed papers, each twice
on the same context (the second request finds the whole prompt in the KV cache, so both decode
from identical state): once with the library's chain, once patched. It prints decode seconds
and tokens per second for each, and whether the answers are byte-identical.

    python benchmarks/grammar_sampling.py [N_PAPERS]     (default 5; about 4 minutes on 2 cores)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import llama_cpp

from summarizer import llamacpp_server
from summarizer.extract import Extractor
from summarizer.models import default_model_path
from summarizer.settings import Settings
from summarizer.sources import read_inputs

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    settings = Settings(decisions="generated", use_cache=False)
    ex = Extractor(settings)
    papers = read_inputs(sorted((ROOT / "examples/seeds").glob("*.txt")))[:n]
    llm = llama_cpp.Llama(str(default_model_path(None)), n_ctx=settings.n_ctx, verbose=False, seed=0)
    library = llama_cpp.Llama._init_sampler, llama_cpp.Llama.sample
    rows = []
    for paper in papers:
        prepared = ex.prepare(paper)
        schema = prepared.answer_model.model_json_schema()
        fmt = {"type": "json_object", "schema": schema}

        def answer(messages: list = prepared.messages, fmt: dict = fmt) -> tuple[str, int, float]:
            started = time.perf_counter()
            out = llm.create_chat_completion(
                messages, response_format=fmt, temperature=0.0, max_tokens=settings.max_tokens, seed=0
            )  # type: ignore[arg-type]
            elapsed = time.perf_counter() - started
            text = out["choices"][0]["message"]["content"]  # type: ignore[index]
            return str(text), int(out["usage"]["completion_tokens"]), elapsed  # type: ignore[index]

        llama_cpp.Llama._init_sampler, llama_cpp.Llama.sample = library  # type: ignore[method-assign]
        llm.create_completion(" ", max_tokens=1)  # evict: each paper's first request prefills its prompt
        answer()  # prefill the prompt, so that both timed requests start from the same cached state
        full = answer()
        llamacpp_server._install_grammar_last(llama_cpp.Llama)
        fast = answer()
        rows.append((paper.id, full, fast))
        print(
            f"{paper.id}: library chain {full[2]:5.1f} s ({full[1] / full[2]:4.1f} tok/s), "
            f"grammar last {fast[2]:5.1f} s ({fast[1] / fast[2]:4.1f} tok/s), "
            f"same answer: {full[0] == fast[0]}",
            flush=True,
        )
    llama_cpp.Llama._init_sampler, llama_cpp.Llama.sample = library  # type: ignore[method-assign]
    total_full = sum(r[1][2] for r in rows)
    total_fast = sum(r[2][2] for r in rows)
    tokens = sum(r[1][1] for r in rows)
    same = sum(r[1][0] == r[2][0] for r in rows)
    print(
        json.dumps(
            {
                "papers": len(rows),
                "completion_tokens": tokens,
                "library_chain_tok_per_s": round(tokens / total_full, 1),
                "grammar_last_tok_per_s": round(tokens / total_fast, 1),
                "speedup": round(total_full / total_fast, 2),
                "identical_answers": f"{same} of {len(rows)}",
            }
        )
    )


if __name__ == "__main__":
    main()
