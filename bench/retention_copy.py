"""Prune and copy speed (issue 18): a SQLite store of N spans (4-span traces,
a passing check verdict, stored on its span, and a feedback score row per
trace, small content), half of it 40 days old.

  copy:  chainsight.storage.copy.copy_store into a new SQLite file, and into
         PostgreSQL with --postgres URL (an empty database or schema);
  prune: chainsight.storage.retention.prune of the old half, while another
         thread writes one small trace per transaction and records how long
         each write waited (the longest is what prune made a writer wait).

    python bench/retention_copy.py [--spans 200000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "storage"))

from storage_builders import three_level_trace

from chainsight.framework.model import Score
from chainsight.storage.copy import copy_store
from chainsight.storage.retention import prune
from chainsight.storage.writer import StoreWriter, WriteBatch

DAY = 86_400 * 10**9


def build(url: str, spans: int) -> None:
    now = time.time_ns()
    writer = StoreWriter(url)
    traces = spans // 4
    for start in range(0, traces, 2500):
        batch_spans, scores = [], []
        for i in range(start, min(traces, start + 2500)):
            age = 40 * DAY if i < traces // 2 else DAY
            trace = three_level_trace(now - age + i * 1_000_000)
            batch_spans += trace
            scores += [Score("pii", "check", trace[0].trace_id, span_id=trace[3].span_id,
                             value=0.0, passed=True),
                       Score("thumbs", "feedback", trace[0].trace_id, span_id=trace[3].span_id,
                             value=1.0)]
        writer.write(WriteBatch(spans=batch_spans, scores=scores))
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--postgres", help="an empty PostgreSQL store URL to copy into")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="chainsight-bench-"))
    url = f"sqlite:///{folder / 'source.db'}"
    t = time.perf_counter()
    build(url, args.spans)
    print(f"built {args.spans:,} spans in {time.perf_counter() - t:.1f} s "
          f"({(folder / 'source.db').stat().st_size / 1e6:.0f} MB)")

    targets = [("SQLite", f"sqlite:///{folder / 'copy.db'}")]
    if args.postgres:
        targets.append(("PostgreSQL", args.postgres))
    for label, target in targets:
        t = time.perf_counter()
        counts = copy_store(url, target)
        elapsed = time.perf_counter() - t
        rows = sum(c.copied for c in counts)
        print(f"copy to {label}: {rows:,} rows ({args.spans:,} spans) in {elapsed:.1f} s: "
              f"{args.spans / elapsed:,.0f} spans/s, {rows / elapsed:,.0f} rows/s")

    waits: list[float] = []
    stop = threading.Event()

    def writer_thread() -> None:
        writer = StoreWriter(url)
        while not stop.is_set():
            started = time.perf_counter()
            writer.write(WriteBatch(spans=three_level_trace(time.time_ns())))
            waits.append(time.perf_counter() - started)
            time.sleep(0.005)
        writer.close()

    thread = threading.Thread(target=writer_thread)
    thread.start()
    t = time.perf_counter()
    result = prune(url, time.time_ns() - 30 * DAY)
    elapsed = time.perf_counter() - t
    stop.set()
    thread.join()
    waits.sort()
    print(f"prune: {result.traces:,} traces, {result.spans:,} spans, {result.scores:,} scores in "
          f"{elapsed:.1f} s ({result.spans / elapsed:,.0f} spans/s, {result.batches} batches), "
          f"{result.pages_freed:,} pages given back")
    print(f"  a writer meanwhile: {len(waits)} writes, median {waits[len(waits) // 2] * 1000:.1f} ms, "
          f"longest {waits[-1] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
