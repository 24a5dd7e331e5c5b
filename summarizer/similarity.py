"""A second signal for the subject and the category, from the taxonomy file alone.

The cosine similarity of a paper's title and abstract to each class description, as bags of
words (sublinear term frequency, English stop words removed, no inverse document frequency).
It needs no model and nothing fitted, so a user's own taxonomy gets it too; the descriptions
are keyword lists, which word overlap matches well.

Measured on the recorded answers (`evals/tools/similarity_probe.py`): among on-topic papers the
similarity picks the right class about as often as the model's scored category and the two
added beat either; added to the subject question's log-odds it separates on- from off-topic
papers better on both check lists. IDF fitted on the seed pages did not measure better than
none, and none keeps a paper's signal independent of any corpus.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

from .taxonomy import Taxonomy

_VECTORIZER = HashingVectorizer(n_features=2**20, alternate_sign=False, norm=None, stop_words="english")
_WEIGHTING = TfidfTransformer(use_idf=False, sublinear_tf=True, norm="l2")


def _vectors(texts: list[str]) -> Any:
    return _WEIGHTING.fit_transform(_VECTORIZER.transform(texts))


@lru_cache(maxsize=8)
def _descriptions(taxonomy_hash: str, ids: tuple[str, ...], texts: tuple[str, ...]) -> Any:
    return _vectors(list(texts))


def class_similarity(taxonomy: Taxonomy, title: str, abstract: str) -> dict[str, float]:
    """Cosine similarity of the paper to each of the subject's classes (in [0, 1])."""
    ids = tuple(taxonomy.subject_ids)
    by_id = {c.id: c.description for c in taxonomy.categories}
    classes = _descriptions(taxonomy.content_hash, ids, tuple(by_id[i] for i in ids))
    paper = _vectors([f"{title}. {abstract}"])
    sims = np.asarray((paper @ classes.T).todense()).ravel()
    return {i: round(float(s), 6) for i, s in zip(ids, sims, strict=True)}
