"""Closed-set decisions, scored from the model's next-token log-probabilities and calibrated.

A small model that *generates* a label inside a long answer follows its majority-label and
recency biases, and a generated token carries no usable confidence. So every closed-set
choice (about the subject or not, category, contribution type, is this name a dataset, does
this sentence state a finding) is a short question whose answer is read from the
probabilities of the first answer token, mapped onto the question's options. Each question
type has a frozen prior (see `calibration.py`) that removes the template's label bias.

Nothing here talks to a model: these are the pure parts (option mapping, calibration,
choosing, review flags), so they are tested without one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

YES, NO = "Yes", "No"
BINARY = (YES, NO)

#: Log-probability given to an option that is missing from the server's top list: below the
#: smallest one it returned (the option is less likely than anything listed, how much less is unknown).
FLOOR_MARGIN = 1.0


def option_logprobs(top: Sequence[tuple[str, float]], options: Sequence[str]) -> dict[str, float]:
    """Log-probabilities of `options` from the top alternatives of one answer token.

    Tokenizers differ, so options are matched by text, not by token id: an alternative
    whose text (stripped, case-folded) begins an option counts for that option ("learning"
    for learning_from_feedback, " Yes" and "yes" for Yes). An alternative that begins several
    options is shared among them equally. An option with no alternative gets a floor below
    the smallest listed log-probability.
    """
    mass: dict[str, list[float]] = {o: [] for o in options}
    folded = {o: o.casefold() for o in options}
    for token, logprob in top:
        text = token.strip().strip('"').casefold()
        if not text:
            continue
        hits = [o for o in options if folded[o].startswith(text)]
        for o in hits:
            mass[o].append(logprob - math.log(len(hits)))
    floor = (min((lp for _, lp in top), default=0.0)) - FLOOR_MARGIN
    return {o: logsumexp(v) if v else floor for o, v in mass.items()}


def listed(top: Sequence[tuple[str, float]], options: Sequence[str]) -> set[str]:
    """The options that some top alternative begins (the rest got the floor)."""
    texts = [t.strip().strip('"').casefold() for t, _ in top]
    return {o for o in options if any(t and o.casefold().startswith(t) for t in texts)}


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def normalise(logprobs: Mapping[str, float]) -> dict[str, float]:
    """Probabilities over the options alone (the mass the model put elsewhere is dropped)."""
    z = logsumexp(list(logprobs.values()))
    return {o: math.exp(lp - z) for o, lp in logprobs.items()}


@dataclass(frozen=True)
class Scored:
    """One question's answer: calibrated probabilities over its options.

    `available` is False when the server returned no log-probabilities and the choice was
    generated instead: the probabilities are then one-hot and say nothing about confidence.
    """

    probabilities: dict[str, float]
    available: bool = True
    calibrated: bool = False

    @property
    def choice(self) -> str:
        return max(self.probabilities, key=lambda o: self.probabilities[o])

    @property
    def confidence(self) -> float | None:
        return self.probabilities[self.choice] if self.available else None

    def p(self, option: str) -> float:
        return self.probabilities.get(option, 0.0)

    def ranked(self) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])

    @classmethod
    def generated(cls, choice: str, options: Sequence[str]) -> Scored:
        return cls({o: float(o == choice) for o in options}, available=False)
