"""How fast the TUI opens on a store of one million spans.

Builds (once, cached in the temp directory) a SQLite store of 50,000 traces x
20 spans plus one 200-span trace through ``StoreWriter`` batches, then measures
with ``App.run_test()``:

* launch -> first painted traces table (rows present)   target < 1 s
* open the 200-span trace -> tree and waterfall filled  target < 300 ms
* next page at the end of the table (cursor paging)     reported

The measurement runs in a fresh interpreter, so "launch" includes importing
Textual, the app and the storage layer (Python's own start-up is not counted).

Usage: python bench/tui_open.py [--rebuild] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRACES = 50_000
SPANS_PER_TRACE = 20
BIG_SPANS = 200
BATCH_TRACES = 500
VERSION = "v1"


def build(path: Path) -> str:
    """Write the store; returns the id of the 200-span trace."""
    from chainsight.storage.writer import StoreWriter, WriteBatch
    from tests.tui.tui_seed import NOW_NS, SECOND, make_trace

    url = f"sqlite:///{path}"
    rng = random.Random(1)
    writer = StoreWriter(url)
    started = time.perf_counter()
    spans_written = 0
    step = 30 * 86400 * SECOND // TRACES  # a month of traffic
    try:
        batch = []
        for i in range(TRACES):
            batch.extend(make_trace(rng, NOW_NS - (TRACES - i) * step, n_spans=SPANS_PER_TRACE))
            if (i + 1) % BATCH_TRACES == 0:
                spans_written += writer.write(WriteBatch(spans=batch))
                batch = []
                if (i + 1) % 10_000 == 0:
                    rate = spans_written / (time.perf_counter() - started)
                    print(f"  {spans_written:,} spans ({rate:,.0f}/s)", flush=True)
        big = make_trace(rng, NOW_NS - 600 * SECOND, n_spans=BIG_SPANS, name="big_agent_run")
        spans_written += writer.write(WriteBatch(spans=batch + big))
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    print(f"built {spans_written:,} spans in {elapsed:.1f}s ({spans_written / elapsed:,.0f}/s)")
    return big[0].trace_id


def store(path: Path, rebuild: bool) -> str:
    id_file = path.with_suffix(".trace_id")
    if rebuild or not path.exists() or not id_file.exists():
        for old in path.parent.glob(path.name + "*"):
            old.unlink()
        print(f"building {path} ...")
        id_file.write_text(build(path))
    else:
        print(f"reusing {path}")
    return id_file.read_text().strip()


async def measure(url: str, big_id: str, started: float) -> dict[str, float]:
    from textual.widgets import DataTable

    from chainsight.tui.app import ChainsightApp
    from chainsight.tui.data import DataSource
    from chainsight.tui.screens.trace_detail import TraceDetailScreen
    from chainsight.tui.widgets.waterfall import SpanTree

    imported_ui = time.perf_counter()
    store_open: list[float] = []
    original_open = DataSource._open

    def timed_open(self):  # type: ignore[no-untyped-def]
        begin = time.perf_counter()
        try:
            return original_open(self)
        finally:
            if not store_open:
                store_open.append(time.perf_counter() - begin)
    DataSource._open = timed_open  # type: ignore[method-assign]

    # "Painted" = the widget rendered its lines with the data in it: wrap render_lines
    # to note the first time that happens (pilot.pause() would add idle-wait time).
    painted: dict[str, float] = {}

    def spy(cls: type, key: str, ready) -> None:  # type: ignore[no-untyped-def]
        original = cls.render_lines

        def render_lines(self, crop):  # type: ignore[no-untyped-def]
            strips = original(self, crop)
            if key not in painted and ready(self):
                painted[key] = time.perf_counter()
            return strips
        cls.render_lines = render_lines  # type: ignore[method-assign]

    spy(DataTable, "table", lambda t: t.id == "traces" and t.row_count > 0)
    spy(SpanTree, "tree", lambda t: t.span_count == BIG_SPANS)

    async def until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.perf_counter() + timeout
        while not check():
            if time.perf_counter() > deadline:
                raise TimeoutError("the app did not get there")
            await asyncio.sleep(0.001)

    results: dict[str, float] = {}
    app = ChainsightApp(url, health_interval=60)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(lambda: "table" in painted)
        results["first_table_s"] = painted["table"] - started
        results["import_ui_s"] = imported_ui - started
        results["store_open_s"] = store_open[0] if store_open else 0.0

        opened = time.perf_counter()
        app.call_later(app.open_trace, big_id)
        await until(lambda: "tree" in painted)
        results["open_trace_s"] = painted["tree"] - opened
        screen = app.screen
        assert isinstance(screen, TraceDetailScreen) and screen.query_one(SpanTree).span_count

        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, TraceDetailScreen))
        table = app.screen.query_one("#traces", DataTable)
        rows = table.row_count
        paged = time.perf_counter()
        await pilot.press("ctrl+end")
        await until(lambda: table.row_count > rows)
        results["next_page_s"] = time.perf_counter() - paged
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--db", type=Path,
                        default=Path(tempfile.gettempdir()) / f"chainsight-bench-1m-{VERSION}.db")
    parser.add_argument("--measure", metavar="TRACE_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child: nothing of Chainsight imported yet
        started = time.perf_counter()
        results = asyncio.run(measure(f"sqlite:///{args.db}", args.measure, started))
        print(json.dumps(results))
        return 0
    big_id = store(args.db, args.rebuild)
    child = subprocess.run([sys.executable, __file__, "--db", str(args.db), "--measure", big_id],
                           capture_output=True, text=True, check=False, cwd=ROOT)
    if child.returncode != 0:
        print(child.stdout, child.stderr, file=sys.stderr)
        return 2
    results = json.loads(child.stdout.strip().splitlines()[-1])
    ok = True
    for key, label, target in (("first_table_s", "launch -> first painted traces table", 1.0),
                               ("import_ui_s", "  of which: import Textual + tui", None),
                               ("store_open_s", "  of which: import chainsight.storage + open store", None),
                               ("open_trace_s", f"open {BIG_SPANS}-span trace", 0.3),
                               ("next_page_s", "next page (cursor paging)", None)):
        value = results[key]
        verdict = "" if target is None else ("  OK" if value < target else "  SLOW")
        ok = ok and (target is None or value < target)
        goal = "" if target is None else f" (target < {target * 1000:.0f} ms)"
        print(f"{label:<40} {value * 1000:8.1f} ms{goal}{verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
