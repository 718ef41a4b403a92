"""Output for the ``chainsight`` CLI: tables, JSON and value formatting.

Tables are drawn with rich when stdout is a terminal and as plain aligned text
otherwise (pipes, files, tests). Stored text (span names, errors, model output)
is untrusted: it is never interpreted as rich markup (cells are ``Text``
objects) and control characters are replaced before printing, so a name like
``[bold]x`` or an escape sequence prints literally.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from chainsight.framework.model import children_by_parent
from chainsight.framework.units import format_cost, format_duration

MISSING = "—"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean(value: Any, limit: int | None = None) -> str:
    """One printable line: control characters (newlines, ESC...) become spaces."""
    if value is None:
        return MISSING
    text = _CONTROL.sub(" ", str(value))
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


# ---- value formats -------------------------------------------------------------


def fmt_seconds(seconds: float | None) -> str:
    return format_duration(seconds)


def fmt_cost(cost: float | None) -> str:
    """US dollars; None (unpriced) is shown as a dash, never as $0."""
    return format_cost(cost)


def fmt_int(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def fmt_time(ns: int | None) -> str:
    if ns is None:
        return MISSING
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


SHORT_ID_LENGTH = 10


def short_id(value: str | None, n: int = SHORT_ID_LENGTH) -> str:
    """The last ``n`` characters: trace ids and LangChain run ids begin with
    the clock, so their ends are what tells two of them apart. The CLI and the
    TUI show the same ``SHORT_ID_LENGTH`` characters, and every command that
    takes an id accepts them."""
    return MISSING if not value else value[-n:]


# ---- JSON ------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, spans (``to_dict``), tuples and sets as plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    return str(obj)


def print_json(obj: Any, out: IO[str] | None = None) -> None:
    """One JSON document on stdout."""
    out = out if out is not None else sys.stdout
    out.write(json.dumps(to_jsonable(obj), default=_json_default, ensure_ascii=False, indent=2))
    out.write("\n")


STATUS_STYLE = {
    "error": "red", "ok": "green", "active": "green",
    "degraded": "yellow", "failed": "red", "disabled": "dim",
}


def tree_order(spans: Sequence[Any]) -> list[tuple[str, Any]]:
    """Spans in tree order (children by start time under their parent), each with
    the guide to print before its name (``├─ ``, ``│  └─ ``...). Spans whose
    parent is missing are shown as roots."""
    children = children_by_parent(spans)
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()

    def walk(span: Any, lead: str, guide: str) -> None:
        if span.span_id in seen:  # a cycle in bad data: print once
            return
        seen.add(span.span_id)
        out.append((lead + guide, span))
        kids = children.get(span.span_id, [])
        below = lead + ("" if not guide else ("   " if guide == "└─ " else "│  "))
        for i, kid in enumerate(kids):
            walk(kid, below, "└─ " if i == len(kids) - 1 else "├─ ")

    for root in children.get(None, []):
        walk(root, "", "")
    for span in spans:  # anything unreachable (cycles)
        if span.span_id not in seen:
            walk(span, "", "")
    return out


# ---- tables ----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    header: str
    align: str = "left"  # "left" | "right"
    max_width: int | None = None
    style: str | None = None
    flex: bool = False  # on a narrow terminal, only flexible columns are shortened


def is_terminal(out: IO[str]) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    out: IO[str] | None = None,
    rich: bool | None = None,
) -> None:
    """Print rows under the columns: rich on a terminal, aligned plain text otherwise."""
    out = out if out is not None else sys.stdout
    cells = [[clean(v, c.max_width) for v, c in zip(row, columns, strict=True)] for row in rows]
    if rich if rich is not None else is_terminal(out):
        _rich_table(columns, cells, title, out)
    else:
        _plain_table(columns, cells, title, out)


def _plain_table(columns: Sequence[Column], cells: list[list[str]], title: str | None, out: IO[str]) -> None:
    if title:
        out.write(clean(title) + "\n")
    widths = [len(c.header) for c in columns]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if c.align == "right" else v.ljust(w)
            for v, w, c in zip(values, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out.write(line([c.header.upper() for c in columns]) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def _console(out: IO[str], rich: bool = True) -> Any:
    from rich.console import Console

    return Console(file=out, force_terminal=rich, highlight=False, soft_wrap=False)


def _rich_table(columns: Sequence[Column], cells: list[list[str]], title: str | None, out: IO[str]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None, header_style="bold", box=None, pad_edge=False)
    for i, c in enumerate(columns):
        widest = max([len(c.header), *(len(row[i]) for row in cells)])
        table.add_column(Text(c.header.upper()), justify="right" if c.align == "right" else "left",
                         style=c.style, overflow="ellipsis", no_wrap=True,
                         min_width=None if c.flex else widest)
    status_col = next((i for i, c in enumerate(columns) if c.header.lower() == "status"), None)
    for row in cells:
        texts = [Text(v) for v in row]
        if status_col is not None:
            texts[status_col].stylize(STATUS_STYLE.get(row[status_col].split(" ", 1)[0], ""))
        table.add_row(*texts)
    _console(out).print(table)


def print_lines(lines: Sequence[str], out: IO[str] | None = None) -> None:
    out = out if out is not None else sys.stdout
    for text in lines:
        out.write(clean(text) + "\n")


