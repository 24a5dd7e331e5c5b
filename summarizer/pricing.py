"""What a run costs: USD prices per model, and the tokens a paper is expected to take.

Prices come from a TOML table (`prices.toml` beside this module, or
`SUMMARIZER_PRICE_TABLE_PATH`); local models and loopback servers cost nothing; an unknown
model has no price, so a run against it can be bounded by tokens but not by dollars.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError, SummarizerError
from .extract import Extractor
from .schemas import Paper, Usage
from .settings import Settings

DEFAULT_PRICES = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class Price:
    """USD per million tokens of one model."""

    model: str
    input_per_m: float
    output_per_m: float

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.input_per_m + usage.completion_tokens * self.output_per_m) / 1e6


def load_prices(path: Path | None = None) -> dict[str, Any]:
    source = path or DEFAULT_PRICES
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read price table {source}: {exc}") from exc
    for model, entry in data.get("models", {}).items():
        ok = isinstance(entry, dict) and all(isinstance(entry.get(k), int | float) for k in ("input", "output"))
        if not ok or entry["input"] < 0 or entry["output"] < 0:
            raise ConfigError(f"price table {source}: model {model!r} needs input and output prices ≥ 0")
    return data


def price_for(identity: dict[str, str], settings: Settings) -> Price | None:
    """The model's price, 0 for local models, or None when unknown (cost is then not estimated)."""
    table = load_prices(settings.price_table_path)
    models: dict[str, dict[str, float]] = table.get("models", {})
    model = identity.get("model", "")
    # Dated snapshots ("gpt-4o-mini-2024-07-18") take the price of their family.
    names = [m for m in models if model == m or model.startswith(m + "-")]
    if names:
        entry = models[max(names, key=len)]
        return Price(model, float(entry["input"]), float(entry["output"]))
    host = urlsplit(identity.get("base_url", "")).hostname
    if identity.get("backend") in table.get("free_backends", []) or host in table.get("free_hosts", []):
        return Price(model or identity.get("backend", ""), 0.0, 0.0)
    return None


def estimate_usage(extractor: Extractor, paper: Paper) -> Usage:
    """Tokens a paper should cost: chars/4 of its rendered prompt plus a fixed expected answer."""
    try:
        chars = sum(len(m["content"]) for m in extractor.prepare(paper).messages)
    except SummarizerError:
        chars = 0  # an unusable paper fails before any call
    return Usage(prompt_tokens=chars // 4, completion_tokens=extractor.settings.expected_output_tokens)
