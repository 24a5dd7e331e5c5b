"""Issue 15 item 5: a current price table. Hosted models are priced from the genai-prices
catalogue (shipped in the package, read offline); the embedded model and servers on this
machine cost nothing; a user's own table comes before the catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import genai_prices
import pytest
from rich.console import Console

from summarizer.batch import run_tag
from summarizer.fakes import FakeBackend, valid_answer
from summarizer.pricing import catalogue_price, is_local, price_for
from summarizer.progress import render_summary
from summarizer.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seeds" / "001_3f36dc078def8be6.txt"
OPENAI = "https://api.openai.com/v1"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.5", "::1", "llm.localhost"])
def test_loopback_hosts_are_local(host: str) -> None:
    assert is_local(host)


@pytest.mark.parametrize("host", [None, "", "api.openai.com", "10.0.0.5", "192.168.1.2", "localhost.example.com"])
def test_other_hosts_are_not(host: str | None) -> None:
    assert not is_local(host)


@pytest.mark.parametrize(
    "identity",
    [
        {"backend": "embedded", "model": "gguf:sha256:abc"},
        # A known model's name on a local server is still free: it runs on this machine.
        {"backend": "openai", "model": "gpt-4o-mini", "base_url": "http://127.0.0.1:8080/v1"},
        {"backend": "openai", "model": "qwen", "base_url": "http://[::1]:11434/v1"},
    ],
)
def test_local_backends_cost_nothing(identity: dict[str, str]) -> None:
    price = price_for(identity, Settings())
    assert price is not None and (price.input_per_m, price.output_per_m, price.source) == (0.0, 0.0, "local")


def test_hosted_models_come_from_the_catalogue() -> None:
    s = Settings()
    # A dated snapshot takes its family's price; the URL names the provider.
    price = price_for({"backend": "openai", "model": "gpt-4o-mini-2024-07-18", "base_url": OPENAI}, s)
    assert price is not None and (price.input_per_m, price.output_per_m) == (0.15, 0.60)
    assert price.source == f"genai-prices {genai_prices.__version__}: openai gpt-4o-mini"
    # A router's model names are the router's, priced by its own entry.
    routed = price_for(
        {"backend": "openai", "model": "openai/gpt-4o-mini", "base_url": "https://openrouter.ai/api/v1"}, s
    )
    assert routed is not None and routed.source.endswith("openrouter openai/gpt-4o-mini")
    # A gateway the catalogue does not know: the model's own provider's price, and it says so.
    gateway = price_for({"backend": "openai", "model": "gpt-4o-mini", "base_url": "https://llm.corp.example/v1"}, s)
    assert gateway is not None and gateway.input_per_m == 0.15 and "server not in the catalogue" in gateway.source
    # The catalogue is newer than the table it replaced: models the table never had.
    assert catalogue_price("gpt-5") is not None and catalogue_price("claude-sonnet-4-20250514") is not None


def test_unknown_models_have_no_price() -> None:
    s = Settings()
    assert price_for({"backend": "openai", "base_url": "https://api.example.com/v1", "model": "mystery"}, s) is None
    assert price_for({"backend": "openai", "base_url": OPENAI, "model": ""}, s) is None
    assert price_for({"backend": "fake", "model": "fake-model"}, s) is None


def test_a_users_table_comes_first(tmp_path: Path) -> None:
    table = tmp_path / "prices.toml"
    table.write_text('free_hosts = ["gpu.lab.example"]\n[models."gpt-4o-mini"]\ninput = 0.1\noutput = 0.2\n')
    s = Settings(price_table_path=table)
    mine = price_for({"backend": "openai", "model": "gpt-4o-mini-2024-07-18", "base_url": OPENAI}, s)
    assert mine is not None and (mine.input_per_m, mine.output_per_m, mine.source) == (0.1, 0.2, str(table))
    lab = price_for({"backend": "openai", "model": "llama", "base_url": "http://gpu.lab.example/v1"}, s)
    assert lab is not None and lab.input_per_m == lab.output_per_m == 0.0
    # What the table lacks still comes from the catalogue.
    other = price_for({"backend": "openai", "model": "gpt-4.1", "base_url": OPENAI}, s)
    assert other is not None and other.source.startswith("genai-prices") and other.input_per_m == 2.0


async def test_dry_run_prices_a_hosted_model_and_says_where_from(tmp_path: Path) -> None:
    s = Settings(cache_dir=tmp_path / "cache")
    backend = FakeBackend(responder=valid_answer, model="gpt-4o-mini")
    summary = await run_tag([SEED], tmp_path / "out", s, dry_run=True, backend=backend)
    plan = summary.plan
    assert plan is not None and backend.calls == [] and plan.to_send == 42
    assert plan.cost_usd == pytest.approx((plan.prompt_tokens * 0.15 + plan.completion_tokens * 0.60) / 1e6)
    assert plan.price_source is not None and plan.price_source.startswith("genai-prices")
    console = Console(record=True, width=200)
    console.print(render_summary(summary))
    text = console.export_text()
    assert f"${plan.cost_usd:,.4f} (price: genai-prices" in text


async def test_a_run_records_its_price_and_source(tmp_path: Path) -> None:
    s = Settings(cache_dir=tmp_path / "cache", concurrency=1)
    await run_tag([SEED], tmp_path / "out", s, backend=FakeBackend(responder=valid_answer, model="gpt-4o-mini"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    price = manifest["settings"]["price_per_million"]
    assert (price["input"], price["output"]) == (0.15, 0.60) and price["source"].startswith("genai-prices")
    assert manifest["cost_usd"] > 0


async def test_a_dry_run_shows_what_a_paper_costs_under_each_way_of_deciding(tmp_path: Path) -> None:
    # Issue 24 step 3: on a paid API every question re-sends the paper, so a user choosing
    # --decisions sees both before sending anything.
    s = Settings(cache_dir=tmp_path / "cache")
    backend = FakeBackend(responder=valid_answer, model="gpt-4o-mini")
    summary = await run_tag([SEED], tmp_path / "out", s, dry_run=True, backend=backend)
    plan = summary.plan
    assert plan is not None and backend.calls == [] and plan.mode == "generated"
    generated, scored = plan.modes
    assert (generated.mode, scored.mode) == ("generated", "scored")
    assert generated.requests == 1.0 and scored.requests >= 3.0
    # The generated request is part of the scored path, and each question re-sends the paper.
    assert scored.usage.prompt_tokens > generated.usage.prompt_tokens + (scored.requests - 1) * 100
    assert generated.cost_usd is not None and scored.cost_usd is not None and scored.cost_usd > generated.cost_usd
    # Averaged per paper: the plan's totals over its 42 papers agree with the generated mode's.
    assert abs(plan.prompt_tokens / plan.to_send - generated.usage.prompt_tokens) < 1
    console = Console(record=True, width=200)
    console.print(render_summary(summary))
    text = console.export_text()
    assert "per paper, generated  1.0 requests" in text and "(this run)" in text.split("per paper, generated")[1]
    assert "per paper, scored" in text and f"{scored.requests:.1f} requests" in text
