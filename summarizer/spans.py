"""The spans of an abstract a model may cite: numbered sentences and candidate names.

A small model asked to copy a method or dataset name often paraphrases it ("a unified
framework for ..."), which no validator can accept. So names are not typed by the model:
code lists the name-like spans of the abstract, and the response schema only admits those
(or null). Sentences work the same way for evidence. Both lists are exact substrings of the
whitespace-normalised abstract, so every citation resolves to verbatim text.
"""

from __future__ import annotations

import re

from .schemas import normalise_ws

_ABBREVIATIONS = frozenset("e.g i.e et al etc vs cf fig figs eq eqs sec no approx resp incl dr mr ms prof st".split())
# A sentence ends at . ! ? before a capital or digit in any script, or before markup that
# cannot continue a sentence ("<" of a tag, "%" of a LaTeX comment: text pasted after an
# abstract's sentence must not merge into it); and at a CJK full stop, space or not.
_STARTS = r"A-Z0-9<%\u0391-\u03a9\u0400-\u042f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
_BOUNDARY = re.compile(rf"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[{_STARTS}])|(?<=[。！？])\s*(?=\S)")


def split_sentences(text: str) -> list[str]:
    """Split an abstract into sentences that are verbatim substrings of it (whitespace aside)."""
    text = normalise_ws(text)
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        candidate = text[start : match.start()].rstrip()
        last_word = candidate.rsplit(" ", 1)[-1].rstrip(".").lstrip("([{\"'").lower()
        # "et al.", "e.g.", initials ("J. Smith") and decimals do not end a sentence.
        if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# A token that looks like a coined name: an inner capital or digit (CycleAlign, MATH500,
# MAH-DPO, GPT-4o, PiKa), or all capitals of length >= 2 (PRISM, URIAL).
_TOKEN = r"[A-Za-z][A-Za-z0-9]*(?:[-_+^*/.][A-Za-z0-9^*]+)*"
_NAMEY = re.compile(rf"(?<![\w-])({_TOKEN})(?![\w-])")
# "Long Name Words (ACRONYM)" and "ACRONYM (Long Name Words)".
_CONNECTOR = r"(?:of|for|in|and|with|to|via|from|the|on|a)"
_LONG_THEN_SHORT = re.compile(rf"((?:[A-Z][\w-]*\s+(?:{_CONNECTOR}\s+)*){{1,8}})\(([A-Z][\w\-^*]*)\)")
_SHORT_THEN_LONG = re.compile(r"\b([A-Z][A-Za-z0-9\-]*[A-Z][A-Za-z0-9\-]*)\s*\(([A-Z][^()]{3,100})\)")
# Two or more capitalised words in a row, not at the start of a sentence ("Reward Bench",
# "Dynamic Normativity", "Open LLM Leaderboard"), optionally with a version ("AlpacaEval 2.0").
# A dot only inside a word ("2.0"), so a run stops at a full stop ("Open LLM Leaderboard. Key").
_TITLE_RUN = re.compile(r"(?<=[a-z,;:] )((?:[A-Z][\w\-]*)(?:\s+[A-Z0-9][\w\-]*(?:\.\w+)*)+)")
_PARENTHESISED = re.compile(r"\(([A-Z][\w\-]{2,30})\)")
# A capitalised word after a lower-case word is often a name (Magpie, Meteor, ProgressGym).
# Only a lone capitalised word: one inside a run of them is covered by _TITLE_RUN.
_MID_SENTENCE_CAPITAL = re.compile(r"(?<![\w-])[a-z]+,? ([A-Z][a-z]{3,}[\w-]*)(?=[,.;:)]|\s+[a-z(])")
_COMMON_CAPITALISED = frozenset(
    """English Chinese Transformer Transformers Bayesian Gaussian Markov Pareto Nash Turing Internet
    However Moreover Furthermore Finally First Second Third Specifically Additionally Notably""".split()
)
_VERSION = re.compile(rf"(?<![\w-])({_TOKEN}\s+\d+(?:\.\d+)?)(?![\w.-])")

# Field words, not names: they are never a paper's own method or a named dataset.
_GENERIC = frozenset(
    """
    AI AGI LLM LLMs LM LMs MLLM MLLMs VLM VLMs NLP ML RL RLHF RLAIF SFT DPO PPO GRPO KL CoT
    HCI API GPU GPUs QA SOTA US UK EU OOD I II III IV
    """.split()
)


# A link is where the code is, never a method's or a dataset's name.
_URL = re.compile(r"https?://|www\.|(?:^|\s)[\w-]+(?:\.[\w-]+)+/")

# Taxonomy field rule: model names and metrics are not datasets. Families and common metrics,
# not a full list; a size suffix ("Med42-8B", "LLaMA-65b") marks any model.
_MODEL = re.compile(
    r"^(?:(?:Chat|Instruct)?GPT|LLaMA|LLaMa|Llama|LLAMA|Qwen|Mistral|Mixtral|Gemma|Gemini|Claude|PaLM|BERT|RoBERTa"
    r"|DeBERTa|T5|Falcon|Vicuna|Phi|DeepSeek|BLOOM|Pythia|CLIP)(?![A-Za-z])"
    r"|[-\s]\d+(?:\.\d+)?[BbMm](?![A-Za-z0-9])"
)
_METRIC = frozenset("F1 BLEU ROUGE ROUGE-L BERTScore METEOR MAE MSE RMSE AUC AUROC ECE".split())


def not_a_dataset(name: str) -> bool:
    """True for a candidate name that is a model or a metric, which the dataset field excludes."""
    return name in _METRIC or _MODEL.search(name) is not None


def _is_namey(token: str) -> bool:
    if token in _GENERIC or len(token) < 2:
        return False
    parts = token.split("-")
    if len(parts) > 1 and all(p.islower() or p in _GENERIC for p in parts):
        return False  # a compound adjective ("LLM-based", "human-AI", "pre-LLM")
    core = token.replace("-", "")
    inner_capital = any(ch.isupper() for ch in core[1:])
    has_digit = any(ch.isdigit() for ch in core) and any(ch.isalpha() for ch in core)
    return inner_capital or has_digit


def candidate_names(abstract: str, *, limit: int = 40) -> list[str]:
    """Name-like spans of the abstract, in order of first appearance, each a verbatim substring."""
    text = normalise_ws(abstract)
    found: dict[str, int] = {}

    def add(span: str, at: int) -> None:
        span = span.strip(" ,;:.")
        if len(span) >= 2 and span not in _GENERIC and span in text and not _URL.search(span):
            found.setdefault(span, at)

    for m in _LONG_THEN_SHORT.finditer(text):
        words = m.group(1).split()
        acronym = m.group(2)
        # "Even with Reinforcement Learning from AI Feedback (RLAIF)": drop the words before
        # the one that starts the acronym.
        while len(words) > 1 and words[0][0].upper() != acronym[0].upper():
            words.pop(0)
        long_form = " ".join(words)
        start = text.find(long_form, m.start())
        add(f"{long_form} ({acronym})", start)
        add(acronym, m.start(2))
        add(long_form, start)
    for m in _PARENTHESISED.finditer(text):
        add(m.group(1), m.start(1))
    for m in _MID_SENTENCE_CAPITAL.finditer(text):
        if m.group(1) not in _COMMON_CAPITALISED:
            add(m.group(1), m.start(1))
    for m in _SHORT_THEN_LONG.finditer(text):
        add(m.group(1), m.start(1))
        add(f"{m.group(1)} ({m.group(2)})", m.start(1))
    for m in _VERSION.finditer(text):
        if _is_namey(m.group(1).split()[0]):
            add(m.group(1), m.start(1))
    for m in _NAMEY.finditer(text):
        if _is_namey(m.group(1)) or (m.group(1).isupper() and len(m.group(1)) >= 3):
            add(m.group(1), m.start(1))
    for m in _TITLE_RUN.finditer(text):
        add(m.group(1), m.start(1))
    ordered = sorted(found, key=lambda s: (found[s], -len(s)))
    return ordered[:limit]


def sentence_containing(name: str, sentences: list[str]) -> int | None:
    """1-based number of the first sentence that holds `name` (case-insensitive)."""
    needle = name.casefold()
    for i, sentence in enumerate(sentences, 1):
        if needle in sentence.casefold():
            return i
    return None
