"""What a run costs: USD prices per model, and the tokens a paper is expected to take.

A model's price comes from, first match wins:

1. this machine: the embedded model and any server on a loopback address cost nothing;
2. the user's own TOML table, when `price_table_path` (`SUMMARIZER_PRICE_TABLE_PATH`) names one;
3. the `genai-prices` catalogue (Pydantic's list prices of the hosted providers, shipped inside
   the package, read offline), found by the server's URL and the model name.

An unknown model has no price: a run against it can be bounded by tokens but not by dollars.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, SummarizerError
from .extract import Extractor
from .progress import ModeCost
from .schemas import Paper, Usage
from .settings import Settings

#: Backends whose calls cost nothing whatever the model is called.
FREE_BACKENDS = frozenset({"embedded"})

#: Tokens of the request the catalogue is asked to price. Rates are per token, except where a
#: provider charges more past a long-context threshold (128k or 200k tokens): a request of
#: ten thousand, the size of a paper's prompt and answer, gets the rate papers pay.
_CATALOGUE_REQUEST_TOKENS = 10_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens of one model, and where that figure comes from."""

    model: str
    input_per_m: float
    output_per_m: float
    source: str = ""

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.input_per_m + usage.completion_tokens * self.output_per_m) / 1e6


def load_prices(path: Path) -> dict[str, Any]:
    """A user's price table: `[models."NAME"] input = …, output = …` (USD per 1M tokens), and
    optionally `free_backends` and `free_hosts` lists."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read price table {path}: {exc}") from exc
    for model, entry in data.get("models", {}).items():
        ok = isinstance(entry, dict) and all(isinstance(entry.get(k), int | float) for k in ("input", "output"))
        if not ok or entry["input"] < 0 or entry["output"] < 0:
            raise ConfigError(f"price table {path}: model {model!r} needs input and output prices ≥ 0")
    return data


def is_local(host: str | None) -> bool:
    """A loopback host (localhost, 127.0.0.0/8, ::1): a server on this machine, whose calls are free."""
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def price_for(identity: dict[str, str], settings: Settings) -> Price | None:
    """The model's price, 0 for local models, or None when unknown (cost is then not estimated)."""
    model, backend = identity.get("model", ""), identity.get("backend", "")
    base_url = identity.get("base_url") or None
    host = urlsplit(base_url).hostname if base_url else None
    if backend in FREE_BACKENDS or is_local(host):
        return Price(model or backend, 0.0, 0.0, "local")
    if settings.price_table_path is not None:
        price = _table_price(load_prices(settings.price_table_path), model, backend, host)
        if price is not None:
            return Price(price.model, price.input_per_m, price.output_per_m, str(settings.price_table_path))
    return catalogue_price(model, base_url) if model else None


def _table_price(table: dict[str, Any], model: str, backend: str, host: str | None) -> Price | None:
    models: dict[str, dict[str, float]] = table.get("models", {})
    # Dated snapshots ("gpt-4o-mini-2024-07-18") take the price of their family.
    names = [m for m in models if model == m or model.startswith(m + "-")]
    if names:
        entry = models[max(names, key=len)]
        return Price(model, float(entry["input"]), float(entry["output"]))
    if backend in table.get("free_backends", []) or host in table.get("free_hosts", []):
        return Price(model or backend, 0.0, 0.0)
    return None


def catalogue_price(model: str, base_url: str | None = None) -> Price | None:
    """The model's list price in genai-prices, at the provider the URL names; None if unknown.

    A server the catalogue does not know (a proxy, a gateway) is priced as the model's own
    provider would charge, which is the best estimate there is."""
    from genai_prices import Usage as CatalogueUsage  # 0.1 s to import: only when a price is needed
    from genai_prices import __version__, calc_price

    request = CatalogueUsage(input_tokens=_CATALOGUE_REQUEST_TOKENS, output_tokens=_CATALOGUE_REQUEST_TOKENS)
    for url in dict.fromkeys([base_url, None]):
        try:
            calc = calc_price(request, model, provider_api_url=url) if url else calc_price(request, model)
        except LookupError:
            continue
        per_m = Decimal(1_000_000) / _CATALOGUE_REQUEST_TOKENS
        where = "" if url or base_url is None else ", server not in the catalogue"
        return Price(
            model,
            float(Decimal(calc.input_price) * per_m),
            float(Decimal(calc.output_price) * per_m),
            f"genai-prices {__version__}: {calc.provider.id} {calc.model.id}{where}",
        )
    return None


#: Papers a dry run renders to average each mode's per-paper cost (the plan's totals use all).
_MODE_SAMPLE = 50


def mode_costs(extractor: Extractor, papers: list[Paper], price: Price | None) -> list[ModeCost]:
    """Per-paper requests, tokens and cost of generated and of scored decisions, averaged over
    (up to 50 of) `papers`.

    Scored decisions send the generated request and then one short request per question, each
    re-sending the instructions and the paper: free on a local server that keeps the prefix,
    billed in full by a paid API (before any prompt-caching discount).
    """
    from .decide import QuestionSet
    from .prompts import load_prompts
    from .scored import SCORED_TEMPLATES

    questions = QuestionSet(load_prompts(extractor.settings.prompts_dir, SCORED_TEMPLATES), extractor.taxonomy)
    system = questions.system()
    sample = papers[:_MODE_SAMPLE]
    generated, scored, asked = Usage(), Usage(), 0
    for paper in sample:
        try:
            prepared = extractor.prepare(paper)
        except SummarizerError:
            continue
        one = Usage(
            prompt_tokens=sum(len(m["content"]) for m in prepared.messages) // 4,
            completion_tokens=extractor.settings.expected_output_tokens,
        )
        block = questions.paper_block(paper.title, prepared.sentences)
        # The first round, plus one "introduced?" question where there are dataset names to ask about.
        first = questions.first_round(prepared.names, len(prepared.sentences))
        n = len(first) + (len(first) > 2)
        chars = n * (len(system) + len(block)) + sum(len(q.text) for q in first)
        generated = generated + one
        scored = scored + one + Usage(prompt_tokens=chars // 4, completion_tokens=n)
        asked += n
    count = max(len(sample), 1)

    def per_paper(mode: str, total: Usage, requests: float) -> ModeCost:
        usage = Usage(prompt_tokens=total.prompt_tokens // count, completion_tokens=total.completion_tokens // count)
        return ModeCost(mode, requests, usage, price.cost(usage) if price else None)

    return [per_paper("generated", generated, 1.0), per_paper("scored", scored, 1.0 + asked / count)]


def estimate_usage(extractor: Extractor, paper: Paper) -> Usage:
    """Tokens a paper should cost: chars/4 of its rendered prompt plus a fixed expected answer."""
    try:
        chars = sum(len(m["content"]) for m in extractor.prepare(paper).messages)
    except SummarizerError:
        chars = 0  # an unusable paper fails before any call
    return Usage(prompt_tokens=chars // 4, completion_tokens=extractor.settings.expected_output_tokens)
