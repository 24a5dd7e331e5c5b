"""Turn lists of research papers into verified, typed records.

`import summarizer` stays cheap: the names below are loaded on first use, and nothing here
imports openai or instructor (the model path loads them when it first calls a model).

    from summarizer import Settings, run_tag_sync
    summary = run_tag_sync(["papers.jsonl"], "out/", Settings(base_url="http://localhost:8080/v1"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    BudgetExceeded,
    CacheError,
    ConfigError,
    ExtractionFailed,
    InputError,
    LLMError,
    ModelFileError,
    OutputError,
    PromptError,
    SummarizerError,
    TransportError,
)

if TYPE_CHECKING:
    from .batch import Shard, run_tag, run_tag_sync
    from .evaluate import evaluate
    from .export import export_run
    from .extract import Extractor, summarize, summarize_sync
    from .progress import Plan, RunSummary
    from .report import write_eval_report, write_run_report
    from .schemas import Failure, Paper, PaperRecord, Provenance, Result, Usage
    from .settings import Settings
    from .sources import pick_paper, read_inputs, read_papers

_LAZY = {
    "Settings": "settings",
    "Paper": "schemas",
    "PaperRecord": "schemas",
    "Result": "schemas",
    "Failure": "schemas",
    "Provenance": "schemas",
    "Usage": "schemas",
    "Extractor": "extract",
    "summarize": "extract",
    "summarize_sync": "extract",
    "evaluate": "evaluate",
    "write_run_report": "report",
    "write_eval_report": "report",
    "pick_paper": "sources",
    "read_inputs": "sources",
    "read_papers": "sources",
    "run_tag": "batch",
    "run_tag_sync": "batch",
    "Shard": "batch",
    "RunSummary": "progress",
    "Plan": "progress",
    "export_run": "export",
}

__all__ = [
    "DISTRIBUTION",
    "BudgetExceeded",
    "CacheError",
    "ConfigError",
    "ExtractionFailed",
    "Extractor",
    "Failure",
    "InputError",
    "LLMError",
    "ModelFileError",
    "OutputError",
    "Paper",
    "PaperRecord",
    "Plan",
    "PromptError",
    "Provenance",
    "Result",
    "RunSummary",
    "Settings",
    "Shard",
    "SummarizerError",
    "TransportError",
    "Usage",
    "evaluate",
    "export_run",
    "package_version",
    "pick_paper",
    "read_inputs",
    "read_papers",
    "run_tag",
    "run_tag_sync",
    "summarize",
    "summarize_sync",
    "write_eval_report",
    "write_run_report",
]


#: The name pip installs this under (`pip install paper-summarizer`); `summarizer` on PyPI is another project.
DISTRIBUTION = "paper-summarizer"


def package_version() -> str:
    """The installed distribution's version. An environment installed before the rename has the
    package under its old distribution name: that one is found by its console script, because an
    editable install lists no module files that `packages_distributions` could map."""
    import importlib.metadata as md

    try:
        return md.version(DISTRIBUTION)
    except md.PackageNotFoundError:
        pass
    for ep in md.entry_points(group="console_scripts"):
        if ep.value.split(":")[0] == f"{__name__}.cli" and ep.dist is not None:
            return ep.dist.version
    return "unknown (not installed)"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'summarizer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
