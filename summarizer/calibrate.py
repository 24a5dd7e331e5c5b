"""`summarizer calibrate`: fit a model's calibration of scored decisions and save it.

The model is asked the first-round questions (`decide.QuestionSet.first_round`) of every paper in
the pool, through the response cache, so a second run (or one after `summarizer eval` or `tag`
asked the same questions) needs no model. The category prior comes from the whole pool without
labels; thresholds, alpha and the finding position weight from the labelled dev papers
(`calibration.fit`). Gold papers are refused as dev papers: nothing is fitted on the gold set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .calibration import (
    Calibration,
    Combine,
    Labelled,
    Sample,
    fit,
    fit_combine,
    load_calibrations,
    save_calibration,
    scored_choice,
    yes_logodds,
)
from .decide import ask_all
from .errors import InputError
from .extract import Extractor
from .llm import Backend
from .schemas import Paper
from .scored import SubAnswers
from .scoring import GoldPaper, _span, load_gold, names_match
from .settings import Settings
from .similarity import class_similarity
from .sources import read_inputs
from .taxonomy import Taxonomy


def claims_found(sample: Sample, numbers: list[int]) -> tuple[int, int]:
    """How many of the sample's gold claims the chosen sentences cover, of how many."""
    abstract = " ".join(sample.sentences)
    chosen = [sp for n in numbers if (sp := _span(sample.sentences[n - 1], abstract)) is not None]
    claims = (sample.gold or {}).get("claims", [])
    hits = 0
    for claim in claims:
        span = _span(claim["evidence"], abstract)
        hits += span is not None and any(a < span[1] and span[0] < b for a, b in chosen)
    return hits, len(claims)


async def calibrate(
    settings: Settings,
    *,
    pool_files: Sequence[Path],
    dev_path: Path,
    out_path: Path,
    gold_path: Path | None = None,
    backend: Backend | None = None,
    on_paper: Callable[[Paper], None] | None = None,
    announce: Callable[[Backend], None] | None = None,
) -> Calibration:
    """Ask the pool's questions (cached), fit on the dev papers, and save to `out_path`.
    `announce` hears the backend once the inputs have passed their checks."""
    dev = {g.id: g for g in load_gold(dev_path)}
    if gold_path is not None and gold_path.exists():
        overlap = sorted(set(dev) & {g.id for g in load_gold(gold_path)})
        if overlap:
            raise InputError(f"dev papers are also gold papers: {', '.join(overlap[:5])}", path=dev_path)
    papers = {p.id: p for p in read_inputs(pool_files)}
    missing = sorted(set(dev) - set(papers))
    if missing:
        raise InputError(f"dev papers not found in the paper files: {', '.join(missing[:5])}", path=dev_path)
    async with Extractor(settings.model_copy(update={"decisions": "scored"}), backend=backend) as ex:
        if announce is not None:
            announce(ex.backend)
        pipeline = ex.scored
        assert pipeline is not None
        store = SubAnswers(ex.cache, ex.backend.identity) if ex.cache is not None else None
        samples: dict[str, Sample] = {}
        for paper in papers.values():
            prepared = ex.prepare(paper)
            block = pipeline.questions.paper_block(paper.title, prepared.sentences)
            questions = pipeline.questions.first_round(prepared.names, len(prepared.sentences))
            raw = await ask_all(ex.backend, pipeline.system, block, questions, store=store)
            gold = dev.get(paper.id)
            samples[paper.id] = Sample(
                raw,
                prepared.names,
                len(prepared.sentences),
                tuple(prepared.sentences),
                _labels(gold) if gold is not None else None,
            )
            if on_paper is not None:
                on_paper(paper)
        calibration = fit(
            ex.backend.label,
            ex.taxonomy,
            list(samples.values()),
            [samples[i] for i in dev],
            names_match=names_match,
            claim_found=claims_found,
        )
        combine = _combine(ex.taxonomy, calibration, [(papers[i], samples[i]) for i in dev])
        if combine is None:
            # Too few labelled papers to fit the gate: keep the combination this model had.
            previous = load_calibrations(out_path).for_model(calibration.model)
            combine = previous.combine if previous is not None else None
        calibration = calibration.model_copy(update={"combine": combine})
    save_calibration(out_path, calibration)
    return calibration


#: Fewer labelled papers on either side of the subject gate than this, and `calibrate` keeps the
#: model's previous combination: a logistic fit on a handful of papers is mostly its regulariser.
MIN_PER_SIDE = 10


def _combine(taxonomy: Taxonomy, calibration: Calibration, dev: list[tuple[Paper, Sample]]) -> Combine | None:
    outside = taxonomy.outside
    labelled = []
    for paper, sample in dev:
        lo = yes_logodds(sample.raw.answers.get("subject"))
        if lo is None or sample.gold is None:
            continue
        category = scored_choice(sample.raw.answers.get("category"), taxonomy.subject_ids, calibration.category)
        similarity = class_similarity(taxonomy, paper.title, paper.abstract)
        labelled.append(Labelled(lo, category, similarity, str(sample.gold["primary"])))
    on = sum(x.primary != outside for x in labelled)
    if outside is None or min(on, len(labelled) - on) < MIN_PER_SIDE:
        return None
    return fit_combine(labelled, outside)


def _labels(gold: GoldPaper) -> dict[str, object]:
    return gold.model_dump(mode="json")
