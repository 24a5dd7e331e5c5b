"""Entry point of the embedded model server: llama-cpp-python's OpenAI-compatible server, with
one cost removed.

llama-cpp-python (0.3.x) answers a request for `logprobs` by taking the log-softmax of the
whole score matrix, one row of ~152k floats for every token of the prompt, and then keeps only
the rows of the generated tokens. A scored decision asks for one token after a ~1,000-token
prompt, so that discarded work (~2 s on two cores) cost more than the question itself (~0.3 s
of decoding once the paper's prefix is cached). `_RowsOnDemand` defers the log-softmax until
the rows are sliced out, so only those rows are computed; the values are unchanged.

Run as `python -m summarizer.llamacpp_server <llama_cpp.server arguments>`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class _RowsOnDemand:
    """A score matrix whose log-softmax is computed only for the rows that are read."""

    def __init__(self, logits: np.ndarray[Any, Any], original: Any) -> None:
        self._logits = logits
        self._original = original

    def __getitem__(self, rows: Any) -> Any:
        return self._original(self._logits[rows])

    def __len__(self) -> int:
        return len(self._logits)

    def __iter__(self) -> Any:
        return (self._original(row) for row in self._logits)


def install() -> None:
    """Make `Llama.logits_to_logprobs` lazy for 2-D inputs (idempotent)."""
    from llama_cpp import Llama

    current = Llama.__dict__["logits_to_logprobs"]
    if getattr(current, "__summarizer_lazy__", False):
        return
    original = current.__func__

    def logits_to_logprobs(logits: Any, axis: int = -1) -> Any:
        if axis == -1 and isinstance(logits, np.ndarray) and logits.ndim == 2:
            return _RowsOnDemand(logits, original)
        return original(logits, axis)

    logits_to_logprobs.__summarizer_lazy__ = True  # type: ignore[attr-defined]
    Llama.logits_to_logprobs = staticmethod(logits_to_logprobs)  # type: ignore[method-assign]


def main() -> None:
    install()
    from llama_cpp.server.__main__ import main as serve

    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
