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
