"""The order in which the digest and the report list a run's papers.

Scored records carry P(on-topic) (`Confidence.subject`). Listing by it, highest first, puts
the papers a reader of a raw feed wants at the top whatever gate threshold the run used, and
leaves the uncertain middle in one place. A run with no such probability (generated
decisions) keeps the order each output has always used, so its files do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

from .schemas import PaperRecord, Result


def on_topic(record: PaperRecord) -> float | None:
    """P(the paper is about the taxonomy's subject), or None when that decision was not scored."""
    return record.confidence.subject if record.confidence is not None else None


def is_ranked(results: Sequence[Result]) -> bool:
    return any(on_topic(r.record) is not None for r in results)


def ranked(results: Sequence[Result]) -> list[Result]:
    """`results` (in the output's usual order) by P(on-topic), highest first.

    Ties, and records without a probability, keep their usual relative order; those without
    one come last, since nothing says they are on-topic. Unchanged when no record has one.
    """
    if not is_ranked(results):
        return list(results)

    def key(result: Result) -> tuple[bool, float]:
        p = on_topic(result.record)
        return (p is None, -p if p is not None else 0.0)

    return sorted(results, key=key)  # stable: ties stay in the usual order


def on_topic_label(record: PaperRecord) -> str:
    p = on_topic(record)
    return "P(on-topic) unknown" if p is None else f"P(on-topic) {p:.2f}"


def review_label(record: PaperRecord) -> str:
    """'needs review' and its reasons, for a flagged record (empty for one that is not)."""
    if not record.needs_review:
        return ""
    return "needs review" + (": " + "; ".join(record.review_reasons) if record.review_reasons else "")
