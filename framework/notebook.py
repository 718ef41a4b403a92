"""The IPython / Jupyter extension: ``%load_ext chainsight``.

Loading it switches zero-code tracing on for the kernel
(:func:`chainsight.instrument`, into the process observer) and adds the
``%chainsight`` line magic: ``%chainsight`` prints the last trace this kernel
recorded as a tree, ``%chainsight TRACE_ID`` (or a unique end of one, as
``chainsight traces`` shows it) any trace of the store.

The tree is plain text printed to the cell's output: no HTML, no markup, and
every stored text (names, errors, inputs and outputs, all of them
untrusted) with its control characters replaced (``cli_render.clean``), so
model output cannot style or rewrite the cell.
"""

from __future__ import annotations

import io
import sys
from typing import Any

from chainsight.framework.cli_render import (
    MISSING,
    Column,
    clean,
    fmt_cost,
    fmt_int,
    fmt_seconds,
    fmt_time,
    print_table,
    short_id,
    tree_order,
)
from chainsight.framework.zero_code import flush, instrument, tracing_observer, uninstrument

MAGIC = "chainsight"
PREVIEW_CHARS = 200
"""How much of the trace's input and output the view shows."""
FLUSH_TIMEOUT_S = 10.0

TREE_COLUMNS = (
    Column("span", max_width=60, flex=True),
    Column("kind"),
    Column("status"),
    Column("latency", "right"),
    Column("tokens", "right"),
    Column("cost", "right"),
    Column("model", max_width=30, flex=True),
    Column("error", max_width=60, flex=True),
)


def load_extension(ipython: Any) -> None:
    instrument()
    ipython.register_magic_function(chainsight_magic, magic_kind="line", magic_name=MAGIC)


def unload_extension(ipython: Any) -> None:
    uninstrument()


def chainsight_magic(line: str) -> None:
    """%chainsight [TRACE_ID]: the last trace of this kernel (or that one) as a tree."""
    sys.stdout.write(trace_text(line.strip() or None))


def trace_text(trace_id: str | None = None) -> str:
    """The trace as plain text: the last one this process recorded, or ``trace_id``
    (a full id or a unique start or end of one); a sentence when there is none."""
    from chainsight.storage.engine import StoreNotFound, display_url
    from chainsight.storage.query import Store

    observer = tracing_observer()
    if not flush(FLUSH_TIMEOUT_S):
        note = "(some spans were not stored yet, or not at all: see `chainsight plugins`)\n"
    else:
        note = ""
    url = observer.storage_url
    if trace_id is None:
        trace_id = observer.last_trace_id
        if trace_id is None:
            return ("no trace recorded in this kernel yet: run a chain or a litellm call, "
                    "then %chainsight\n")
    try:
        store = Store(url, create=False)
    except StoreNotFound as exc:
        return f"{exc}\n"
    try:
        matches = store.resolve_trace_id(trace_id, limit=5)
        if len(matches) != 1:
            what = "no trace matches" if not matches else "several traces match"
            return f"{what} {clean(trace_id)!r} in {display_url(url)}\n"
        detail = store.get_trace(matches[0])
    finally:
        store.close()
    if detail is None:
        return f"no trace matches {clean(trace_id)!r} in {display_url(url)}\n"
    return note + render(detail)


def render(detail: Any) -> str:
    """A stored trace (``Store.get_trace``) as the text ``%chainsight`` prints."""
    t = detail.trace
    out = io.StringIO()
    tokens = (t.input_tokens or 0) + (t.output_tokens or 0)
    who = [f"user {t.user_id}" if t.user_id else "", f"session {t.session_id}" if t.session_id else "",
           ("tags " + ", ".join(t.tags)) if t.tags else ""]
    lines = [
        f"trace {short_id(t.trace_id)}  {t.name}  [{t.status}]",
        f"started {fmt_time(t.start_ns)}   duration {fmt_seconds(t.duration_s)}   spans {t.span_count}"
        f"   llm calls {t.llm_count}   tokens {fmt_int(tokens)}   cost {fmt_cost(t.cost_usd)}",
    ]
    if any(who):
        lines.append("   ".join(w for w in who if w))
    for line in lines:
        out.write(clean(line) + "\n")
    out.write("\n")
    rows = [[guide + str(s.name), s.kind, s.status, fmt_seconds(s.latency_s),
             fmt_int(s.total_tokens) if s.total_tokens is not None else "",
             fmt_cost(s.cost_usd) if s.kind == "llm" or s.cost_usd is not None else "",
             s.model or "", (f"{s.error_type}: {s.error}" if s.error_type and s.error else s.error) or ""]
            for guide, s in tree_order(detail.spans)]
    print_table(TREE_COLUMNS, rows, out=out, rich=False)
    root = next((s for s in detail.spans if s.parent_id is None), None)
    if root is not None:
        out.write("\n")
        out.write(f"input:  {_preview(root.inputs)}\n")
        out.write(f"output: {_preview(root.outputs)}\n")
    return out.getvalue()


def _preview(value: Any) -> str:
    if value is None:
        return MISSING
    text = value if isinstance(value, str) else repr(value)
    return clean(text, PREVIEW_CHARS)
