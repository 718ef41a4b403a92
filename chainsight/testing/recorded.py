"""Recorded spans: the JSON form a plugin's tests replay.

A recording is what the store holds, in the form the rest of Chainsight
already writes: one :meth:`Span.to_dict() <chainsight.framework.model.Span.to_dict>`
per line (JSON Lines). :func:`load_spans` also reads the one JSON document
that ``chainsight show TRACE --json`` prints and the TUI's ``e`` export writes
(``{"trace": ..., "spans": [...], ...}``), so a trace from a real store can be
replayed as it is.

Content in a recording (``inputs``, ``outputs``, ``metadata``...) is JSON: a
LangChain message is its ``model_dump()`` dict, as stored, not the live
object a check sees during a run. A check that reads content should be tested
on both: a recording, and a live run (:meth:`PluginHarness.handler
<chainsight.testing.PluginHarness.handler>`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from chainsight.framework.model import Span
from chainsight.storage.serialize import to_jsonable

SAMPLE_TRACE: Final = Path(__file__).resolve().parent / "data" / "sample_trace.jsonl"
"""Three traces recorded from real LangChain runs with fake chat models
(``scripts/record_sample_trace.py``), stored with the redaction built-in on:
``rag`` (a retriever, a prompt, a chat model with token usage and a parser; the
question's email address is stored redacted), ``summarize`` (a long answer,
``user_id`` set) and ``lookup`` (a step that raised: an error span)."""

# A recorded span's content is kept whole up to this size; the store caps
# each field at [pipeline] max_content_bytes anyway.
_MAX_LINE_BYTES: Final = 16 * 2**20


def save_spans(path: str | os.PathLike[str], spans: Iterable[Span]) -> Path:
    """Write ``spans`` to ``path`` as JSON Lines, one ``Span.to_dict()`` each.

    Content that is not JSON (a live LangChain message) is converted as the
    store converts it. Returns the path.
    """
    out = Path(path)
    with out.open("w", encoding="utf-8") as f:
        for span in spans:
            f.write(json.dumps(to_jsonable(span.to_dict(), _MAX_LINE_BYTES), ensure_ascii=False))
            f.write("\n")
    return out


def load_spans(path: str | os.PathLike[str]) -> list[Span]:
    """The spans recorded in ``path``: JSON Lines of span dicts, or one JSON
    document with a ``"spans"`` list (``chainsight show --json``, a TUI
    export), or a JSON list of span dicts. Fields a span does not have
    (``latency_s`` in ``show --json``) are ignored.

    Raises ValueError naming the file and line of a line that is not JSON or
    not a span.
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None  # JSON Lines (or broken: said line by line below)
    if isinstance(document, dict) and isinstance(document.get("spans"), list):
        return [_span(item, f"{file}: spans[{i}]") for i, item in enumerate(document["spans"])]
    if isinstance(document, list):
        return [_span(item, f"{file}: [{i}]") for i, item in enumerate(document)]
    spans: list[Span] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}:{number}: not JSON: {exc.msg} (column {exc.colno})") from exc
        spans.append(_span(item, f"{file}:{number}"))
    return spans


def _span(item: Any, where: str) -> Span:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a span must be a JSON object, not {type(item).__name__}")
    missing = [key for key in ("span_id", "trace_id", "name", "start_ns") if key not in item]
    if missing:
        raise ValueError(f"{where}: not a span: missing {', '.join(missing)}")
    try:
        return Span.from_dict(item)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not a span: {exc}") from exc


def record(run: Callable[[Any], object], path: str | os.PathLike[str], *,
           builtins: Iterable[str] = ("redaction",)) -> list[Span]:
    """Record a real LangChain run into ``path`` (JSON Lines) and return its spans.

    ``run`` gets a :class:`~chainsight.CallbackHandler` to pass as a callback,
    e.g. ``lambda handler: chain.invoke(question, config={"callbacks": [handler]})``.
    The run goes through an observer with only ``builtins`` (redaction by
    default, so no secret is written to the recording) into a temporary
    store, and what the store holds is written, in the order the spans
    started.
    """
    from chainsight.testing.harness import PluginHarness

    with PluginHarness(None, builtins=tuple(builtins)) as harness:
        run(harness.handler())
        spans = harness.flush().spans
    save_spans(path, spans)
    return spans
