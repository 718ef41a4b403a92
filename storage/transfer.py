"""Traces out of a store and into one: JSONL (whole traces), CSV and Parquet (summaries).

JSONL holds one trace per line, everything needed to store it again::

    {"format": "chainsight.trace/1", "trace": {...summary...},
     "spans": [{span fields}], "scores": [{score fields}]}

Export streams: traces are read a page at a time (keyset pagination, oldest
first) and each is fetched through :meth:`Store.get_trace`, so memory holds
one page and one trace whatever the store's size, and content comes back as
every reader sees it. Import reads a line at a time and writes through the
store's writer in batches; rows are keyed (span, score ids) and trace rows
are recomputed from the spans, so importing a file twice stores it once.
Content is imported as it was exported (already redacted where it came from).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from chainsight.framework.model import SPAN_FIELDS, Score, Span
from chainsight.storage.query import Store, TraceDetail, TraceFilter

FORMAT: Final = "chainsight.trace/1"
PAGE: Final = 200
IMPORT_BATCH_SPANS: Final = 2000
NO_CAP: Final = 1 << 40  # import content as exported: the exporting store already capped it


def iter_traces(store: Store, filters: TraceFilter | None = None, *,
                page: int = PAGE) -> Iterator[TraceDetail]:
    """Every trace ``filters`` matches, oldest first, one at a time."""
    cursor: str | None = None
    while True:
        result = store.list_traces(filters, limit=page, cursor=cursor, order="start_ns",
                                   descending=False)
        for trace in result.items:
            detail = store.get_trace(trace.trace_id)
            if detail is not None:  # deleted meanwhile
                yield detail
        if result.next_cursor is None:
            return
        cursor = result.next_cursor


def _score_dict(score: Score) -> dict[str, Any]:
    return dataclasses.asdict(score)


def trace_record(detail: TraceDetail) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "trace": dataclasses.asdict(detail.trace),
        "spans": [span.to_dict() for span in detail.spans],
        "scores": [_score_dict(score) for score in detail.scores],
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def write_jsonl(details: Iterable[TraceDetail], out: IO[str],
                progress: Callable[[int], None] | None = None) -> int:
    """One JSON line per trace; the number written."""
    count = 0
    for detail in details:
        # ASCII: a line separator in content (U+2028) must not split the record
        # for readers that split lines as str.splitlines does.
        out.write(json.dumps(trace_record(detail), default=_json_default,
                             separators=(",", ":")) + "\n")
        count += 1
        if progress is not None:
            progress(count)
    return count


CSV_COLUMNS: Final = (
    "trace_id", "name", "status", "start_ns", "end_ns", "duration_s", "span_count", "llm_count",
    "error_count", "input_tokens", "output_tokens", "cost_usd", "ttft_s", "model", "user_id",
    "session_id", "tags", "error", "input", "output",
)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value, ensure_ascii=False, default=_json_default, separators=(",", ":"))


def _summary(detail: TraceDetail) -> dict[str, Any]:
    """A trace's CSV / Parquet row: its summary, and its root's error, input and output."""
    t = detail.trace
    root = next((s for s in detail.spans if s.parent_id is None), None)
    return {
        **{name: getattr(t, name) for name in CSV_COLUMNS if hasattr(t, name)},
        "duration_s": t.duration_s, "tags": " ".join(t.tags) or None,
        "error": root.error if root is not None else None,
        "input": root.inputs if root is not None else None,
        "output": root.outputs if root is not None else None,
    }


def write_csv(details: Iterable[TraceDetail], out: IO[str],
              progress: Callable[[int], None] | None = None) -> int:
    """One row per trace (its summary, the root's error, input and output as
    JSON text); the number written. Not importable: use JSONL for that."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for detail in details:
        values = _summary(detail)
        writer.writerow([_cell(values.get(name)) for name in CSV_COLUMNS])
        count += 1
        if progress is not None:
            progress(count)
    return count


PARQUET_ROW_GROUP: Final = 1000
_INT_COLUMNS: Final = frozenset({"start_ns", "end_ns", "span_count", "llm_count", "error_count",
                                 "input_tokens", "output_tokens"})
_FLOAT_COLUMNS: Final = frozenset({"duration_s", "cost_usd", "ttft_s"})


def write_parquet(details: Iterable[TraceDetail], path: str,
                  progress: Callable[[int], None] | None = None) -> int:
    """The CSV's rows, typed, in a Parquet file (row groups of
    :data:`PARQUET_ROW_GROUP` traces, so memory holds one group): needs
    ``pyarrow`` (``pip install 'chainsight[parquet]'``). The number written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def kind(name: str) -> Any:
        if name in _INT_COLUMNS:
            return pa.int64()
        return pa.float64() if name in _FLOAT_COLUMNS else pa.string()

    schema = pa.schema([(name, kind(name)) for name in CSV_COLUMNS])
    count = 0
    chunk: list[dict[str, Any]] = []
    with pq.ParquetWriter(path, schema) as writer:
        for detail in details:
            row = _summary(detail)
            chunk.append({name: row[name] if name in _INT_COLUMNS | _FLOAT_COLUMNS
                          else (None if row[name] is None else _cell(row[name]))
                          for name in CSV_COLUMNS})
            count += 1
            if progress is not None:
                progress(count)
            if len(chunk) >= PARQUET_ROW_GROUP:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk or count == 0:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return count


class RecordError(ValueError):
    """A line that is not a Chainsight trace record; the message names the line."""


@dataclass(frozen=True)
class ImportResult:
    traces: int
    spans: int
    scores: int
    rejected: int  # rows the store refused even alone
    first_rejection: str | None


_SCORE_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Score))


def parse_record(line: str, where: str) -> tuple[list[Span], list[Score]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise RecordError(f"{where}: not a Chainsight trace record (its \"format\" must be "
                           f"{FORMAT!r}; `chainsight export traces --format jsonl` writes them)")
    try:
        spans = [Span.from_dict({k: v for k, v in s.items() if k in SPAN_FIELDS})
                 for s in record.get("spans") or []]
        scores = [Score(**{k: v for k, v in s.items() if k in _SCORE_FIELDS})
                  for s in record.get("scores") or []]
    except (TypeError, KeyError, AttributeError) as exc:
        raise RecordError(f"{where}: a span or score is incomplete: {exc}") from None
    return spans, scores


def import_jsonl(url: str, lines: Iterable[str], *, source: str = "<input>",
                 progress: Callable[[int], None] | None = None) -> ImportResult:
    """Store every trace record of ``lines`` into the store at ``url`` (made
    if there is none), in batches; idempotent. Raises :class:`RecordError`
    at the first bad line, after storing the lines before it."""
    from chainsight.framework.store_api import WriteBatch
    from chainsight.storage.writer import StoreWriter

    writer = StoreWriter(url, max_content_bytes=NO_CAP)
    traces = spans_n = scores_n = rejected = 0
    first: str | None = None
    spans: list[Span] = []
    scores: list[Score] = []

    def flush() -> None:
        nonlocal rejected, first
        if not spans and not scores:
            return
        refused = writer.write_isolating(writer.prepare(WriteBatch(spans=spans, scores=scores)))
        rejected += len(refused)
        if refused and first is None:
            first = f"{refused[0].table}: {refused[0].error}"
        spans.clear()
        scores.clear()

    try:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                new_spans, new_scores = parse_record(line, f"{source}, line {number}")
            except RecordError:
                flush()  # the lines before it are stored
                raise
            spans += new_spans
            scores += new_scores
            traces += 1
            spans_n += len(new_spans)
            scores_n += len(new_scores)
            if len(spans) + len(scores) >= IMPORT_BATCH_SPANS:
                flush()
            if progress is not None:
                progress(traces)
        flush()
    finally:
        writer.close()
    return ImportResult(traces, spans_n, scores_n, rejected, first)
