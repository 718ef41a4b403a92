"""Dataset files in and out: JSONL and CSV, and items made from stored traces.

JSONL: one object per line, ``{"input": ..., "expected": ..., "metadata": {...}}``
(``expected_output`` and ``output`` are accepted for ``expected``); a line
without ``input`` is the input itself, less ``expected`` and ``metadata``.
CSV: a header row; ``input`` and ``expected`` columns (``expected_output``
and ``output`` accepted too), every other column goes to ``metadata``. A
cell that holds a JSON object or array is parsed; other cells stay text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from chainsight.storage.evaluation import DatasetItem

EXPECTED_KEYS = ("expected", "expected_output", "output")


class DatasetFileError(Exception):
    """A dataset file that cannot be read; the message names the file and line."""


def item_from_record(record: Any, where: str) -> DatasetItem:
    """A DatasetItem from one JSON record (see the module's docstring)."""
    if not isinstance(record, dict):
        return DatasetItem(input=record)
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise DatasetFileError(f"{where}: 'metadata' must be an object, not {type(metadata).__name__}")
    expected_key = next((k for k in EXPECTED_KEYS if k in record), None)
    expected = record.get(expected_key) if expected_key else None
    if "input" in record:
        item_input = record["input"]
    elif "inputs" in record:
        item_input = record["inputs"]
    else:
        item_input = {k: v for k, v in record.items() if k not in (*EXPECTED_KEYS, "metadata")}
        if not item_input:
            raise DatasetFileError(f"{where}: no input (give an 'input' key)")
    return DatasetItem(input=item_input, expected=expected, metadata=dict(metadata))


def _cell(text: str) -> Any:
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def read_items(path: str | Path) -> list[DatasetItem]:
    """Items from a ``.jsonl`` / ``.json`` / ``.csv`` file (by suffix; JSONL otherwise)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFileError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".csv":
        return _read_csv(text, path)
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(text)
        except ValueError as exc:
            raise DatasetFileError(f"{path}: invalid JSON: {exc}") from None
        if not isinstance(records, list):
            raise DatasetFileError(f"{path}: a .json dataset is a list of items")
        return [item_from_record(r, f"{path}: item {i + 1}") for i, r in enumerate(records)]
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DatasetFileError(f"{path}:{number}: invalid JSON: {exc}") from None
        items.append(item_from_record(record, f"{path}:{number}"))
    return items


def _read_csv(text: str, path: Path) -> list[DatasetItem]:
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    if "input" not in fields:
        raise DatasetFileError(f"{path}: a CSV dataset needs an 'input' column (found: {', '.join(fields)})")
    expected_key = next((k for k in EXPECTED_KEYS if k in fields), None)
    items = []
    for number, row in enumerate(reader, 2):
        if None in row:
            raise DatasetFileError(f"{path}:{number}: more cells than columns")
        metadata = {k: _cell(v) for k, v in row.items() if k not in ("input", expected_key) and v != ""}
        expected = _cell(row[expected_key]) if expected_key and row[expected_key] != "" else None
        items.append(DatasetItem(input=_cell(row["input"]), expected=expected, metadata=metadata))
    return items


def item_record(item: DatasetItem) -> dict[str, Any]:
    return {"input": item.input, "expected": item.expected, "metadata": item.metadata}


def write_jsonl(items: Iterable[DatasetItem], out: io.TextIOBase | Any) -> None:
    for item in items:
        out.write(json.dumps(item_record(item), ensure_ascii=False, default=str) + "\n")


def write_csv(items: Sequence[DatasetItem], out: io.TextIOBase | Any) -> None:
    keys = sorted({k for item in items for k in item.metadata})
    writer = csv.writer(out)
    writer.writerow(["input", "expected", *keys])
    for item in items:
        writer.writerow([_text(item.input), _text(item.expected), *(_text(item.metadata.get(k)) for k in keys)])


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def items_from_traces(store: Any, filters: Any, limit: int) -> list[DatasetItem]:
    """One item per stored trace matching ``filters`` (a ``TraceFilter``):
    the root span's inputs as input, its outputs as the expected output, and
    the trace id in the metadata. Oldest first."""
    page = store.list_traces(filters, limit=limit)
    items = []
    for trace in reversed(page.items):
        detail = store.get_trace(trace.trace_id)
        if detail is None:
            continue
        root = next((s for s in detail.spans if s.parent_id is None), None)
        if root is None:
            continue
        items.append(DatasetItem(input=root.inputs, expected=root.outputs,
                                 metadata={"trace_id": trace.trace_id, "trace_name": trace.name}))
    return items
