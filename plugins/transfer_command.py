"""``chainsight export traces [FILTER] --format jsonl|csv|parquet`` and ``chainsight
import FILE``: traces out of a store and back into one
(``chainsight.storage.transfer``). Both stream: any number of traces, one at
a time. Registered by the built-in plugin ``export``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from chainsight.framework.commands import CommandError, display_url, open_store, parse_time


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("query", nargs="?", default=None, metavar="FILTER",
                        help="trace filter, e.g. 'since:7d status:error' (default: every trace)")
    parser.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl",
                        help="jsonl (default): whole traces, spans and scores, one per line, for "
                             "`chainsight import`; csv: one summary row per trace; parquet: the "
                             "same rows, typed (needs --output and pyarrow: "
                             "pip install 'chainsight[parquet]')")
    parser.add_argument("--since", help="only traces since (30m, 2h, 7d, or an ISO date)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    # --db after `traces` too (the export command's own --db must come before it)
    parser.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                        help="store URL (default: the configured one)")


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if not path:
        yield sys.stdout
        return
    try:
        with open(path, "w", encoding="utf-8", newline="") as out:
            yield out
    except OSError as exc:
        raise CommandError(f"cannot write {path!r}: {exc.strerror or exc}") from None


def run_export(ns: argparse.Namespace) -> int:
    import dataclasses

    from chainsight.storage.filters import FilterError, parse_filter
    from chainsight.storage.query import TraceFilter
    from chainsight.storage.transfer import iter_traces, write_csv, write_jsonl

    try:
        filters = parse_filter(ns.query) if ns.query else TraceFilter()
    except FilterError as exc:
        raise CommandError(f"invalid filter {ns.query!r}: {exc}") from None
    if ns.since:
        filters = dataclasses.replace(filters, since_ns=parse_time(ns.since))
    if ns.format == "parquet":
        count = _parquet(ns, filters)
    else:
        write = write_jsonl if ns.format == "jsonl" else write_csv
        with open_store(ns.db) as store, _output(ns.output) as out:
            count = write(iter_traces(store, filters), out)
    if ns.output or not sys.stdout.isatty():
        sys.stderr.write(f"exported {count:,} traces from {display_url(ns.db)}"
                         + (f" to {ns.output}\n" if ns.output else "\n"))
    return 0


def _parquet(ns: argparse.Namespace, filters: Any) -> int:
    from chainsight.storage.transfer import iter_traces, write_parquet

    if not ns.output:
        raise CommandError("--format parquet writes a file: give it with --output FILE")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise CommandError("--format parquet needs pyarrow: pip install 'chainsight[parquet]'",
                           exit_status=2) from None
    with open_store(ns.db) as store:
        try:
            return write_parquet(iter_traces(store, filters), ns.output)
        except OSError as exc:
            raise CommandError(f"cannot write {ns.output!r}: {exc.strerror or exc}") from None


def configure_import(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE",
                        help="a JSONL export (`chainsight export traces`); - reads stdin")


def run_import(ns: argparse.Namespace) -> int:
    from chainsight.storage.transfer import RecordError, import_jsonl

    try:
        source = sys.stdin if ns.file == "-" else open(ns.file, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"cannot read {ns.file!r}: {exc.strerror or exc}") from None
    name = "stdin" if ns.file == "-" else str(Path(ns.file))
    try:
        with source:
            result = import_jsonl(ns.db, source, source=name)
    except RecordError as exc:
        raise CommandError(f"{exc} (the traces before it were imported)") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if ns.json:
        from chainsight.framework.commands import print_json

        print_json({"traces": result.traces, "spans": result.spans, "scores": result.scores,
                    "rejected": result.rejected, "url": display_url(ns.db)})
    else:
        sys.stdout.write(f"imported {result.traces:,} traces ({result.spans:,} spans, "
                         f"{result.scores:,} scores) into {display_url(ns.db)}\n")
    if result.rejected:
        raise CommandError(f"the store refused {result.rejected} rows (first: "
                           f"{result.first_rejection}); the others were imported")
    return 0
