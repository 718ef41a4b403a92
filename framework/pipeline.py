"""The recorder pipeline: a bounded queue, one worker thread, one writer thread.

The caller's thread only appends to a ``collections.deque`` (atomic, O(1)).
The worker first builds what the pipeline needs (configuration, plugins, the
store: :class:`PipelineParts`, made by the observer), so no caller ever waits
for Chainsight's start-up; spans recorded meanwhile wait in the queue. Then it
drains batches (by size or every ``flush_interval_s``), processes, prices and
checks them and encodes their rows; the writer thread writes them. While
batch N is written, the worker processes batch N+1. Every plugin hook runs on
the worker alone, batches are written one at a time in order, and the sinks
of a batch run after it was stored.

Nothing is lost silently:

* a full queue drops its oldest item, counted exactly and logged (at most
  once every ``LOG_EVERY_S``);
* a batch the store rejects is split until the rows it rejects are found; the
  rest is stored, the rejected rows go to the dead-letter file;
* while the store is unreachable or misconfigured, batches go to the spill
  file (said once, in one line) and are replayed in order once it answers;
* ``flush()`` returns False when anything recorded before it was not stored;
* at exit everything is bounded by one deadline (see :meth:`Pipeline.stop`).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from chainsight.framework.dispatch import GuardedDispatcher
from chainsight.framework.model import (
    Alert,
    PipelineStats,
    Sample,
    Score,
    Span,
    withhold_content,
    withhold_score,
)
from chainsight.framework.spill import Damaged, RecordFile, SpillFile
from chainsight.framework.store_api import (
    Rows,
    Store,
    StoreMisconfigured,
    StoreUnavailable,
    WriteBatch,
)

log = logging.getLogger("chainsight.pipeline")

LOG_EVERY_S: Final = 10.0
MISCONFIGURED_RETRY_S: Final = 30.0
STUCK_S: Final = 0.5  # a plugin call or a write this long at exit counts as hung


class Throttle:
    """At most one message every ``every_s`` seconds; counts what it held back."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._last = -every_s
        self.held = 0

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self.held += 1
            return False
        self._last = now
        return True

    def since(self) -> str:
        """" (and N more like it)" for the messages held back since the last one."""
        held, self.held = self.held, 0
        return f" (and {held} more like it)" if held else ""


class _Batch:
    """One drained batch on its way from the worker to the store and sinks."""

    __slots__ = ("alerts", "done", "error", "feedback", "items", "rejected", "rows", "samples", "spans")

    def __init__(self, items: int, spans: list[Span], samples: list[Sample], alerts: list[Alert],
                 feedback: list[Score]) -> None:
        self.items = items
        self.spans = spans
        self.samples = samples
        self.alerts = alerts
        self.feedback = feedback
        self.rows: Rows | None = None
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.rejected: Sequence[Any] = ()


@dataclass(frozen=True)
class _Refused:
    table: str
    row: Any
    error: str


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
class PipelineParts:
    """What the worker needs, built by the observer's start-up."""

    store: Store
    dispatcher: GuardedDispatcher
    options: PipelineOptions
    spill_path: Path
    # Why every span's content must be withheld (redaction could not be
    # loaded), or None.
    withhold_all: str | None = None


STATS_SAMPLES = (
    ("spans_queued_total", "queued"),
    ("spans_dropped_total", "dropped"),
    ("spans_written_total", "written"),
    ("spans_failed_total", "failed"),
    ("spans_spilled_total", "spilled"),
    ("spans_dead_lettered_total", "dead_lettered"),
    ("queue_depth", "queue_depth"),
    ("plugin_errors_total", "plugin_errors"),
)

def dead_letter_path(spill_path: Path) -> Path:
    """The dead-letter file lives beside the spill file."""
    return spill_path.with_name(spill_path.name.replace("spill", "deadletter", 1)
                                if "spill" in spill_path.name else spill_path.name + ".deadletter")


class Pipeline:
    def __init__(
        self,
        options: PipelineOptions,
        setup: Callable[[], PipelineParts],
        parts: PipelineParts | None = None,
    ) -> None:
        self.options = options
        self._setup = setup
        self.parts = parts
        self._closed = False
        self._init_runtime()

    def start(self) -> None:
        """Start the worker and the writer (once whoever owns the pipeline
        holds it: the worker's start-up may call back into the owner)."""
        self._writer_thread.start()
        self._thread.start()

    def _init_runtime(self) -> None:
        """Fresh runtime state and threads, not started (at construction and in a forked child)."""
        self._queue: deque[Any] = deque()
        self._ready = threading.Event()
        self._opened = threading.Event()  # start-up and the first open of the store are over
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Held while items move out of the queue (the worker taking a batch, a
        # caller evicting the oldest), so taken + queued + dropped is exact.
        self._take_lock = threading.RLock()  # re-entrant: a SIGTERM handler may stop() mid-put()
        self._progress = threading.Condition()
        self._traces: dict[str, tuple[float, list[Span]]] = {}
        self._last_evict = time.monotonic()
        self._store_down_since: float | None = None
        self._store_problem: str | None = None
        self._misconfigured = False
        self._spill: SpillFile | None = None
        self._dead_letters: RecordFile | None = None
        self._last_retry = 0.0
        self._health_version = 0
        self._last_stats = 0.0
        self._stats_labels = {"process": f"{socket.gethostname()}:{os.getpid()}"}
        self._last_overflow_log = 0.0
        self._overflow_logged = 0
        self._loss_seen = 0
        self._stop_target: int | None = None
        self._fast_after: float | None = None  # at exit: skip checks after this time
        self._rescued = False
        self._rescued_count = 0
        self._stage, self._stage_since = "starting", time.monotonic()
        self._write_started: float | None = None
        self._spill_log, self._replay_log = Throttle(), Throttle()
        self._loss_lock = threading.Lock()
        self._current: list[Span] | None = None  # the batch the worker holds, once redacted
        self._holding: list[Span] = []  # the spans of the batch the worker holds
        self._late = 0  # spans recorded after shutdown began
        self._next: _Batch | None = None  # processed, waiting for the previous write
        self._replay_soon = False  # a flush() waits for the spill file
        # Counters. ``dropped`` changes under _take_lock; the rest on the worker.
        self.dropped = 0
        self.taken = 0
        self.processed = 0
        self.written = 0
        self.failed = 0
        self.spilled = 0
        self.replayed = 0
        self.dead_lettered = 0
        self.lost = 0
        self.skipped_checks = 0
        self.damaged = 0  # spill records that could not be read back
        self.withheld_at_exit = 0  # spans kept at exit without content (redaction hung)
        self._writing: _Batch | None = None  # handed to the writer, not yet completed
        self._writes: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._writer_thread = threading.Thread(target=self._write_loop, name="chainsight-writer", daemon=True)
        self._thread = threading.Thread(target=self._run, name="chainsight-pipeline", daemon=True)

    def after_fork_in_child(self) -> None:
        """The parent's threads do not exist in a forked child: start over with
        an empty queue (the parent stores what it had queued)."""
        if self._closed:
            return
        if self.parts is not None:
            self.parts.store.after_fork()
            self.spill.after_fork()
            self.dead_letters.after_fork()
        self._init_runtime()
        self.start()

    # ---- parts, available once start-up finished ---------------------------
    def wait_ready(self, timeout: float | None = None) -> PipelineParts:
        """The pipeline's parts, waiting for start-up if it is still running."""
        if not self._ready.wait(timeout):
            raise TimeoutError("Chainsight is still starting up")
        assert self.parts is not None
        return self.parts

    def wait_startup(self, timeout: float) -> bool:
        """Wait until start-up is over (done or failed); False on timeout."""
        return self._ready.wait(timeout)

    def wait_started(self, timeout: float) -> bool:
        """Wait until start-up, and the first attempt to open the store, are
        over (or failed); False on timeout."""
        return self._opened.wait(timeout)

    @property
    def store(self) -> Store:
        return self.wait_ready().store

    @property
    def dispatcher(self) -> GuardedDispatcher:
        return self.wait_ready().dispatcher

    # ---- caller side (any thread): O(1), never raises, never blocks -------
    def put(self, item: Any) -> None:
        if self._closed:
            with self._take_lock:
                self.lost += 1  # recorded after shutdown: said by stop()'s line
                self._late += 1
            return
        items = self._queue
        items.append(item)
        if len(items) > self.options.queue_size:
            self._overflow()
        if len(items) >= self.options.batch_size and not self._wake.is_set():
            self._wake.set()

    def _overflow(self) -> None:
        """Drop the oldest queued item, counted; said at most every LOG_EVERY_S."""
        with self._take_lock:
            if len(self._queue) <= self.options.queue_size:
                return
            self._queue.popleft()
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_overflow_log < LOG_EVERY_S:
                return
            self._last_overflow_log = now
            new, self._overflow_logged = self.dropped - self._overflow_logged, self.dropped
        log.warning(
            "chainsight: the span queue is full (%d items); dropped %d of the oldest so far "
            "(%d in all). Storage or plugins are slower than the spans arrive: raise "
            "[pipeline] queue_size or look at `chainsight plugins` for a slow plugin.",
            self.options.queue_size, new, self.dropped,
        )

    def stats(self) -> PipelineStats:
        depth = len(self._queue)
        parts = self.parts
        return PipelineStats(
            queued=self.taken + depth + self.dropped,
            dropped=self.dropped,
            written=self.written,
            failed=self.failed,
            spilled=self.spilled,
            replayed=self.replayed,
            queue_depth=depth,
            plugin_errors=parts.dispatcher.errors_total if parts is not None else 0,
            dead_lettered=self.dead_lettered,
            lost=self.lost,
            skipped_checks=self.skipped_checks,
        )

    def _reached(self, target: int) -> bool:
        return self.processed + self.dropped >= target

    def _wait_for(self, target: int, timeout: float) -> bool:
        if not self._thread.is_alive():
            return self._reached(target)
        self._wake.set()
        with self._progress:
            self._progress.wait_for(
                lambda: self._reached(target) or not self._thread.is_alive(), max(0.0, timeout))
        return self._reached(target)

    def _target(self) -> int:
        with self._take_lock:
            return self.taken + len(self._queue) + self.dropped

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued before this call is processed; True
        only if all of it is in the store: False on timeout, while anything
        waits in the spill file, and when a span was dropped, failed or
        dead-lettered since the previous flush. A flush never enqueues
        anything, so it cannot push a span out of a full queue."""
        deadline = time.monotonic() + max(0.0, timeout)
        reached = self._wait_for(self._target(), timeout)
        if reached and self._behind_spill and not self._misconfigured and self._thread.is_alive():
            # Spilled a moment ago (a locked file, a restarting server): try it now.
            self._replay_soon = True
            self._wake.set()
            with self._progress:
                self._progress.wait_for(lambda: not self._behind_spill or not self._thread.is_alive(),
                                        max(0.0, deadline - time.monotonic()))
        with self._loss_lock:  # each loss is reported by one flush
            loss = self.stats().not_stored
            new_loss, self._loss_seen = loss > self._loss_seen, loss
        return reached and not new_loss and not self._behind_spill

    def stop(self, timeout: float) -> bool:
        """Store what was recorded before this call, stop the threads and call
        the shutdown hooks, all within ``timeout`` seconds.

        The last part of the deadline is kept in reserve: if the worker is
        still inside a plugin call then (a hung check or exporter) or the
        writer inside a write (a store that does not answer), this thread
        takes what is left, redacts it and puts it in the spill file, to be
        stored at the next start. Checks are skipped for spans still waiting
        past half the deadline. What was not stored is said in one line.
        """
        start = time.monotonic()
        deadline = start + max(0.0, timeout)
        reserve = min(1.0, 0.25 * timeout)
        target = self._target()
        self._stop_target = target
        self._fast_after = start + timeout / 2
        self._wait_for(target, deadline - reserve - time.monotonic())
        self._stop.set()
        self._wake.set()
        self._thread.join(max(0.0, deadline - reserve - time.monotonic()))
        if not self._thread.is_alive():
            self._writes.put(None)
            self._writer_thread.join(max(0.0, deadline - reserve - time.monotonic()))
        cause = None
        if self._thread.is_alive() or self._writer_thread.is_alive():
            cause = self._busy_with()
            self._rescue(deadline)
        with self._take_lock:
            self._closed = True
            late = len(self._queue)  # recorded after shutdown began
            self.lost += late
            self._late += late
            self._queue.clear()
        self._shutdown_plugins(deadline)
        self._say_unstored(timeout, cause)
        return self._reached(target) and not self._rescued and self.lost == 0

    def _set_stage(self, stage: str) -> None:
        self._stage, self._stage_since = stage, time.monotonic()

    def _stuck_in(self, stage: str) -> bool:
        """The worker has been in ``stage`` for longer than a call should take."""
        return self._stage == stage and time.monotonic() - self._stage_since > STUCK_S

    def _busy_with(self) -> str:
        started = self._write_started
        if started is not None and time.monotonic() - started > STUCK_S:
            return f"the store had not answered a write for {time.monotonic() - started:.1f} s"
        return (f"the pipeline was still busy in {self._stage} "
                f"(for {time.monotonic() - self._stage_since:.1f} s)")

    def _shutdown_plugins(self, deadline: float) -> None:
        """The ``shutdown`` hooks, within the deadline."""
        from chainsight.framework.deadline import run_within

        parts = self.parts
        if parts is None:
            return
        current = ["the plugins' shutdown hooks"]

        def shut() -> None:
            for name, function, argnames in parts.dispatcher.implementations_with_args("shutdown"):
                current[0] = f"the shutdown hook of plugin {name!r}"
                args = {"timeout": max(0.0, deadline - time.monotonic())}
                parts.dispatcher.guard(name, function, *[args[a] for a in argnames], what="shutdown")

        if not run_within(shut, deadline - time.monotonic(), "chainsight-shutdown"):
            log.warning("chainsight: %s did not finish by the exit deadline; not waiting for it",
                        current[0])

    def _say_unstored(self, timeout: float, cause: str | None) -> None:
        stats = self.stats()
        late = self._late
        if not (cause or stats.not_stored or late or self.skipped_checks):
            return
        parts = [f"{stats.written} spans stored"]
        if self._rescued:
            parts.append(f"{self._rescued_count} put in {self.spill.path} at exit "
                         "(stored at the next start, or by `chainsight db replay`)")
        if self.withheld_at_exit:
            parts.append(f"{self.withheld_at_exit} of them without content (redaction did not return)")
        if self.skipped_checks:
            parts.append(f"{self.skipped_checks} stored without quality checks (exit was near)")
        if stats.dropped:
            parts.append(f"{stats.dropped} dropped when the queue was full")
        if stats.dead_lettered:
            parts.append(f"{stats.dead_lettered} rejected by the store (kept in {self.dead_letters.path})")
        if stats.failed:
            parts.append(f"{stats.failed} failed")
        if stats.lost:
            parts.append(f"{stats.lost} not stored" + (f" ({late} recorded after shutdown began)" if late else ""))
        why = f"; the exit deadline ({timeout:.1f} s) came while {cause}" if cause else ""
        log.warning("chainsight: %s%s", ", ".join(parts), why)

    @property
    def alive(self) -> bool:
        """Either thread still runs (a worker stuck in a plugin, a writer in a write)."""
        return self._thread.is_alive() or self._writer_thread.is_alive()

    # ---- parts used by the worker ---------------------------------------------
    @property
    def spill(self) -> SpillFile:
        if self._spill is None:
            self._spill = SpillFile(self.wait_ready().spill_path)
        return self._spill

    @property
    def dead_letters(self) -> RecordFile:
        if self._dead_letters is None:
            self._dead_letters = RecordFile(dead_letter_path(self.wait_ready().spill_path))
        return self._dead_letters

    def _start(self) -> None:
        if self.parts is None:
            try:
                self.parts = self._setup()
            except Exception:  # a bug in start-up: record nothing rather than leak
                log.exception("chainsight could not start; spans will not be stored")
                raise
        parts = self.parts
        self.options = parts.options
        self._spill = SpillFile(parts.spill_path)
        self._dead_letters = RecordFile(dead_letter_path(parts.spill_path))

    def _open_at_start(self) -> None:
        """After start-up is announced: a store that does not answer must
        not keep the parts from readers (or from the exit rescue)."""
        self._set_stage("opening the store")
        try:
            self._open_store()
        except StoreUnavailable as exc:
            self._store_is_down(exc)

    def _open_store(self) -> None:
        """Open the store; anything but "unavailable" means it is misconfigured."""
        assert self.parts is not None
        try:
            self.parts.store.open()  # not self.store: start-up is not over yet
        except StoreUnavailable:
            raise
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            raise StoreMisconfigured(f"{type(exc).__name__}: {lines[0] if lines else ''}") from exc

    # ---- worker ----------------------------------------------------------
    def _run(self) -> None:
        try:
            self._start()
        except Exception:
            self._closed = True
            self._opened.set()
            with self._take_lock:
                self.failed += len(self._queue)
                self._queue.clear()
            return
        finally:
            self._ready.set()
        try:
            self._open_at_start()
        finally:
            self._opened.set()
        if self.spill.exists() and self._store_down_since is None:
            self._try_replay(force=True)
        while True:
            self._wake.wait(self.options.flush_interval_s)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # a bug here must not kill the worker
                log.exception("pipeline worker error")
            if self._rescued:
                return
            if self._stop.is_set() and (not self._queue or self._past_stop_target):
                self._store_stats()
                with self._progress:
                    self._progress.notify_all()
                return

    @property
    def _past_stop_target(self) -> bool:
        return self._stop_target is not None and self.taken + self.dropped >= self._stop_target

    def _drain(self) -> None:
        items_queue = self._queue
        size = self.options.batch_size
        try:
            while items_queue and not self._rescued:
                if self._stop.is_set() and self._past_stop_target:
                    break
                with self._take_lock:
                    items = [items_queue.popleft() for _ in range(min(size, len(items_queue)))]
                    self.taken += len(items)
                batch = self._process(items)
                if self._rescued:
                    return
                self._next = batch  # processed, not yet written: the exit rescue may store it
                try:
                    # Only now wait for the previous batch: its rows were
                    # being written while this one was processed.
                    self._complete_write()
                finally:
                    self._next = None
                    if not self._rescued:
                        self._start_write(batch)
        finally:
            self._complete_write()
        if self._rescued:
            return  # the exit rescue owns what is left (and the spill file)
        if self._behind_spill:
            self._try_replay(force=self._replay_soon)
            self._replay_soon = False
        if time.monotonic() - self._last_stats >= self.options.stats_interval_s and self.taken:
            self._store_stats()

    @property
    def _behind_spill(self) -> bool:
        """The store is down, or spilled batches wait: new ones queue behind them."""
        return self._store_down_since is not None or (self._spill is not None and self._spill.exists())

    def _store_stats(self) -> None:
        """The pipeline's own counters, stored as samples so every reader (TUI,
        CLI, exporters) sees dropped/failed/spilled spans without this process."""
        self._last_stats = time.monotonic()
        self._set_stage("storing the pipeline's counters")
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
        self._holding = spans
        try:
            if spans:
                scores.extend(self._process_spans(spans))
            scores = self._process_scores(scores)
            feedback = batch.feedback = self._process_scores(feedback)
            if self.options.metrics_only and scores:
                scores = [strip_comment(score) for score in scores]
            self._set_stage("encoding")
            batch.rows = self._prepare(spans, scores + feedback, samples, alerts)
        except Exception:  # a bug here must not lose the batch's accounting
            log.exception("pipeline worker error on a batch of %d items", len(items))
            self.failed += len(spans)
        finally:
            self._current = None
            self._holding = []
        return batch

    def _start_write(self, batch: _Batch) -> None:
        """Hand a processed batch to the writer, or spill it while the store is
        down (worker; the previous batch is complete, so order is kept)."""
        rows = batch.rows
        if rows and self._behind_spill:
            # Keep order: while anything is spilled, new batches queue behind it.
            self._spill_rows(rows, len(batch.spans))
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
            self._write_started = time.monotonic()
            try:
                if batch.rows:
                    batch.rejected = self.store.write_isolating(batch.rows)
            except BaseException as exc:  # reported by the worker
                batch.error = exc
            finally:
                self._write_started = None
                batch.done.set()

    def _complete_write(self) -> None:
        """Wait for the batch being written, count it, spill it if the store
        was unreachable, and run its sinks (worker)."""
        batch = self._writing
        if batch is None:
            return
        self._set_stage("waiting for the store")
        while not batch.done.wait(1.0):
            if self._rescued:
                return
            if not self._writer_thread.is_alive():  # pragma: no cover - the loop never raises
                batch.error = RuntimeError("the writer thread died")
                break
        if self._rescued:
            return  # the exit rescue counted (and spilled) it
        self._writing = None
        try:
            if batch.rows is not None:
                self._account(batch.rows, len(batch.spans), batch.error, batch.rejected)
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
        self._set_stage("sinks")
        if batch.spans:
            self._call_each("spans_finished", spans=tuple(batch.spans))
        if batch.samples:
            self._call_each("samples_collected", samples=tuple(batch.samples))
        for alert in batch.alerts:
            self._call_each("alert_changed", alert=alert)
        for score in batch.feedback:
            self._call_each("feedback_recorded", score=score)
        if dispatcher.version != self._health_version:
            self._store_health()
        self._set_stage("idle")

    def _store_health(self) -> None:
        """Persist plugin health so ``chainsight plugins`` in another process sees it."""
        version = self.dispatcher.version
        if self._store_down_since is not None:
            return  # retried after the next batch
        try:
            self.store.write_plugin_health(self.dispatcher.snapshot())
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
        parts = self.parts
        assert parts is not None
        dispatcher = parts.dispatcher
        budget = self.options.check_budget_s
        scores: list[Score] = []
        if parts.withhold_all is not None:
            for span in spans:
                withhold_content(span)
        # Enrichment first: a token estimate made here is what gets priced.
        for name, function in dispatcher.implementations("process_span"):
            self._set_stage(f"process_span of plugin {name!r}")
            if self._fail_closed(name):
                for span, ok, _ in dispatcher.map(name, function, spans, what="process_span"):
                    if not ok:
                        withhold_content(span)
            else:
                for _ in dispatcher.map(name, function, spans, what="process_span"):
                    pass
        self._current = spans  # redacted from here on: the exit rescue may store them
        unpriced = [s for s in spans
                    if s.cost_usd is None and s.model and (s.input_tokens or s.output_tokens)]
        for name, function in dispatcher.implementations("price_span"):  # first answer wins
            if not unpriced:
                break
            self._set_stage(f"price_span of plugin {name!r}")
            left: list[Span] = []
            for span, ok, cost in dispatcher.map(name, function, unpriced, what="price_span"):
                if ok and cost is not None:
                    span.cost_usd = cost
                else:
                    left.append(span)
            unpriced = left
        if self._fast_after is not None and time.monotonic() > self._fast_after:
            self.skipped_checks += len(spans)  # exit is near: store, don't check
        else:
            scores.extend(self._check_spans(spans, budget))
        if self.options.metrics_only:
            for span in spans:
                strip_content(span)
        return scores

    def _fail_closed(self, name: str) -> bool:
        assert self.parts is not None
        return self.parts.dispatcher.fail_closed(name)

    def _process_scores(self, scores: list[Score], *, only_fail_closed: bool = False) -> list[Score]:
        """``process_score`` over a batch's scores, each implementation given
        what the previous one returned; a fail-closed one that raises leaves
        the score without its free text."""
        parts = self.parts
        assert parts is not None
        if not scores:
            return scores
        if parts.withhold_all is not None:
            return [withhold_score(score) for score in scores]
        dispatcher = parts.dispatcher
        out = list(scores)
        for name, function in dispatcher.implementations("process_score"):
            closed = self._fail_closed(name)
            if only_fail_closed and not closed:
                continue
            self._set_stage(f"process_score of plugin {name!r}")
            for i, (score, ok, result) in enumerate(dispatcher.map(name, function, out, what="process_score")):
                if ok:
                    if isinstance(result, Score):
                        out[i] = result
                elif closed:
                    out[i] = withhold_score(score)
        return out

    def _check_spans(self, spans: list[Span], budget: float) -> list[Score]:
        dispatcher = self.dispatcher
        scores: list[Score] = []
        for name, function in dispatcher.implementations("check_span"):
            self._set_stage(f"check_span of plugin {name!r}")
            for _, ok, result in dispatcher.map(name, function, spans, what="check_span", budget_s=budget):
                if ok and result:
                    scores.extend(result)
        if dispatcher.has_impls("trace_finished"):
            now = time.monotonic()
            for span in spans:
                entry = self._traces.get(span.trace_id)
                if entry is None:
                    entry = self._traces[span.trace_id] = (now, [])
                entry[1].append(span)
                if span.parent_id is None:
                    del self._traces[span.trace_id]
                    scores.extend(self._finish_trace(span, entry[1], budget))
            if now - self._last_evict > 1.0:
                self._evict(now)
        return scores

    def _finish_trace(self, root: Span, spans: Sequence[Span], budget: float) -> list[Score]:
        scores: list[Score] = []
        for result in self._call_each("trace_finished", budget_s=budget, root=root, spans=tuple(spans)):
            scores.extend(result)
        return scores

    def _call_each(self, hook: str, *, budget_s: float | None = None, **kwargs: Any) -> list[Any]:
        """Every implementation of ``hook`` under the guard, the stage naming
        the plugin that runs (for the exit message); the non-None results."""
        def announce(name: str) -> None:
            self._set_stage(f"{hook} of plugin {name!r}")

        return self.dispatcher.call(hook, budget_s=budget_s, announce=announce, **kwargs)

    def _evict(self, now: float) -> None:
        self._last_evict = now
        horizon = now - self.options.trace_buffer_s
        for trace_id in [t for t, (seen, _) in self._traces.items() if seen < horizon]:
            del self._traces[trace_id]

    # ---- storage, spill, dead letters and replay ---------------------------
    def _prepare(
        self, spans: list[Span], scores: list[Score], samples: list[Sample], alerts: list[Alert]
    ) -> Rows | None:
        if not (spans or scores or samples or alerts):
            return None
        try:
            return self.store.prepare(WriteBatch(spans=spans, scores=scores, samples=samples, alerts=alerts))
        except Exception:
            log.exception("could not serialise a batch of %d spans; dropped", len(spans))
            self.failed += len(spans)
            return None

    def _store_is_down(self, exc: StoreUnavailable) -> None:
        """Remember the store is down and say so, once per outage (worker)."""
        first = self._store_down_since is None
        self._store_down_since = time.monotonic()
        self._last_retry = self._store_down_since
        problem = str(exc)
        self._misconfigured = isinstance(exc, StoreMisconfigured)
        if not first and problem == self._store_problem:
            return
        self._store_problem = problem
        if isinstance(exc, StoreMisconfigured):
            log.error("chainsight: cannot store spans: %s. Spans are kept in %s; fix the store "
                      "and start again (or run `chainsight db replay`) to store them.",
                      problem, self.spill.path)
        else:
            log.warning("chainsight: store unavailable (%s); keeping spans in %s until it answers",
                        problem, self.spill.path)

    def _account(self, rows: Rows, count: int, exc: BaseException | None, rejected: Sequence[Any]) -> None:
        """Count a write of ``count`` spans; spill its rows if the store was
        unreachable; dead-letter the rows it rejected."""
        if exc is None:
            dead = self._dead_letter(rejected)
            self.written += count - dead
        elif isinstance(exc, StoreUnavailable):
            self._store_is_down(exc)
            self._spill_rows(rows, count)
        else:
            log.error("chainsight: could not write a batch of %d spans: %s: %s",
                      count, type(exc).__name__, exc)
            self.failed += count

    def _dead_letter(self, rejected: Sequence[Any]) -> int:
        """Keep rows the store refused in the dead-letter file; the number of spans among them."""
        if not rejected:
            return 0
        spans = sum(1 for r in rejected if r.table == "spans")
        records = [{"time_ns": time.time_ns(), "table": r.table, "error": r.error, "row": r.row}
                   for r in rejected]
        try:
            self.dead_letters.append(records)
            self.dead_lettered += spans
            where = f"kept in {self.dead_letters.path} (`chainsight deadletter list`)"
        except OSError as exc:
            self.failed += spans
            where = f"and could not be kept either ({exc})"
        log.error("chainsight: the store rejected %d rows (%d spans), %s; the rest of their batch "
                  "was stored. First reason: %s", len(rejected), spans, where, rejected[0].error)
        return spans

    def _store(self, samples: list[Sample]) -> None:
        """Write records outside the batch flow (the pipeline's own stats), on
        the worker, when no batch is being written; no sinks run for them."""
        rows = self._prepare([], [], samples, [])
        if not rows:
            return
        if self._behind_spill:
            self._spill_rows(rows, 0)
            return
        error: Exception | None = None
        rejected: Sequence[Any] = ()
        try:
            rejected = self.store.write_isolating(rows)
        except Exception as exc:
            error = exc
        self._account(rows, 0, error, rejected)

    def _spill_rows(self, rows: Rows, count: int) -> bool:
        try:
            self.spill.append([rows])
        except OSError as exc:
            self.failed += count
            if self._spill_log.ready():
                log.error("chainsight: cannot write the spill file %s (%s); %d spans lost%s. "
                          "Spilling resumes once it can be written.", self.spill.path,
                          exc.strerror or exc, count, self._spill_log.since())
            return False
        self.spilled += count
        return True

    def _try_replay(self, force: bool = False) -> None:
        if self._rescued:
            return
        now = time.monotonic()
        interval = MISCONFIGURED_RETRY_S if self._misconfigured else self.options.retry_interval_s
        if not force and now - self._last_retry < interval and not self._stop.is_set():
            return
        self._last_retry = now
        store = self.store
        written = 0

        def write(rows: Rows) -> None:
            nonlocal written
            count = len(rows.get("spans") or ())
            try:
                rejected: Sequence[Any] = store.write_isolating(rows)
            except StoreUnavailable:
                raise
            except Exception as exc:  # never retried forever: it would block every record after it
                reason = f"{type(exc).__name__}: {exc}"
                rejected = [_Refused(table, row, reason) for table, table_rows in rows.items()
                            if isinstance(table_rows, list) for row in table_rows]
            dead = self._dead_letter(rejected)
            written += count - dead

        def damaged(record: Damaged) -> None:
            self.damaged += 1
            try:
                self.dead_letters.append([{"time_ns": time.time_ns(), "table": None,
                                           "error": f"spill record: {record.reason}", "raw": record.text}])
                kept = f"kept in {self.dead_letters.path}"
            except OSError as exc:
                kept = f"and could not be kept ({exc})"
            log.error("chainsight: skipped a damaged record in %s (line %d: %s), %s",
                      self.spill.path, record.line_number, record.reason, kept)

        try:
            if self._store_down_since is not None:
                self._open_store()
            self.spill.replay(write, damaged)
        except StoreUnavailable as exc:
            self._store_is_down(exc)
            return
        except Exception as exc:
            if self._replay_log.ready():
                log.error("chainsight: replaying %s failed (%s: %s); will retry%s", self.spill.path,
                          type(exc).__name__, exc, self._replay_log.since())
            return
        finally:
            self.replayed += written
            self.written += written
        if self._store_down_since is not None:
            log.warning("chainsight: the store answers again after %.1f s; spilled spans stored",
                        now - self._store_down_since)
        self._store_down_since = None
        self._store_problem = None
        self._misconfigured = False
        with self._progress:
            self._progress.notify_all()

    # ---- exit rescue (the thread calling stop) ------------------------------
    def _rescue(self, deadline: float) -> None:
        """The worker or the writer is stuck in a call that does not return:
        put what they hold and what is still queued in the spill file,
        redacted, chunk by chunk, as far as the deadline allows."""
        self._rescued = True
        self._ready.wait(max(0.0, deadline - time.monotonic() - 0.25))  # still starting up?
        parts = self.parts
        with self._take_lock:
            items = list(self._queue)
            self._queue.clear()
            self.taken += len(items)
        spans = [i for i in items if isinstance(i, Span)]
        if parts is None:
            self.lost += len(spans)
            return
        scores = [i.score if isinstance(i, Feedback) else i for i in items if isinstance(i, Score | Feedback)]
        held = self._held_spans(deadline)
        saved = 0

        def keep(rows: Rows | None, count: int) -> None:
            nonlocal saved
            if rows is not None and time.monotonic() < deadline:
                try:
                    self.spill.append([rows], deadline=deadline)
                    saved += count
                    return
                except OSError as exc:
                    log.error("chainsight: cannot write the spill file %s at exit: %s", self.spill.path, exc)
            self.lost += count

        for batch in (self._writing, self._next):  # prepared: idempotent if it lands after all
            if batch is not None and batch.rows and not batch.done.is_set():
                keep(batch.rows, len(batch.spans))
        if held:
            keep(self._prepare_here(held, scores, parts), len(held))
            scores = []
        step = max(1, self.options.batch_size)
        for i in range(0, len(spans), step):
            chunk = spans[i:i + step]
            if time.monotonic() >= deadline:
                self.lost += len(spans) - i
                break
            self._redact_here(chunk, parts)
            keep(self._prepare_here(chunk, scores, parts), len(chunk))
            scores = []
        self._rescued_count = saved
        self.spilled += saved

    def _held_spans(self, deadline: float) -> list[Span]:
        """The spans of the batch the worker holds, redacted. A worker that
        is only busy redacting them is given a moment (it is not hung); if it
        stays inside redaction, their content is withheld."""
        give_up = min(deadline - 0.1, time.monotonic() + STUCK_S)
        while self._holding and self._current is None and time.monotonic() < give_up:
            time.sleep(0.005)
        if self._current is not None:
            return self._current
        spans = self._holding
        for span in spans:
            withhold_content(span)
        self.withheld_at_exit += len(spans)
        return spans

    def _prepare_here(self, spans: list[Span], scores: list[Score], parts: PipelineParts) -> Rows | None:
        if self.options.metrics_only:
            for span in spans:
                strip_content(span)
            scores = [strip_comment(score) for score in scores]
        try:
            return parts.store.prepare(WriteBatch(spans=spans, scores=scores))
        except Exception:
            log.exception("could not encode spans at exit")
            return None

    def _redact_here(self, spans: list[Span], parts: PipelineParts) -> None:
        """Only the fail-closed hooks (redaction), for spans the worker never
        took. If the worker is stuck inside one of them, they are not called
        again: those spans' content is withheld, and said."""
        dispatcher = parts.dispatcher
        withheld = parts.withhold_all is not None
        for name, function in dispatcher.implementations("process_span"):
            if not self._fail_closed(name):
                continue
            if withheld or self._stuck_in(f"process_span of plugin {name!r}"):
                withheld = True
                continue
            for span, ok, _ in dispatcher.map(name, function, spans, what="process_span"):
                if not ok:
                    withhold_content(span)
        if withheld:
            for span in spans:
                withhold_content(span)
            self.withheld_at_exit += len(spans)


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
