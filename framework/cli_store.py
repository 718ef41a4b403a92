"""``chainsight db prune`` (delete what is older than an age, storage/retention.py)
and ``chainsight db copy`` (a whole store into another, storage/copy.py)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

from chainsight.framework.cli_render import fmt_int, fmt_time, print_json
from chainsight.framework.commands import CommandError, display_url, parse_duration


def configure_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("--older-than", required=True, metavar="AGE",
                   help="delete traces that started longer ago than this (30d, 12h, 1w), with "
                        "their spans and scores, and samples older than it")
    p.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    p.add_argument("--batch-size", type=int, default=200, metavar="N",
                   help="traces per delete transaction (default 200): smaller batches hold the "
                        "store's write lock for less time")
    p.add_argument("--vacuum", action="store_true",
                   help="SQLite: then rewrite the file (VACUUM), giving all free space back and "
                        "making later prunes give it back in steps; writers wait meanwhile")


def cmd_db_prune(ns: argparse.Namespace) -> int:
    from chainsight.storage.retention import prune, vacuum

    age_s = parse_duration(ns.older_than)
    if age_s <= 0:
        raise CommandError(f"--older-than must be longer than 0, not {ns.older_than!r}")
    if ns.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, not {ns.batch_size}")
    cutoff_ns = time.time_ns() - int(age_s * 1e9)
    show = not ns.json and sys.stderr.isatty()

    def progress(r: Any) -> None:
        if show:
            sys.stderr.write(f"\rpruned {r.traces:,} traces, {r.spans:,} spans, {r.scores:,} scores, "
                             f"{r.samples:,} samples")
            sys.stderr.flush()

    result = prune(ns.db, cutoff_ns, dry_run=ns.dry_run, batch_size=ns.batch_size,
                   progress=progress)
    if show:
        sys.stderr.write("\n")
    vacuumed = False
    if ns.vacuum and not ns.dry_run:
        if not ns.db.startswith("sqlite"):
            raise CommandError(f"--vacuum is for SQLite stores, not {display_url(ns.db)} "
                               "(PostgreSQL's autovacuum reuses the space)")
        vacuum(ns.db)
        vacuumed = True
    if ns.json:
        print_json(dataclasses.asdict(result) | {"url": display_url(ns.db), "vacuumed": vacuumed})
        return 0
    verb = "would delete" if result.dry_run else "deleted"
    sys.stdout.write(
        f"{display_url(ns.db)}: {verb} {fmt_int(result.traces)} traces started before "
        f"{fmt_time(cutoff_ns)} ({fmt_int(result.spans)} spans, {fmt_int(result.scores)} scores), "
        f"and {fmt_int(result.samples)} samples\n")
    if result.pages_freed:
        sys.stdout.write(f"gave {fmt_int(result.pages_freed)} free pages back to the file system\n")
    if vacuumed:
        sys.stdout.write("rewrote the file (VACUUM)\n")
    return 0


def configure_copy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", required=True, metavar="URL",
                   help="the destination store, e.g. postgresql+psycopg://user@host/chainsight "
                        "(made and migrated if need be; it must hold no traces yet)")
    p.add_argument("--batch-size", type=int, default=2000, metavar="N",
                   help="rows per write transaction (default 2000)")


def cmd_db_copy(ns: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from chainsight.storage.copy import CopyError, copy_store

    if ns.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, not {ns.batch_size}")
    console = Console(stderr=True)
    columns = (TextColumn("copying {task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=bool(ns.json)) as bar:
        task = bar.add_task("rows", total=None)

        def progress(table: str, done: int, total: int) -> None:
            bar.update(task, description=table, completed=done, total=total)

        try:
            counts = copy_store(ns.db, ns.to, batch_size=ns.batch_size, progress=progress)
        except CopyError as exc:
            raise CommandError(str(exc)) from None
    if ns.json:
        print_json({"from": display_url(ns.db), "to": display_url(ns.to), "ok": True,
                    "tables": [dataclasses.asdict(c) for c in counts]})
        return 0
    for c in counts:
        sys.stdout.write(f"{c.table:<20} {c.destination:>12,}\n")
    sys.stdout.write(f"copied {sum(c.copied for c in counts):,} rows from {display_url(ns.db)} to "
                     f"{display_url(ns.to)}; count check: every table has as many rows as the "
                     "source had\n")
    return 0
