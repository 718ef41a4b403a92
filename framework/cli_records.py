"""``chainsight db replay`` and ``chainsight deadletter list|show``: the spill
and dead-letter files, from the command line.

The spill file holds batches the store could not take (it was down, locked or
misconfigured); replaying writes them now, in order, and keeps nothing twice
(rows are keyed). The dead-letter file holds rows the store refused even
alone, with its reason, so nothing is lost without a trace.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from chainsight.framework.cli_render import Column, clean, fmt_time, print_json, print_table
from chainsight.framework.pipeline import dead_letter_path
from chainsight.framework.spill import Damaged, RecordFile, SpillFile


class RecordsError(Exception):
    """A one-line problem with the spill or dead-letter file."""


def spill_path(ns: argparse.Namespace) -> Path:
    given = getattr(ns, "spill", None)
    return Path(given).expanduser() if given else ns.settings.spill_path_for(ns.db)


def add_spill_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spill", metavar="PATH",
                        help="the spill file (default: [pipeline] spill_path, else the --db store's "
                             "own chainsight-HASH.spill.jsonl beside plugins.toml)")


def cmd_db_replay(ns: argparse.Namespace) -> int:
    """Write every spilled batch into the store at ``--db``."""
    from chainsight.storage.engine import StoreUnavailable, display_url, open_engine
    from chainsight.storage.writer import StoreWriter

    spill = SpillFile(spill_path(ns))
    letters = RecordFile(dead_letter_path(spill.path))
    if not spill.exists():
        _say(ns, {"spill": str(spill.path), "batches": 0, "spans": 0, "dead_lettered": 0},
             f"nothing to replay: {spill.path} is empty or absent")
        return 0
    open_engine(ns.db, create=False).dispose()  # a mistyped --db is an error, not a new store
    writer = StoreWriter(ns.db)
    counts = {"batches": 0, "spans": 0, "dead_lettered": 0, "damaged": 0}

    def write(rows: dict[str, list[dict[str, Any]]]) -> None:
        try:
            refused = [(r.table, r.error, r.row) for r in writer.write_isolating(rows)]
        except StoreUnavailable:
            raise
        except Exception as exc:  # never retried forever, as in the pipeline
            refused = [(table, f"{type(exc).__name__}: {exc}", row)
                       for table, table_rows in rows.items() for row in table_rows]
        if refused:
            letters.append([{"time_ns": time.time_ns(), "table": table, "error": error, "row": row}
                            for table, error, row in refused])
        dead = sum(1 for table, _, _ in refused if table == "spans")
        counts["batches"] += 1
        counts["spans"] += len(rows.get("spans") or ()) - dead
        counts["dead_lettered"] += dead

    def damaged(record: Damaged) -> None:
        letters.append([{"time_ns": time.time_ns(), "table": None,
                         "error": f"spill record: {record.reason}", "raw": record.text}])
        counts["damaged"] += 1

    try:
        writer.open()
        spill.replay(write, damaged)
    finally:
        writer.close()
    note = ""
    if counts["dead_lettered"] or counts["damaged"]:
        note = (f"; {counts['dead_lettered']} spans refused by the store and {counts['damaged']} "
                f"damaged records kept in {letters.path} (`chainsight deadletter list`)")
    _say(ns, {"spill": str(spill.path), **counts},
         f"replayed {counts['batches']} batches ({counts['spans']} spans) from {spill.path} "
         f"into {display_url(ns.db)}{note}")
    return 0


LETTER_COLUMNS = (
    Column("#"),
    Column("time"),
    Column("table"),
    Column("span", max_width=40, flex=True),
    Column("error", max_width=80, flex=True),
)


def _letters(ns: argparse.Namespace) -> tuple[Path, list[Any]]:
    path = dead_letter_path(spill_path(ns))
    return path, RecordFile(path).read()


def cmd_deadletter_list(ns: argparse.Namespace) -> int:
    path, letters = _letters(ns)
    if ns.json:
        print_json({"path": str(path), "records": [_summary(i, r) for i, r in enumerate(letters, 1)]})
        return 0
    if not letters:
        sys.stdout.write(f"no dead letters in {path}\n")
        return 0
    rows = [[str(s["index"]), fmt_time(s["time_ns"]), s["table"] or "-", clean(s["span"] or "-"),
             clean(s["error"])] for s in (_summary(i, r) for i, r in enumerate(letters, 1))]
    print_table(LETTER_COLUMNS, rows, title=f"{len(letters)} dead letters in {path}")
    return 0


def cmd_deadletter_show(ns: argparse.Namespace) -> int:
    path, letters = _letters(ns)
    if not 1 <= ns.index <= len(letters):
        raise RecordsError(f"no dead letter #{ns.index} in {path} ({len(letters)} there)")
    record = letters[ns.index - 1]
    print_json(record.__dict__ if isinstance(record, Damaged) else record)
    return 0


def _summary(index: int, record: Any) -> dict[str, Any]:
    if isinstance(record, Damaged):
        return {"index": index, "time_ns": None, "table": None, "span": None,
                "error": f"unreadable dead letter: {record.reason}"}
    row = record.get("row") or {}
    span = " ".join(str(row[k]) for k in ("name", "span_id") if row.get(k)) if isinstance(row, dict) else ""
    return {"index": index, "time_ns": record.get("time_ns"), "table": record.get("table"),
            "span": span or None, "error": str(record.get("error"))}


def _say(ns: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if ns.json:
        print_json(data)
    else:
        sys.stdout.write(text + "\n")
