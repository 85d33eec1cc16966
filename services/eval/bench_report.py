"""latentwire-bench's report: small markdown tables, and the JSON of every section's raw results.

Each section module turns its result (a dataclass) into ``Table``s; this module only knows tables,
the header and the errors, so a new section needs no change here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "Table", "cell", "markdown_table", "render_markdown", "to_json", "write_report"]

Cell = str | int | float | None


@dataclass
class Table:
    """One markdown table under a ``### title`` heading, with notes printed below it."""

    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything one run produced: the header lines, each section's results, tables and errors."""

    header: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def cell(value: Cell, *, digits: int | None = None) -> str:
    """A number as a table shows it: thousands separated, fewer decimals for larger values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if digits is None:
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:,.{digits}f}"


def markdown_table(table: Table) -> str:
    """The table as GitHub markdown: text columns left-aligned, numeric columns right-aligned."""
    texts = [[cell(value) for value in row] for row in table.rows]
    numeric = [
        all(row[i] is None or isinstance(row[i], int | float) for row in table.rows) and bool(table.rows)
        for i in range(len(table.columns))
    ]
    widths = [max([len(name)] + [len(row[i]) for row in texts]) for i, name in enumerate(table.columns)]

    def line(values: list[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    out = [f"### {table.title}", "", line(table.columns), rule, *(line(row) for row in texts)]
    if table.notes:
        out += ["", *table.notes]
    return "\n".join(out)


def render_markdown(report: Report) -> str:
    header = report.header
    lines = ["## latentwire-bench", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    for table in report.tables:
        lines += ["", markdown_table(table)]
    if report.errors:
        lines += ["", "### Errors", ""]
        # first lines only: a service's log tail is in bench.json and on stderr
        lines += [f"- **{name}**: {message.splitlines()[0]}" for name, message in report.errors.items()]
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """Dataclasses to dicts; NaN and infinities to null (strict JSON has neither)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(report: Report) -> dict[str, Any]:
    """``{"header": {...}, "results": {section: {...}}, "errors": {section: message}}``."""
    return {"header": _plain(report.header), "results": _plain(report.results), "errors": dict(report.errors)}


def write_report(report: Report, directory: Path) -> tuple[Path, Path]:
    """bench.md and bench.json in ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / "bench.md", directory / "bench.json"
    md.write_text(render_markdown(report), encoding="utf-8")
    js.write_text(json.dumps(to_json(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return md, js
