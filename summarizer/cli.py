"""Command line: parse arguments, call one library function, render its result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .errors import InputError, SummarizerError
from .settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Summarise and tag research papers into verified, typed records.",
)
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the response cache.")
app.add_typer(cache_app, name="cache")

out = Console()
err = Console(stderr=True)

# Options shared by every command that calls a model. Their defaults are None so that the
# one Settings object (and its env vars) stays the single place where defaults live.
BackendOpt = Annotated[str | None, typer.Option("--backend", help="embedded | openai | auto")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name on the server.")]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")]
ModelPathOpt = Annotated[Path | None, typer.Option("--model-path", help="A GGUF file for the embedded backend.")]
CacheDirOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Cache directory (default ./cache).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]


def _settings(**overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if values.pop("no_cache", False):
        values["use_cache"] = False
    return Settings(**values)


def _fail(exc: SummarizerError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, InputError) else 1)


@app.command()
def summarize(
    input: Annotated[Path | None, typer.Argument(help="A paper file (txt, jsonl, csv); '-' reads stdin.")] = None,
    paper: Annotated[str | None, typer.Option("--paper", "-p", help="Id, title or #N of a paper in INPUT.")] = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
    abstract: Annotated[str | None, typer.Option("--abstract")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record with provenance as JSON.")] = False,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    model_path: ModelPathOpt = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
) -> None:
    """Summarise one paper and print its verified record."""
    from .extract import summarize_sync
    from .render import render_result
    from .sources import pick_paper

    try:
        stdin_text = (
            sys.stdin.read()
            if (input is not None and str(input) == "-") or (input is None and title is None and not sys.stdin.isatty())
            else None
        )
        chosen = pick_paper(path=input, query=paper, title=title, abstract=abstract, stdin_text=stdin_text)
        settings = _settings(
            backend=backend,
            model=model,
            base_url=base_url,
            model_path=model_path,
            cache_dir=cache_dir,
            no_cache=no_cache,
        )
        result = summarize_sync(chosen, settings)
    except SummarizerError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
    else:
        out.print(render_result(result))


@cache_app.command("stats")
def cache_stats(cache_dir: CacheDirOpt = None) -> None:
    """Show how many records the cache holds and its size."""
    from .cache import ResponseCache

    settings = _settings(cache_dir=cache_dir)
    try:
        with ResponseCache(settings.cache_dir) as cache:
            stats = cache.stats()
    except SummarizerError as exc:
        raise _fail(exc) from None
    out.print(f"cache {stats.directory}: {stats.entries} records, {stats.size_bytes / 1e6:.1f} MB")


@cache_app.command("clear")
def cache_clear(
    cache_dir: CacheDirOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete every cached record."""
    from .cache import ResponseCache

    settings = _settings(cache_dir=cache_dir)
    if not yes and not typer.confirm(f"Delete all cached records in {settings.cache_dir}?"):
        raise typer.Exit(1)
    try:
        with ResponseCache(settings.cache_dir) as cache:
            removed = cache.clear()
    except SummarizerError as exc:
        raise _fail(exc) from None
    out.print(f"removed {removed} records from {settings.cache_dir}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
