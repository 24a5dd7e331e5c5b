"""Command line: parse arguments, call one library function, render its result."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from .errors import InputError, SummarizerError
from .settings import Settings, load_settings

if TYPE_CHECKING:
    from .formats import ReadOptions
    from .llm import Backend

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Summarise and tag research papers into verified, typed records.",
)
cache_app = typer.Typer(no_args_is_help=True, help="Inspect or clear the response cache.")
app.add_typer(cache_app, name="cache")
config_app = typer.Typer(no_args_is_help=True, help="Show the settings in force and where each comes from.")
app.add_typer(config_app, name="config")

out = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from . import package_version

        out.print(f"summarizer {package_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Summarise and tag research papers into verified, typed records."""


# Options shared by every command that calls a model. Their defaults are None so that the
# one Settings object (and its env vars) stays the single place where defaults live.
class BackendName(StrEnum):
    auto = "auto"
    embedded = "embedded"
    openai = "openai"


BackendOpt = Annotated[
    BackendName | None, typer.Option("--backend", case_sensitive=False, help="Where the model runs.")
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model name on the server (any name but the embedded one selects the server)."),
]
BaseUrlOpt = Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")]
ModelPathOpt = Annotated[Path | None, typer.Option("--model-path", help="A GGUF file for the embedded backend.")]
CacheDirOpt = Annotated[Path | None, typer.Option("--cache-dir", help="Cache directory (default ./cache).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Replace an existing --output that is not a report (never a run's files).")
]


# The options that set a field of Settings under another name: an error names the option.
_OPTION_NAMES = {
    "requests_per_minute": "--rpm", "tokens_per_minute": "--tpm", "max_cost_usd": "--max-cost",
    "max_total_tokens": "--max-tokens", "use_cache": "--no-cache",
}  # fmt: skip


class DecisionsMode(StrEnum):
    generated = "generated"
    scored = "scored"
    auto = "auto"


DecisionsOpt = Annotated[
    DecisionsMode | None,
    typer.Option(
        "--decisions",
        help="How labels are decided: generated in the one JSON answer (default), or scored from "
        "log-probabilities (several short requests a paper; auto: scored on the embedded model only).",
    ),
]


class Mix(StrEnum):
    feed = "feed"
    mixed = "mixed"
    curated = "curated"


MixOpt = Annotated[
    Mix | None,
    typer.Option(
        "--mix",
        help="What you are tagging, for scored decisions: feed (a raw listing, few papers on the subject), "
        "mixed (default), or curated (a reading list: the subject gate leans on-topic).",
    ),
]


MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="FIELD=PATH: read FIELD (title, abstract, authors, date, id, url, doi) from PATH, a dotted path into "
        "JSON records (paper.title) or a CSV column name; repeat for several.",
    ),
]
FetchOpt = Annotated[
    bool, typer.Option("--fetch", help="Look up files of bare arXiv ids on the arXiv API (needs the network).")
]


def _read_options(field_map: list[str] | None, fetch: bool) -> ReadOptions:
    from .formats import ReadOptions, fetch_arxiv, parse_field_map

    return ReadOptions(field_map=parse_field_map(field_map or []), fetch=fetch_arxiv if fetch else None)


def _overrides(**overrides: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The options given, as Settings fields, and each field's option name (for messages)."""
    values: dict[str, Any] = {
        k: v.value if isinstance(v, StrEnum) else v for k, v in overrides.items() if v is not None
    }
    if values.pop("no_cache", False):
        values["use_cache"] = False
    return values, {field: _OPTION_NAMES.get(field, "--" + field.replace("_", "-")) for field in values}


def _settings(**overrides: Any) -> Settings:
    """The settings, or exit 1 with one line naming the bad option, SUMMARIZER_* variable or config file key."""
    values, names = _overrides(**overrides)
    try:
        return load_settings(values, names=names)
    except SummarizerError as exc:
        raise _fail(exc) from None


def _fail(exc: SummarizerError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, InputError) else 1)


def _say_backend(settings: Settings, backend: Backend | None = None) -> None:
    """A run's first line (after its input's own problems): which backend answers. On stderr,
    so that stdout stays the command's result (`summarize --json`, the eval table)."""
    from .llm import describe_backend

    err.print(describe_backend(settings, backend).line, markup=False, highlight=False, soft_wrap=True)


def _require(extra: str, what: str) -> None:
    """Exit 1 with one line naming the extra to install, before importing what needs it."""
    from .extras import require_extra

    try:
        require_extra(extra, what)
    except SummarizerError as exc:
        raise _fail(exc) from None


@app.command()
def summarize(
    input: Annotated[Path | None, typer.Argument(help="A paper file (any input format); '-' reads stdin.")] = None,
    paper: Annotated[str | None, typer.Option("--paper", "-p", help="Id, title or #N of a paper in INPUT.")] = None,
    title: Annotated[str | None, typer.Option("--title")] = None,
    abstract: Annotated[str | None, typer.Option("--abstract")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record with provenance as JSON.")] = False,
    field_map: MapOpt = None,
    fetch: FetchOpt = False,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    model_path: ModelPathOpt = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    decisions: DecisionsOpt = None,
    mix: MixOpt = None,
) -> None:
    """Summarise one paper and print its verified record."""
    from .extract import summarize_sync
    from .render import render_result
    from .sources import paper_from_stdin, pick_paper

    try:
        piped = (input is not None and str(input) == "-") or (
            input is None and title is None and abstract is None and not sys.stdin.isatty()
        )
        options = _read_options(field_map, fetch)
        if piped and title is None and abstract is None:
            # As bytes, so that standard input is checked as a file is (binary data, a PDF, a CSV).
            chosen = paper_from_stdin(sys.stdin.buffer.read(), options)
        else:
            chosen = pick_paper(path=input, query=paper, title=title, abstract=abstract, options=options)
        settings = _settings(
            backend=backend,
            model=model,
            base_url=base_url,
            model_path=model_path,
            cache_dir=cache_dir,
            no_cache=no_cache,
            decisions=decisions,
            mix=mix,
        )
        settings.check()  # a refused setting is the one line, not after the backend's
        _say_backend(settings)
        result = summarize_sync(
            chosen, settings, on_cold_start=lambda e: err.print(e.message, markup=False, highlight=False)
        )
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


@config_app.command("show")
def config_show(
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    model_path: ModelPathOpt = None,
    cache_dir: CacheDirOpt = None,
    decisions: DecisionsOpt = None,
    mix: MixOpt = None,
) -> None:
    """Print the effective settings and where each came from (CLI, env, project file, user file, default).

    Files: ./summarizer.toml (the project's), then config.toml in the user config directory.
    The API key is shown only as set or unset.
    """
    from .llm import describe_backend
    from .settings import effective_settings, project_config_path, user_config_path

    values, names = _overrides(
        backend=backend, model=model, base_url=base_url, model_path=model_path, cache_dir=cache_dir,
        decisions=decisions, mix=mix,
    )  # fmt: skip
    try:
        settings, shown = effective_settings(values, names)
    except SummarizerError as exc:
        raise _fail(exc) from None
    out.print(describe_backend(settings).line, markup=False, highlight=False)
    for path, label in ((project_config_path(), "project file"), (user_config_path(), "user file")):
        out.print(f"{label}: {path}{'' if path.is_file() else ' (none)'}", markup=False, highlight=False)
    width = max(len(s.name) for s in shown)
    for s in shown:
        out.print(f"{s.name:<{width}}  {s.value}  [{s.origin}]", markup=False, highlight=False, soft_wrap=True)


@app.command("models")
def models_command(
    verify: Annotated[
        bool, typer.Option("--verify", help="Hash the assembled default model (a gigabyte: seconds).")
    ] = False,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    model_path: ModelPathOpt = None,
) -> None:
    """List the models that can be used: the embedded default (never started here) and the configured server's.

    Exit codes: 0 listed, 1 the configured server could not be asked.
    """
    from .catalog import list_models

    settings = _settings(backend=backend, model=model, base_url=base_url, model_path=model_path)
    try:
        found = list_models(settings, verify=verify)
    except SummarizerError as exc:
        raise _fail(exc) from None
    for line in found.lines():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if found.server is not None and found.server.error is not None:
        raise typer.Exit(1)


@app.command("eval")
def eval_command(
    check: Annotated[bool, typer.Option("--check", help="Fail when worse than evals/baseline.json.")] = False,
    bless: Annotated[bool, typer.Option("--bless", help="Make this run the new baseline.")] = False,
    gold: Annotated[Path, typer.Option("--gold", help="Hand-labelled gold set.")] = Path("evals/gold.jsonl"),
    papers: Annotated[Path, typer.Option("--papers", help="Folder of paper files the gold set was drawn from.")] = Path(
        "examples/seeds"
    ),
    replay: Annotated[Path, typer.Option("--replay", help="Replay store of model outcomes.")] = Path(
        "cache/replay/gold.jsonl"
    ),
    no_replay: Annotated[bool, typer.Option("--no-replay", help="Ignore the replay store; run the model.")] = False,
    allow_live: Annotated[
        bool,
        typer.Option(
            "--allow-live",
            help="With --check: run the model for gold papers the replay store lacks (default: fail at once).",
        ),
    ] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Where report.json and report.md go.")] = Path("evals"),
    baseline: Annotated[Path, typer.Option("--baseline")] = Path("evals/baseline.json"),
    gate: Annotated[Path, typer.Option("--gate", help="Gate rules (floors, tests).")] = Path("evals/gate.toml"),
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    model_path: ModelPathOpt = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    decisions: DecisionsOpt = None,
    mix: MixOpt = None,
) -> None:
    """Score the pipeline on the gold set; with --check, fail on a significant regression.

    Exit codes with --check: 0 passed, 1 regression, 2 bad input or a stale replay store.
    """
    _require("eval", "`summarizer eval`")
    import asyncio

    from .evaluate import evaluate
    from .render import render_eval

    settings = _settings(
        backend=backend,
        model=model,
        base_url=base_url,
        model_path=model_path,
        cache_dir=cache_dir,
        no_cache=no_cache,
        decisions=decisions,
        mix=mix,
    )
    try:
        settings.check()
        outcome = asyncio.run(
            evaluate(
                settings,
                gold_path=gold,
                paper_files=sorted(p for p in papers.iterdir() if p.is_file()) if papers.is_dir() else [papers],
                replay_path=None if no_replay else replay,
                out_dir=out_dir,
                baseline_path=baseline,
                gate_path=gate,
                check=check,
                bless=bless,
                allow_live=allow_live,
                announce=partial(_say_backend, settings),
            )
        )
    except SummarizerError as exc:
        raise _fail(exc) from None
    out.print(render_eval(outcome))
    if check and not outcome.passed:
        raise typer.Exit(1)


@app.command("calibrate")
def calibrate_command(
    papers: Annotated[list[Path], typer.Argument(help="Paper files: the pool (unlabelled) that holds the dev papers.")],
    dev: Annotated[Path, typer.Option("--dev", help="Labelled dev papers to fit on.")] = Path("evals/dev.jsonl"),
    gold: Annotated[Path, typer.Option("--gold", help="Gold set, refused as dev papers.")] = Path("evals/gold.jsonl"),
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Calibration file to update (default prompts/calibration.json).")
    ] = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    model_path: ModelPathOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Fit the calibration of scored decisions for this model and save it (answers come from the cache)."""
    _require("eval", "`summarizer calibrate`")
    import asyncio

    from .calibrate import calibrate

    settings = _settings(backend=backend, model=model, base_url=base_url, model_path=model_path, cache_dir=cache_dir)
    target = out_path or settings.resolved_calibration_path
    try:
        settings.check()
        announce = partial(_say_backend, settings)
        cal = asyncio.run(
            calibrate(settings, pool_files=papers, dev_path=dev, out_path=target, gold_path=gold, announce=announce)
        )
    except SummarizerError as exc:
        raise _fail(exc) from None
    fitted = ", ".join(f"{k} {v}" for k, v in cal.fitted.items())
    out.print(f"calibrated {escape(cal.model)} ({fitted}); wrote {escape(str(target))}", highlight=False)


class LogFormat(StrEnum):
    rich = "rich"
    jsonl = "jsonl"


@app.command()
def tag(
    inputs: Annotated[
        list[Path], typer.Argument(help="Paper files in any mix of formats (see README: Inputs), e.g. jsonl, csv, bib.")
    ],
    outdir: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory (records.jsonl, failures.jsonl, manifest, exports).")
    ],
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, help="Requests in flight.")] = None,
    rpm: Annotated[float | None, typer.Option("--rpm", min=0.001, help="Client-side requests per minute.")] = None,
    tpm: Annotated[float | None, typer.Option("--tpm", min=1, help="Client-side tokens per minute.")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="Stop cleanly at this spend (USD).")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Stop cleanly at this many tokens.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show counts, tokens and cost; send nothing.")] = False,
    shard: Annotated[str | None, typer.Option("--shard", help="i/n: this machine's share of the papers.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    log_format: Annotated[LogFormat, typer.Option("--log-format", help="rich, or jsonl on stdout.")] = LogFormat.rich,
    no_export: Annotated[bool, typer.Option("--no-export", help="Skip records.csv/.parquet and digest.md.")] = False,
    field_map: MapOpt = None,
    fetch: FetchOpt = False,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    model_path: ModelPathOpt = None,
    cache_dir: CacheDirOpt = None,
    no_cache: NoCacheOpt = False,
    decisions: DecisionsOpt = None,
    mix: MixOpt = None,
) -> None:
    """Tag many papers into OUTDIR; run the same command again to resume an interrupted run.

    Exit codes: 0 all done, 1 error, 2 bad input or none readable, 3 budget stop, 4 some papers failed, 130 interrupted.
    """
    from .batch import Shard, run_tag_sync
    from .progress import EXIT_INTERRUPTED, make_sink, render_summary
    from .progress import LogFormat as LogFormatName

    try:
        settings = _settings(
            backend=backend, model=model, base_url=base_url, model_path=model_path, cache_dir=cache_dir,
            no_cache=no_cache, concurrency=concurrency, requests_per_minute=rpm, tokens_per_minute=tpm,
            max_cost_usd=max_cost, max_total_tokens=max_tokens, decisions=decisions, mix=mix,
        )  # fmt: skip
        chosen = Shard.parse(shard) if shard else None
        read = _read_options(field_map, fetch)
        # A dry run has no progress to show: only its input errors, then the plan.
        display: LogFormatName = "jsonl" if log_format is LogFormat.jsonl else "quiet" if dry_run else "rich"
        with make_sink(display, quiet=quiet) as sink:
            summary = run_tag_sync(
                inputs, outdir, settings, shard=chosen, dry_run=dry_run, export=not no_export, sink=sink, read=read
            )
    except KeyboardInterrupt:
        err.print(
            f"interrupted: what is done is in {outdir}; run the same command again to resume",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except SummarizerError as exc:
        raise _fail(exc) from None
    if log_format is LogFormat.rich and (dry_run or not quiet):
        out.print(render_summary(summary))
    raise typer.Exit(summary.exit_code)


class ExportFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"
    md = "md"
    notes = "notes"
    bibtex = "bibtex"


@app.command("export")
def export_command(
    outdir: Annotated[Path, typer.Argument(help="A run directory written by `summarizer tag`.")],
    formats: Annotated[
        list[ExportFormat] | None,
        typer.Option(
            "--format",
            "-f",
            help="csv, parquet, md (the default three), notes (OUTDIR/notes/*.md) or bibtex (records.bib); repeatable.",
        ),
    ] = None,
    template: Annotated[
        Path | None, typer.Option("--template", help="Jinja template for --format notes (default: the built-in one).")
    ] = None,
) -> None:
    """Regenerate records.csv, records.parquet and digest.md (or the formats named) from OUTDIR/records.jsonl."""
    from .export import export_run, skipped_note

    try:
        written = export_run(outdir, formats=[f.value for f in formats] if formats else None, template=template)
    except SummarizerError as exc:
        raise _fail(exc) from None
    for path in written.values():
        out.print(f"wrote {path}", highlight=False)
    for note in [] if formats else skipped_note(written):
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


@app.command("report")
def report_command(
    outdir: Annotated[Path, typer.Argument(help="A run directory written by `summarizer tag`.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file to write (default OUTDIR/report.html).")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Write one self-contained HTML report of a run: charts, filters, claims with their evidence."""
    from .report import write_run_report

    try:
        written = write_run_report(outdir, output, force=force)
    except SummarizerError as exc:
        raise _fail(exc) from None
    for note in written.notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    out.print(f"wrote {written.path} ({written.papers} papers, {written.failures} failed)", highlight=False)


@app.command("eval-report")
def eval_report_command(
    report: Annotated[Path, typer.Argument(help="report.json written by `summarizer eval`.")] = Path(
        "evals/report.json"
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file to write (default: REPORT with .html).")
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="A baseline run (e.g. evals/baseline.json) to compare with.")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Render an evaluation's report.json as an HTML dashboard (intervals, confusion heat map, changes)."""
    _require("eval", "`summarizer eval-report`")
    from .report import write_eval_report

    try:
        written = write_eval_report(report, output, baseline=baseline, force=force)
    except SummarizerError as exc:
        raise _fail(exc) from None
    out.print(f"wrote {written}", highlight=False)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
