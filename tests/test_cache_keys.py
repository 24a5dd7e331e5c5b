from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from summarizer.cache import ResponseCache
from summarizer.extract import Extractor
from summarizer.fakes import FakeBackend
from summarizer.schemas import Paper
from summarizer.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PAPER = Paper.from_text("A Paper", "We do a thing. It works well.")


def key(tmp_path: Path, backend: FakeBackend | None = None, **settings: object) -> str:
    settings.setdefault("cache_dir", tmp_path / "cache")
    ex = Extractor(Settings(**settings), backend=backend or FakeBackend())  # type: ignore[arg-type]
    return ex.key_for(PAPER)


def copy_prompts(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", target)
    return target


def test_operational_settings_do_not_change_the_key(tmp_path: Path) -> None:
    base = key(tmp_path)
    assert key(tmp_path, timeout_s=5) == base
    assert key(tmp_path, max_retries=0, retry_max_wait_s=1) == base
    assert key(tmp_path, concurrency=64, requests_per_minute=10, tokens_per_minute=1000) == base
    assert key(tmp_path, cache_dir=tmp_path / "elsewhere") == base
    assert key(tmp_path, api_key=SecretStr("sk-other")) == base


def test_everything_that_affects_output_changes_the_key(tmp_path: Path) -> None:
    base = key(tmp_path)
    assert key(tmp_path, temperature=0.7) != base
    assert key(tmp_path, max_tokens=500) != base
    assert key(tmp_path, seed=1) != base
    assert key(tmp_path, max_reasks=0) != base
    assert key(tmp_path, backend=FakeBackend(model="other-model")) != base


def test_a_prompt_edit_changes_the_key(tmp_path: Path) -> None:
    prompts = copy_prompts(tmp_path)
    before = key(tmp_path, prompts_dir=prompts)
    with (prompts / "system.j2").open("a") as fh:
        fh.write("\nBe concise.\n")
    assert key(tmp_path, prompts_dir=prompts) != before


def test_a_taxonomy_edit_changes_the_key(tmp_path: Path) -> None:
    prompts = copy_prompts(tmp_path)
    before = key(tmp_path, prompts_dir=prompts)
    text = (prompts / "taxonomy.toml").read_text().replace("Policy, regulation", "Policy, law, regulation")
    (prompts / "taxonomy.toml").write_text(text)
    assert key(tmp_path, prompts_dir=prompts) != before


def test_paper_text_changes_the_key(tmp_path: Path) -> None:
    ex = Extractor(Settings(cache_dir=tmp_path / "c"), backend=FakeBackend())
    assert ex.key_for(PAPER) != ex.key_for(Paper.from_text("A Paper", "We do a thing. It works badly."))


def test_secrets_never_enter_key_material(tmp_path: Path) -> None:
    sentinel = "sk-SENTINEL-key-0042"
    ex = Extractor(Settings(cache_dir=tmp_path / "c", api_key=SecretStr(sentinel), base_url="http://127.0.0.1:9/v1"))
    parts = repr(ex.key_parts(PAPER.title, PAPER.abstract))
    assert sentinel not in parts
    assert "127.0.0.1:9/v1" in parts  # a key in the URL's query is refused (tests/test_transport.py)
    assert sentinel not in repr(ex.settings)


def test_cache_stats_and_clear(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c") as cache:
        cache.set("k", {"a": 1})
        assert cache.get("k") == {"a": 1}
        assert cache.get("missing") is None
        stats = cache.stats()
        assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)
        assert cache.clear() == 1
        assert cache.stats().entries == 0


def test_fast_key_path_equals_the_documented_key(tmp_path: Path) -> None:
    from summarizer.cache import cache_key
    from summarizer.sources import read_inputs

    ex = Extractor(Settings(cache_dir=tmp_path / "c"), backend=FakeBackend())
    for paper in read_inputs(sorted((ROOT / "examples/seeds").glob("*.txt"))):
        assert ex.key_for(paper) == cache_key(ex.key_parts(paper.title, paper.abstract))


# What the seed papers' rendered prompts and answer schemas hashed to at each pipeline's render
# version. The cache key does not hash the rendering code itself, so a change to it that does
# not bump the version would serve (and replay) answers to prompts the model was never shown.
RENDERED_AT_VERSION = (2, "9f4aeb46c02ae17698d52fbc56ac80c2529cb68e559e4a9e6e09ef8d8224c676")
SCORED_RENDERED_AT_VERSION = (5, "02bc6ca8c6d725c2abb5a8ac929857f41b78eb75047d6fce696db12f755b3a95")


def _seed_papers() -> list[Any]:
    from summarizer.sources import read_inputs

    return read_inputs(sorted((ROOT / "examples/seeds").glob("*.txt")))


def test_rendering_changes_bump_the_render_version(tmp_path: Path) -> None:
    import hashlib
    import json

    from summarizer.extract import RENDER_VERSION

    ex = Extractor(Settings(cache_dir=tmp_path / "c"), backend=FakeBackend())
    digest = hashlib.sha256()
    for paper in _seed_papers():
        prepared = ex.prepare(paper)
        schema = prepared.answer_model.model_json_schema()
        digest.update(json.dumps([prepared.messages[-1], schema, prepared.warnings], sort_keys=True).encode())
    assert (RENDER_VERSION, digest.hexdigest()) == RENDERED_AT_VERSION, (
        "the seed papers now render differently: bump RENDER_VERSION in summarizer/extract.py and "
        f"set RENDERED_AT_VERSION here to the new version and {digest.hexdigest()!r}"
    )


def test_scored_rendering_changes_bump_its_render_version(tmp_path: Path) -> None:
    import hashlib
    import json

    from summarizer.extract import SCORED_RENDER_VERSION

    ex = Extractor(Settings(cache_dir=tmp_path / "c", decisions="scored"), backend=FakeBackend())
    scored = ex.scored
    assert scored is not None
    digest = hashlib.sha256()
    for paper in _seed_papers():
        prepared = ex.prepare(paper)
        s, names = prepared.sentences, prepared.names
        questions = [(q.key, q.text, q.options) for q in scored.questions.first_round(names, len(s))]
        questions += [(q.key, q.text) for q in scored.questions.second_round(names[:1])]
        rendered = [scored.system, scored.questions.paper_block(paper.title, s), questions]
        digest.update(json.dumps(rendered, sort_keys=True).encode())
    assert (SCORED_RENDER_VERSION, digest.hexdigest()) == SCORED_RENDERED_AT_VERSION, (
        "the seed papers now render differently on the scored path: bump SCORED_RENDER_VERSION in "
        f"summarizer/extract.py and set SCORED_RENDERED_AT_VERSION here to it and {digest.hexdigest()!r}"
    )
