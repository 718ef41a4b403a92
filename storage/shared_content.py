"""Content stored once per trace: a span's inputs, outputs or metadata that
repeat another span's of the same trace are stored as a reference.

LangChain hands the same content to several runs of one trace: a prompt
template's output is the model's input, the model's answer the parser's
input, a chain's input its first step's, and every child run inherits its
parent's metadata. On the demo workload that is about 190 bytes of every
span's 1,630 (bench/lean_storage.py measured it before this was built).

When a batch is prepared, a JSON text of at least :data:`MIN_SHARED`
characters that an earlier span row of the same trace in the batch already
holds in full is left out (NULL) and named in the row's ``content_refs``:
space-separated entries ``<field><source field><source span id>``, fields
coded ``i`` (inputs), ``o`` (outputs), ``m`` (metadata); a source field in
upper case means the ``messages`` member of that field's object (a prompt's
``{"messages": [...]}`` output is its model's input). Only texts compared
equal are shared, so a reference reads back exactly what was written.

A reference never leaves its batch: :func:`inline` puts the text back into
rows that are written apart (a batch split to find a row the store refuses,
the dead-letter file), and readers resolve references among a trace's
spans (:func:`resolve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

COLUMN: Final = "content_refs"
FIELDS: Final = {"i": "inputs", "o": "outputs", "m": "metadata"}
CODES: Final = {field: code for code, field in FIELDS.items()}
MIN_SHARED: Final = 64
"""Shorter texts cost less than a reference (an id and two letters)."""
_MESSAGES: Final = '{"messages":'


def share(span_rows: Sequence[dict[str, Any]]) -> None:
    """Replace, in place, content a row repeats from an earlier row of its trace."""
    held: dict[tuple[Any, str], str] = {}  # (trace, text) -> source code + span id
    for row in span_rows:
        span_id = row["span_id"]
        if type(span_id) is not str or " " in span_id:
            continue  # cannot be named in a reference
        trace = row["trace_id"]
        refs = []
        for field, code in CODES.items():
            text = row[field]
            if text is None or len(text) < MIN_SHARED:
                continue
            source = held.get((trace, text))
            if source is not None:
                refs.append(code + source)
                row[field] = None
                continue
            held[(trace, text)] = code + span_id
            if text.startswith(_MESSAGES) and text.endswith("}"):
                # A one-member object {"messages": X}: X is the text between.
                # (Sliced from an object with more members, the text is no
                # JSON value, so it equals no other field's text.)
                held.setdefault((trace, text[len(_MESSAGES):-1]), code.upper() + span_id)
        if refs:
            row[COLUMN] = " ".join(refs)


def inline(span_rows: Sequence[dict[str, Any]]) -> None:
    """Put referenced texts back into ``span_rows`` (in place), so each row
    stands alone; references to rows not among them are kept."""
    by_id = {row["span_id"]: row for row in span_rows}
    for row in span_rows:
        refs = row.get(COLUMN)
        if not refs:
            continue
        kept = []
        for ref in refs.split(" "):
            source = by_id.get(ref[2:])
            text = None if source is None else source[FIELDS[ref[1].lower()]]
            if text is None:
                kept.append(ref)
                continue
            row[FIELDS[ref[0]]] = text[len(_MESSAGES):-1] if ref[1].isupper() else text
        row[COLUMN] = " ".join(kept) or None


def resolve(spans: Sequence[Any], refs: dict[str, str]) -> None:
    """Fill the referenced fields of a trace's spans (read from the store,
    content already parsed) from the spans they name; ``refs``: span id ->
    its ``content_refs``. A source that is not among ``spans`` (a span the
    store lost) reads as a ``__missing__`` marker, never as nothing."""
    by_id = {span.span_id: span for span in spans}
    for span_id, text in refs.items():
        span = by_id.get(span_id)
        if span is None:
            continue
        for ref in text.split(" "):
            source = by_id.get(ref[2:])
            value: Any = None if source is None else getattr(source, FIELDS[ref[1].lower()])
            if value is not None and ref[1].isupper():
                value = value.get("messages") if isinstance(value, dict) else None
            if value is None:
                value = {"__missing__": f"stored once with span {ref[2:]}, which is not in the store"}
            setattr(span, FIELDS[ref[0]], value)
