"""The recorder pipeline: a bounded queue, one worker thread, one writer thread.

The caller's thread only appends to a ``collections.deque`` (atomic, O(1), no
lock). The worker drains batches (by size or every ``flush_interval_s``),
processes, prices and checks them and encodes their rows; the writer thread
writes them. While batch N is written, the worker processes batch N+1: the
database driver gives up the GIL for the SQL it runs, so on a second core the
writes cost the worker (and the user's threads) little. Still, every plugin
hook runs on the worker alone, batches are written one at a time in order,
and the sinks of a batch run after it was stored. When the queue is full the
oldest item is dropped and counted. When the store is unreachable, prepared
batches go to a spill file and are replayed in order once it answers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framework.dispatch import GuardedDispatcher
from framework.model import Alert, PipelineStats, Sample, Score, Span
from framework.spill import SpillFile

if TYPE_CHECKING:
    from storage.writer import StoreWriter

log = logging.getLogger("chainsight.pipeline")


class _Batch:
    """One drained batch on its way from the worker to the store and sinks."""

    __slots__ = ("alerts", "done", "error", "feedback", "items", "rows", "samples", "spans")

    def __init__(self, items: int, spans: list[Span], samples: list[Sample], alerts: list[Alert],
                 feedback: list[Score]) -> None:
        self.items = items
        self.spans = spans
        self.samples = samples
        self.alerts = alerts
        self.feedback = feedback
        self.rows: dict[str, list[dict[str, Any]]] | None = None
        self.done = threading.Event()
        self.error: BaseException | None = None


class Feedback:
    """Queue item for user feedback: stored like a score, then announced."""

    __slots__ = ("score",)

    def __init__(self, score: Score) -> None:
        self.score = score


@dataclass
class PipelineOptions:
    batch_size: int = 512
    flush_interval_s: float = 0.2
    queue_size: int = 100_000
    check_budget_s: float = 0.05
    trace_buffer_s: float = 300.0
    metrics_only: bool = False
    retry_interval_s: float = 1.0
    stats_interval_s: float = 5.0

    @classmethod
    def from_settings(cls, pipeline: dict[str, Any]) -> PipelineOptions:
        return cls(
            batch_size=int(pipeline.get("batch_size", 512)),
            flush_interval_s=float(pipeline.get("flush_interval_s", 0.2)),
            queue_size=int(pipeline.get("queue_size", 100_000)),
            check_budget_s=float(pipeline.get("check_budget_ms", 50)) / 1000.0,
            trace_buffer_s=float(pipeline.get("trace_buffer_s", 300)),
            metrics_only=bool(pipeline.get("metrics_only", False)),
            stats_interval_s=float(pipeline.get("stats_interval_s", 5.0)),
        )


@dataclass
class Registered:
    """Objects plugins registered at startup, by kind."""

    span_checks: list[Any] = field(default_factory=list)
    trace_checks: list[Any] = field(default_factory=list)
    exporters: list[Any] = field(default_factory=list)
    notifiers: list[Any] = field(default_factory=list)
    samplers: list[Any] = field(default_factory=list)


CONTENT_FIELDS = ("inputs", "outputs")
STATS_SAMPLES = (
    ("spans_queued_total", "queued"),
    ("spans_dropped_total", "dropped"),
    ("spans_written_total", "written"),
    ("spans_failed_total", "failed"),
    ("spans_spilled_total", "spilled"),
    ("queue_depth", "queue_depth"),
    ("plugin_errors_total", "plugin_errors"),
)


class Pipeline:
    def __init__(
        self,
        writer: StoreWriter,
        dispatcher: GuardedDispatcher,
        registered: Registered,
        options: PipelineOptions,
        spill_path: Path,
    ) -> None:
        self.writer = writer
        self.dispatcher = dispatcher
        self.registered = registered
        self.options = options
        self.spill = SpillFile(spill_path)
        self._queue: deque[Any] = deque(maxlen=options.queue_size)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._drop_lock = threading.Lock()
        # Held by the worker while it moves items from the queue into a batch,
        # so flush() sees every item either queued or taken, never in between.
        self._take_lock = threading.Lock()
        self._progress = threading.Condition()
        self._traces: dict[str, tuple[float, list[Span]]] = {}
        self._last_evict = time.monotonic()
        self._store_down_since: float | None = None
        self._last_retry = 0.0
        self._health_version = 0
        self._last_stats = 0.0
        self._stats_labels = {"process": f"{socket.gethostname()}:{os.getpid()}"}
        # Counters. ``dropped`` is written by callers under _drop_lock (full
        # queue only); everything else is written by the worker alone.
        self.dropped = 0
        self.taken = 0
        self.processed = 0
        self.written = 0
        self.failed = 0
        self.spilled = 0
        self.replayed = 0
        self._writing: _Batch | None = None  # handed to the writer, not yet completed
        self._writes: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._writer_thread = threading.Thread(target=self._write_loop, name="chainsight-writer", daemon=True)
        self._writer_thread.start()
        self._thread = threading.Thread(target=self._run, name="chainsight-pipeline", daemon=True)
        self._thread.start()

    # ---- caller side (any thread): O(1), never raises, never blocks -------
    def put(self, item: Any) -> None:
        queue = self._queue
        if len(queue) >= self.options.queue_size:
            with self._drop_lock:
                self.dropped += 1
        queue.append(item)
        if len(queue) >= self.options.batch_size and not self._wake.is_set():
            self._wake.set()

    def stats(self) -> PipelineStats:
        depth = len(self._queue)
        return PipelineStats(
            queued=self.taken + depth + self.dropped,
            dropped=self.dropped,
            written=self.written,
            failed=self.failed,
            spilled=self.spilled,
            replayed=self.replayed,
            queue_depth=depth,
            plugin_errors=self.dispatcher.errors_total,
        )

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued before this call is processed (stored,
        spilled or counted as dropped). A flush never enqueues anything, so it
        cannot push a span out of a full queue."""
        with self._take_lock:
            target = self.taken + len(self._queue) + self.dropped
        if not self._thread.is_alive():
            return self.processed + self.dropped >= target
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(
                lambda: self.processed + self.dropped >= target or not self._thread.is_alive(),
                max(0.0, timeout),
            ) and self.processed + self.dropped >= target

    def stop(self, timeout: float) -> bool:
        """Drain, stop the worker and call shutdown hooks within ``timeout``."""
        deadline = time.monotonic() + max(0.0, timeout)
        drained = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            self._writes.put(None)
            self._writer_thread.join(max(0.0, deadline - time.monotonic()))
        remaining = max(0.0, deadline - time.monotonic())
        for exporter in self.registered.exporters:
            self.dispatcher.guard(exporter.name, exporter.shutdown, remaining, what="shutdown")
        self.dispatcher.call("shutdown")
        return drained and not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and self._writer_thread.is_alive()

    # ---- worker ----------------------------------------------------------
    def _run(self) -> None:
        if self.spill.exists():
            self._try_replay(force=True)
        while True:
            self._wake.wait(self.options.flush_interval_s)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # a bug here must not kill the worker
                log.exception("pipeline worker error")
            if self._stop.is_set() and not self._queue:
                self._store_stats()
                with self._progress:
                    self._progress.notify_all()
                return

    def _drain(self) -> None:
        queue = self._queue
        size = self.options.batch_size
        try:
            while queue:
                with self._take_lock:
                    items = [queue.popleft() for _ in range(min(size, len(queue)))]
                    self.taken += len(items)
                batch = self._process(items)
                try:
                    # Only now wait for the previous batch: its rows were
                    # being written while this one was processed.
                    self._complete_write()
                finally:
                    self._start_write(batch)
        finally:
            self._complete_write()
        if self._behind_spill:
            self._try_replay()
        if time.monotonic() - self._last_stats >= self.options.stats_interval_s and self.taken:
            self._store_stats()

    @property
    def _behind_spill(self) -> bool:
        """The store is down, or spilled batches wait: new ones queue behind them."""
        return self._store_down_since is not None or self.spill.exists()

    def _store_stats(self) -> None:
        """The pipeline's own counters, stored as samples so every reader (TUI,
        CLI, exporters) sees dropped/failed/spilled spans without this process."""
        self._last_stats = time.monotonic()
        stats = self.stats()
        now = time.time_ns()
        samples = [
            Sample(f"chainsight_{name}", float(getattr(stats, attr)), "pipeline", now, self._stats_labels)
            for name, attr in STATS_SAMPLES
        ]
        try:
            self._store(samples)
        except Exception:
            log.exception("could not store pipeline stats")

    def _process(self, items: list[Any]) -> _Batch:
        """Run the processing hooks and checks and encode the rows (worker)."""
        spans: list[Span] = []
        scores: list[Score] = []
        samples: list[Sample] = []
        alerts: list[Alert] = []
        feedback: list[Score] = []
        for item in items:
            if isinstance(item, Span):
                spans.append(item)
            elif isinstance(item, Score):
                scores.append(item)
            elif isinstance(item, Sample):
                samples.append(item)
            elif isinstance(item, Alert):
                alerts.append(item)
            elif isinstance(item, Feedback):
                feedback.append(item.score)
        batch = _Batch(len(items), spans, samples, alerts, feedback)
        try:
            if spans:
                scores.extend(self._process_spans(spans))
            if self.options.metrics_only and scores:
                scores = [strip_comment(score) for score in scores]
            batch.rows = self._prepare(spans, scores + feedback, samples, alerts)
        except Exception:  # a bug here must not lose the batch's accounting
            log.exception("pipeline worker error on a batch of %d items", len(items))
            self.failed += len(spans)
        return batch

    def _start_write(self, batch: _Batch) -> None:
        """Hand a processed batch to the writer, or spill it while the store is
        down (worker; the previous batch is complete, so order is kept)."""
        rows = batch.rows
        if rows and self._behind_spill:
            # Keep order: while anything is spilled, new batches queue behind it.
            self._spill(rows, len(batch.spans))
            batch.rows = None
        if batch.rows:
            self._writing = batch
            self._writes.put(batch)
        else:
            self._finish(batch)

    def _write_loop(self) -> None:
        """The writer thread: runs the store's writes, nothing else."""
        while True:
            batch = self._writes.get()
            if batch is None:
                return
            try:
                if batch.rows:
                    self.writer.write_prepared(batch.rows)
            except BaseException as exc:  # reported by the worker
                batch.error = exc
            finally:
                batch.done.set()

    def _complete_write(self) -> None:
        """Wait for the batch being written, count it, spill it if the store
        was unreachable, and run its sinks (worker)."""
        batch, self._writing = self._writing, None
        if batch is None:
            return
        while not batch.done.wait(1.0):
            if not self._writer_thread.is_alive():  # pragma: no cover - the loop never raises
                batch.error = RuntimeError("the writer thread died")
                break
        try:
            if batch.rows is not None:
                self._account(batch.rows, len(batch.spans), batch.error)
        finally:
            self._finish(batch)  # counted for flush() whatever happened

    def _finish(self, batch: _Batch) -> None:
        """Sinks of a stored (or spilled) batch, then progress for flush()."""
        try:
            self._run_sinks(batch)
        finally:
            self.processed += batch.items
            with self._progress:
                self._progress.notify_all()

    def _run_sinks(self, batch: _Batch) -> None:
        dispatcher = self.dispatcher
        if batch.spans:
            spans = tuple(batch.spans)
            dispatcher.call("spans_finished", spans=spans)
            for exporter in self.registered.exporters:
                dispatcher.guard(exporter.name, exporter.export, spans, what="export")
        if batch.samples:
            dispatcher.call("samples_collected", samples=tuple(batch.samples))
        for alert in batch.alerts:
            dispatcher.call("alert_changed", alert=alert)
            for notifier in self.registered.notifiers:
                dispatcher.guard(notifier.name, notifier.notify, alert, what="notify")
        for score in batch.feedback:
            dispatcher.call("feedback_recorded", score=score)
        if dispatcher.version != self._health_version:
            self._store_health()

    def _store_health(self) -> None:
        """Persist plugin health so ``chainsight plugins`` in another process sees it."""
        from storage.engine import StoreUnavailable

        version = self.dispatcher.version
        try:
            self.writer.write_plugin_health(self.dispatcher.snapshot())
            self._health_version = version
        except StoreUnavailable:
            pass  # retried after the next batch
        except Exception:
            log.exception("could not store plugin health")
            self._health_version = version

    def _process_spans(self, spans: list[Span]) -> list[Score]:
        """process_span, price_span, span checks and trace checks, each hook
        or check over the whole batch in turn: every span still goes through
        them in that order, and the guard's bookkeeping is paid per batch."""
        dispatcher = self.dispatcher
        budget = self.options.check_budget_s
        scores: list[Score] = []
        # Enrichment first: a token estimate made here is what gets priced.
        for name, function in dispatcher.implementations("process_span"):
            for _ in dispatcher.map(name, function, spans, what="process_span"):
                pass
        unpriced = [s for s in spans
                    if s.cost_usd is None and s.model and (s.input_tokens or s.output_tokens)]
        for name, function in dispatcher.implementations("price_span"):  # first answer wins
            if not unpriced:
                break
            left: list[Span] = []
            for span, ok, cost in dispatcher.map(name, function, unpriced, what="price_span"):
                if ok and cost is not None:
                    span.cost_usd = float(cost)
                else:
                    left.append(span)
            unpriced = left
        for check in self.registered.span_checks:
            for _, ok, result in dispatcher.map(check.name, check.check_span, spans, what="check_span",
                                                budget_s=budget):
                if ok and result:
                    scores.extend(result)
        trace_checks = self.registered.trace_checks
        if trace_checks or dispatcher.has_impls("trace_finished"):
            now = time.monotonic()
            for span in spans:
                entry = self._traces.get(span.trace_id)
                if entry is None:
                    entry = self._traces[span.trace_id] = (now, [])
                entry[1].append(span)
                if span.parent_id is None:
                    del self._traces[span.trace_id]
                    scores.extend(self._finish_trace(span, entry[1], trace_checks, budget))
            if now - self._last_evict > 1.0:
                self._evict(now)
        if self.options.metrics_only:
            for span in spans:
                strip_content(span)
        return scores

    def _finish_trace(self, root: Span, spans: Sequence[Span], checks: list[Any], budget: float) -> list[Score]:
        scores: list[Score] = []
        frozen = tuple(spans)
        for check in checks:
            ok, result = self.dispatcher.guard(
                check.name, check.check_trace, root, frozen, what="check_trace", budget_s=budget
            )
            if ok and result:
                scores.extend(result)
        for result in self.dispatcher.call("trace_finished", root=root, spans=frozen):
            scores.extend(result)
        return scores

    def _evict(self, now: float) -> None:
        self._last_evict = now
        horizon = now - self.options.trace_buffer_s
        for trace_id in [t for t, (seen, _) in self._traces.items() if seen < horizon]:
            del self._traces[trace_id]

    # ---- storage, spill and replay ---------------------------------------
    def _prepare(
        self, spans: list[Span], scores: list[Score], samples: list[Sample], alerts: list[Alert]
    ) -> dict[str, list[dict[str, Any]]] | None:
        from storage.writer import WriteBatch

        if not (spans or scores or samples or alerts):
            return None
        try:
            return self.writer.prepare(WriteBatch(spans=spans, scores=scores, samples=samples, alerts=alerts))
        except Exception:
            log.exception("could not serialise a batch of %d spans; dropped", len(spans))
            self.failed += len(spans)
            return None

    def _account(self, rows: dict[str, list[dict[str, Any]]], count: int, exc: BaseException | None) -> None:
        """Count a write of ``count`` spans; spill its rows if the store was unreachable."""
        from storage.engine import StoreUnavailable

        if exc is None:
            self.written += count
        elif isinstance(exc, StoreUnavailable):
            log.warning("store unavailable (%s); spilling to %s", exc, self.spill.path)
            self._store_down_since = time.monotonic()
            self._last_retry = self._store_down_since
            self._spill(rows, count)
        else:
            log.error("store rejected a batch of %d spans", count, exc_info=exc)
            self.failed += count

    def _store(self, samples: list[Sample]) -> None:
        """Write records outside the batch flow (the pipeline's own stats), on
        the worker, when no batch is being written; no sinks run for them."""
        rows = self._prepare([], [], samples, [])
        if not rows:
            return
        if self._behind_spill:
            self._spill(rows, 0)
            return
        error: Exception | None = None
        try:
            self.writer.write_prepared(rows)
        except Exception as exc:
            error = exc
        self._account(rows, 0, error)

    def _spill(self, rows: dict[str, list[dict[str, Any]]], count: int) -> None:
        try:
            self.spill.append(rows)
            self.spilled += count
        except OSError:
            log.exception("cannot write spill file %s; %d spans lost", self.spill.path, count)
            self.failed += count

    def _try_replay(self, force: bool = False) -> None:
        from storage.engine import StoreUnavailable

        now = time.monotonic()
        if not force and now - self._last_retry < self.options.retry_interval_s and not self._stop.is_set():
            return
        self._last_retry = now
        written: list[int] = []

        def write(rows: dict[str, list[dict[str, Any]]]) -> None:
            self.writer.write_prepared(rows)
            written.append(len(rows.get("spans", ())))

        try:
            self.spill.replay(write)
        except StoreUnavailable:
            return
        except Exception:
            log.exception("replaying %s failed; will retry", self.spill.path)
            return
        finally:
            self.replayed += sum(written)
            self.written += sum(written)
        if self._store_down_since is not None:
            log.warning("store is back after %.1f s; spill replayed", now - self._store_down_since)
        self._store_down_since = None


def strip_content(span: Span) -> None:
    """Metrics-only mode: keep timings, tokens, cost; drop every content field."""
    span.inputs = None
    span.outputs = None
    span.error = span.error_type  # the type, not the message (it may quote content)
    if span.attributes:
        span.attributes = {k: v for k, v in span.attributes.items() if isinstance(v, int | float | bool)}
    if span.metadata:
        span.metadata = None


def strip_comment(score: Score) -> Score:
    """Metrics-only mode: a check's or judge's explanation may quote content.
    Feedback comments are the user's own words about the trace and are kept."""
    if score.comment is None or score.source == "feedback":
        return score
    return dataclasses.replace(score, comment=None)
