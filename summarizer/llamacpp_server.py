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

And one cost of constrained decoding: llama-cpp-python's sampler chain applies the grammar to
every one of the vocabulary's 151,936 candidates before each greedy pick, which halves decoding
speed. `_grammar_last_sample` picks the best token first and asks the grammar about that one
only, falling back to the whole chain when the grammar refuses it (as llama.cpp's own server
does). For greedy decoding the token is the same either way: the best token the grammar allows
is the best token whenever the grammar allows it.

The values read and the tokens generated are unchanged (tests/test_llamacpp_server.py compares
them with the unpatched library's).

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


class _GreedyGrammar:
    """The parts of a greedy, grammar-constrained sampler chain (penalties, grammar, greedy) that
    a fast pick needs, and the buffers it reuses from token to token."""

    def __init__(self, chain: Any, n_vocab: int) -> None:
        import ctypes

        import llama_cpp

        self.chain = chain
        self.penalties = llama_cpp.llama_sampler_chain_get(chain, 0)
        self.grammar = llama_cpp.llama_sampler_chain_get(chain, 1)
        self.n_vocab = n_vocab
        self.candidates = np.zeros(
            n_vocab, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        )
        self.candidates["id"] = np.arange(n_vocab, dtype=np.intc)
        self.one = llama_cpp.llama_token_data()
        data = self.candidates.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data))
        self.all = llama_cpp.llama_token_data_array(data=data, size=n_vocab, selected=-1, sorted=False)
        self.single = llama_cpp.llama_token_data_array(data=ctypes.pointer(self.one), size=1, selected=-1, sorted=False)

    def pick(self, ctx: Any, ridx: int) -> int | None:
        """The greedy token if the grammar allows it (accepted into the chain), else None."""
        import ctypes

        import llama_cpp

        logits = llama_cpp.llama_get_logits_ith(ctx, ridx)
        self.candidates["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self.all.size, self.all.selected, self.all.sorted = self.n_vocab, -1, False
        llama_cpp.llama_sampler_apply(self.penalties, ctypes.byref(self.all))  # in place, order kept
        token = int(np.argmax(self.candidates["logit"]))  # the first maximum, as the greedy sampler's
        self.one.id, self.one.logit, self.one.p = token, float(self.candidates["logit"][token]), 0.0  # type: ignore[assignment]
        self.single.size, self.single.selected, self.single.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self.single))
        if self.one.logit == -np.inf:
            return None
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token


def _install_grammar_last(llama: Any) -> None:
    original_init = llama._init_sampler
    original_sample = llama.sample

    def _init_sampler(self: Any, *args: Any, **kwargs: Any) -> Any:
        sampler = original_init(self, *args, **kwargs)
        # Only the chain a greedy, grammar-constrained request builds: penalties, grammar, greedy.
        plain = kwargs.get("logits_processor") is None and kwargs.get("mirostat_mode", 0) == 0
        if plain and kwargs.get("grammar") is not None and kwargs.get("temp") == 0.0:
            sampler.summarizer_greedy_grammar = _GreedyGrammar(sampler.sampler, self._n_vocab)
        return sampler

    def sample(self: Any, *args: Any, idx: int | None = None, **kwargs: Any) -> Any:
        fast = getattr(self._sampler, "summarizer_greedy_grammar", None)
        if fast is not None and not args:
            token = fast.pick(self._ctx.ctx, idx - self.n_tokens if idx is not None else -1)
            if token is not None:
                return token
        return original_sample(self, *args, idx=idx, **kwargs)

    _init_sampler.__summarizer_grammar_last__ = True  # type: ignore[attr-defined]
    llama._init_sampler = _init_sampler
    llama.sample = sample


def install() -> None:
    """Patch `Llama` (idempotent): logits for the last token of each batch only, a lazy
    log-softmax for 2-D inputs, and greedy constrained picks that ask the grammar about the
    picked token only."""
    from llama_cpp import Llama

    if not getattr(Llama._init_sampler, "__summarizer_grammar_last__", False):
        _install_grammar_last(Llama)

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
