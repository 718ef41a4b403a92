"""Caller-thread cost of recording a span (start + end), default plugins loaded.

Runs, interleaved in one process:
  * baseline: an empty loop with the same call shape (two method calls on a
    trivial object), the floor the interpreter imposes;
  * chainsight: Observer.start_span + end_span into a real SQLite file, with the
    default built-in plugins loaded and the pipeline worker running (it competes
    for the GIL, as it would in a real program);
  * caller alone: the same into a second observer whose worker sleeps through
    the round (batch size and flush interval larger than a round) and drains
    after it: the recording itself, without the worker's share of the GIL.

Prints the median per-span cost over rounds and what the pipeline did with the
spans (all must be written, none dropped).

    python bench/hot_path.py [--spans 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chainsight.framework.observer import Observer


class _Floor:
    def start_span(self, name: str, kind: str = "chain", *, parent: object = None) -> object:
        return parent

    def end_span(self, span: object) -> None:
        return None


def run_round(recorder: object, parent: object, count: int) -> float:
    start_span = recorder.start_span  # type: ignore[attr-defined]
    end_span = recorder.end_span  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    for _ in range(count):
        end_span(start_span("step", "tool", parent=parent))
    return (time.perf_counter() - t0) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000, help="spans per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/hot_path.db"
        observer = Observer(
            url,
            spill_path=Path(tmp) / "spill.jsonl",
            entry_points=False,
            pipeline={"queue_size": args.spans * 2},
        )
        asleep = Observer(
            f"sqlite:///{tmp}/asleep.db",
            spill_path=Path(tmp) / "asleep.jsonl",
            entry_points=False,
            pipeline={"queue_size": args.spans * 2, "batch_size": 10**9, "flush_interval_s": 3600.0},
        )
        loaded = [i.name for i in observer.plugins.infos if i.status == "active"]
        root = observer.start_span("bench-root", "chain")
        asleep_root = asleep.start_span("bench-root", "chain")
        floor = _Floor()
        floor_times: list[float] = []
        ours: list[float] = []
        alone: list[float] = []
        for _ in range(args.rounds):
            floor_times.append(run_round(floor, root, args.spans))
            ours.append(run_round(observer, root, args.spans))
            observer.flush(timeout=120)
            alone.append(run_round(asleep, asleep_root, args.spans))
            asleep.flush(timeout=120)
        observer.end_span(root)
        observer.flush(timeout=120)
        asleep.end_span(asleep_root)
        asleep.flush(timeout=120)
        stats, asleep_stats = observer.stats(), asleep.stats()
        observer.shutdown(timeout=30)
        asleep.shutdown(timeout=30)

    floor_us = statistics.median(floor_times) * 1e6
    ours_us = statistics.median(ours) * 1e6
    alone_us = statistics.median(alone) * 1e6
    total = args.spans * args.rounds + 1
    print(f"plugins loaded: {', '.join(loaded) or '(none)'}")
    print(f"spans per round: {args.spans:,}  rounds: {args.rounds}")
    print(f"{'':28}{'per span (median)':>20}")
    print(f"{'call-shape floor':28}{floor_us:>17.2f} us")
    print(f"{'chainsight start+end':28}{ours_us:>17.2f} us")
    print(f"{'above the floor':28}{ours_us - floor_us:>17.2f} us   (target: total < 5 us)")
    print(f"{'caller alone (worker asleep)':28}{alone_us:>17.2f} us")
    print(
        f"pipeline: recorded {total:,}, written {stats.written:,}, dropped {stats.dropped:,}, "
        f"failed {stats.failed:,}, plugin errors {stats.plugin_errors:,}"
    )
    complete = all(st.written == total and st.dropped == 0 for st in (stats, asleep_stats))
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
