"""Terminal rendering of records with rich. Paper text is printed as plain text, never markup."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .schemas import Result


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
