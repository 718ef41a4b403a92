"""Built-in plugin ``retention``: prune the store on a schedule.

With ``[storage] retention = "30d"``, an observer deletes, every
``[storage] prune_interval_s`` (an hour unless set; the first time after a
minute at most), the traces that started longer ago than that with their
spans and scores, and older samples: ``chainsight db prune --older-than 30d``
run by a thread of its own (``chainsight-retention``), in small batches
with a pause between them, never on the pipeline's threads. Several
processes pruning one store do no harm (each batch deletes what is still
there). A failure is logged once, and again only after a prune succeeded.
``chainsight serve`` runs the same prune as one of its tasks ("prune
store"), and its OTLP-in observer leaves this plugin out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chainsight.framework import hookimpl
from chainsight.framework.units import parse_duration

if TYPE_CHECKING:
    from chainsight.framework.observer import Observer
    from chainsight.storage.retention import PruneResult

log = logging.getLogger("chainsight.retention")

FIRST_DELAY_S = 60.0
BATCH_PAUSE_S = 0.01  # between delete batches: writers get the lock in between


def prune_older_than(url: str, age_s: float) -> PruneResult:
    """One scheduled prune of ``url`` (the observer's thread and ``chainsight
    serve``'s task both run this); logs what it deleted."""
    from chainsight.storage.retention import prune

    result = prune(url, time.time_ns() - int(age_s * 1e9), pause_s=BATCH_PAUSE_S)
    if result.traces or result.samples:
        log.info("retention: deleted %d traces (%d spans, %d scores) and %d samples",
                 result.traces, result.spans, result.scores, result.samples)
    return result


def schedule(storage: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(age_s, interval_s)`` from the ``[storage]`` table; None without retention."""
    retention = storage.get("retention")
    if not retention:
        return None
    return parse_duration(str(retention)), float(storage.get("prune_interval_s", 3600))


class RetentionThread(threading.Thread):
    """Prunes ``url`` of what is older than ``age_s`` every ``interval_s``."""

    def __init__(self, url: str, age_s: float, interval_s: float) -> None:
        super().__init__(name="chainsight-retention", daemon=True)
        self.url, self.age_s, self.interval_s = url, age_s, interval_s
        self._stop_event = threading.Event()
        self._said: set[str] = set()
        self.rounds = 0
        self.deleted = 0  # traces, in all

    def run(self) -> None:
        delay = min(FIRST_DELAY_S, self.interval_s)
        while not self._stop_event.wait(delay):
            self.run_once()
            delay = self.interval_s

    def run_once(self) -> None:
        from chainsight.storage.engine import StoreNotFound

        try:
            result = prune_older_than(self.url, self.age_s)
        except StoreNotFound:
            return  # nothing recorded yet
        except Exception as exc:
            text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if text not in self._said:
                self._said.add(text)
                log.error("pruning the store failed (retried every %gs): %s", self.interval_s, text)
            return
        self._said.clear()
        self.rounds += 1
        self.deleted += result.traces

    def stop(self, timeout: float) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


class RetentionPlugin:
    name = "retention"

    def __init__(self) -> None:
        self.thread: RetentionThread | None = None

    @hookimpl
    def configure(self, observer: Observer, config: Mapping[str, Any]) -> None:
        when = schedule(observer.settings.storage)
        if when is None:
            return
        url = observer.storage_url
        if url.startswith("sqlite") and (":memory:" in url or "mode=memory" in url
                                         or url.rstrip("/") == "sqlite:"):
            log.info("retention is not applied to an in-memory store")
            return
        self.thread = RetentionThread(url, *when)
        self.thread.start()

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.stop(timeout / 2)


def create_plugin() -> RetentionPlugin:
    return RetentionPlugin()
