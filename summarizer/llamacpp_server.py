"""Entry point of the embedded model server: llama-cpp-python's OpenAI-compatible server, with
two costs removed.

llama-cpp-python (0.3.x) returns `logprobs` only from a model loaded with `logits_all`, and then
(1) runs the output layer (1536 x 151,936) on every prompt token and copies each row into the
score matrix, and (2) takes the log-softmax of the whole matrix, though it keeps only the rows
of the generated tokens. A scored decision asks for one token after a ~1,000-token prompt, so
both are discarded work that cost more than the question itself.

- `_last_rows_eval` asks llama.cpp for the logits of the last token of each batch only, which
  are the only rows a request without `echo` reads (the first generated token's row is the
  prompt's last; each later one is the last of its one-token batch).
- `_RowsOnDemand` defers the log-softmax until the rows are sliced out.

The values read are unchanged (tests/test_embedded.py compares them with the unpatched server's).

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


def _last_rows_eval(self: Any, tokens: Any) -> None:
    """`Llama.eval` (0.3.36) with logits for the last token of each batch only."""
    self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
    for i in range(0, len(tokens), self.n_batch):
        batch = tokens[i : min(len(tokens), i + self.n_batch)]
        n_past, n_tokens = self.n_tokens, len(batch)
        self._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)  # the last token's are always on
        self._ctx.decode(self._batch)
        self.input_ids[n_past : n_past + n_tokens] = batch
        if self._logits_all:
            last = np.ctypeslib.as_array(self._ctx.get_logits(), shape=(self._n_vocab,))
            self.scores[n_past + n_tokens - 1, :] = last
        self.n_tokens += n_tokens
        self._requires_eval = False


def install() -> None:
    """Patch `Llama` (idempotent): logits for the last token of each batch only, and a lazy
    log-softmax for 2-D inputs."""
    from llama_cpp import Llama

    if not getattr(Llama.eval, "__summarizer_last_rows__", False):
        _last_rows_eval.__summarizer_last_rows__ = True  # type: ignore[attr-defined]
        Llama.eval = _last_rows_eval  # type: ignore[method-assign]

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
