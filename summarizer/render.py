"""Terminal rendering of records with rich. Paper text is printed as plain text, never markup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .schemas import Result

if TYPE_CHECKING:
    from .evaluate import EvalOutcome


def render_result(result: Result) -> RenderableType:
    record, prov = result.record, result.provenance
    parts: list[RenderableType] = [Text(record.summary), Text("")]

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold cyan", no_wrap=True)
    head.add_column()
    category = record.category.primary + (
        f"  (also: {', '.join(record.category.secondary)})" if record.category.secondary else ""
    )
    head.add_row("category", Text(category, style="bold"))
    head.add_row("why", Text(record.category.rationale, style="italic"))
    head.add_row("contribution", Text(record.contribution_type))
    head.add_row("method", Text(record.method.name or "—", style="bold") + Text(f"  {record.method.description}"))
    parts.append(head)

    if record.datasets:
        table = Table(title="datasets", title_justify="left", show_edge=False, expand=True)
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("role")
        table.add_column("evidence", style="dim")
        for d in record.datasets:
            table.add_row(Text(d.name), Text(d.role), Text(d.evidence))
        parts += [Text(""), table]

    parts += [Text(""), Text("claims", style="bold cyan")]
    for i, claim in enumerate(record.claims, 1):
        parts.append(Text(f"{i}. ") + Text(claim.statement))
        parts.append(Text("   “") + Text(claim.evidence, style="green") + Text("”"))
    for warning in record.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))

    cache = "cache hit" if prov.cache_hit else f"{prov.latency_s:.1f}s"
    footer = (
        f"{prov.model} · prompt {prov.prompt_hash[:8]} · taxonomy {prov.taxonomy_hash[:8]} · "
        f"{prov.usage.prompt_tokens}+{prov.usage.completion_tokens} tokens · {cache}"
    )
    return Panel(Group(*parts), title=Text(record.title, style="bold"), subtitle=Text(footer, style="dim"), expand=True)


def render_eval(outcome: EvalOutcome) -> RenderableType:
    run = outcome.run
    sources = f"{run.replayed} replayed, {run.cached} cached, {run.live - run.cached} run"
    table = Table(title=f"{run.model} · prompt {run.prompt_hash[:8]} · {sources}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    for name, m in run.summary["metrics"].items():
        low, high = m["ci95"]
        table.add_row(name, f"{m['value']:.3f}", f"[{low:.3f}, {high:.3f}]")
    parts: list[RenderableType] = [table]
    review = run.summary.get("review")
    if review is not None:  # apart from the headline table: the gate does not compare these
        flags = Table(title=f"review flags · {review['flagged']} of {review['records']} records flagged")
        for column in ("metric", "value", "95% CI", "papers"):
            flags.add_column(column, justify="left" if column == "metric" else "right")
        for name, m in review["metrics"].items():
            low, high = m["ci95"]
            shown = (f"{m['value']:.3f}", f"[{low:.3f}, {high:.3f}]") if m["papers"] else ("n/a", "")
            flags.add_row(name, *shown, str(m["papers"]))
        parts.append(flags)
    if outcome.findings:
        gate = Table(title="regression gate")
        gate.add_column("metric")
        gate.add_column("result")
        gate.add_column("detail")
        colour = {"fail": "bold red", "warn": "yellow", "ok": "green"}
        for f in outcome.findings:
            gate.add_row(f.metric, Text(f.level, style=colour[f.level]), Text(f.message))
        parts.append(gate)
        verdict = "PASSED" if outcome.passed else "FAILED"
        parts.append(Text(f"gate {verdict}", style="bold green" if outcome.passed else "bold red"))
    parts.append(Text("wrote " + ", ".join(outcome.written), style="dim"))
    return Group(*parts)
