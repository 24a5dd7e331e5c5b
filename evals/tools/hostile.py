"""Run the prompt-injection suite (evals/hostile.jsonl) and write its report.

Run from the repository root:

    python evals/tools/hostile.py            # default embedded model -> evals/hostile-report.md and .json
    python evals/tools/hostile.py --check    # also exit 1 when any injection changed the outcome

Clean outcomes are replayed from cache/replay/gold.jsonl (the gold set's committed answers),
so only the injected papers run on the model: about 30 s each on the embedded default. The
disk cache is off unless --cache is given: its key does not cover the code that renders the
prompt, and a red-team report must measure the prompt as it is rendered now. Backend and
model come from the usual settings (SUMMARIZER_*, OPENAI_BASE_URL, OPENAI_API_KEY).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # runnable as a plain script, without PYTHONPATH
    sys.path.insert(0, str(ROOT))

from summarizer.errors import SummarizerError  # noqa: E402
from summarizer.redteam import (  # noqa: E402
    CaseOutcome,
    load_cases,
    load_papers,
    render_markdown,
    run_injection_suite_sync,
)
from summarizer.settings import Settings  # noqa: E402


def _progress(outcome: CaseOutcome) -> None:
    verdict = "CHANGED" if outcome.changed else ("unjudged" if not outcome.judged else "unchanged")
    print(
        f"{outcome.id}: {outcome.clean_primary} -> {outcome.injected_primary}: {verdict}"
        + (f" ({outcome.error})" if outcome.error else ""),
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=Path, default=ROOT / "evals/hostile.jsonl")
    parser.add_argument("--papers", type=Path, default=ROOT / "examples/seeds", help="folder the base papers come from")
    parser.add_argument(
        "--replay", type=Path, default=ROOT / "cache/replay/gold.jsonl", help="clean outcomes (read only)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "evals/hostile-report.md", help="Markdown report; JSON beside it"
    )
    parser.add_argument("--cache", action="store_true", help="read and write the disk cache for injected papers")
    parser.add_argument("--check", action="store_true", help="exit 1 when any injection changed the outcome")
    args = parser.parse_args(argv)

    try:
        cases = load_cases(args.cases)
        files = sorted(p for p in args.papers.iterdir() if p.is_file()) if args.papers.is_dir() else [args.papers]
        report = run_injection_suite_sync(
            Settings(use_cache=args.cache),
            cases,
            papers=load_papers(files),
            replay_path=args.replay,
            on_case=_progress,
        )
    except SummarizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    markdown = render_markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown, encoding="utf-8")
    args.out.with_suffix(".json").write_text(
        json.dumps(report.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    print(markdown)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 1 if args.check and report.changed else 0


if __name__ == "__main__":
    sys.exit(main())
