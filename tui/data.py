"""Worker-side data access: the TUI's only door to the store.

Every method here blocks (it runs SQL through :class:`chainsight.storage.query.Store`), so
it is only ever called from a thread worker. A lost connection (the file is
locked or gone, Postgres restarted) closes the store, reconnects once, and if
that fails too raises :class:`StoreDown`; the screens show the message and try
again on a timer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chainsight.framework.model import Alert, Sample, Score

T = TypeVar("T")


class StoreDown(Exception):
    """The store cannot be read right now; the message is safe to show."""


def _is_connection_error(error: BaseException) -> bool:
    from sqlalchemy import exc

    from chainsight.storage.engine import StoreUnavailable, is_unavailable

    if isinstance(error, StoreUnavailable):
        return True
    if isinstance(error, exc.SQLAlchemyError):
        return is_unavailable(error)
    return isinstance(error, ConnectionError | TimeoutError)


class DataSource:
    """Thread-safe, lazily connected wrapper around one :class:`Store`."""

    def __init__(self, url: str, *, store_factory: Callable[[str], Any] | None = None) -> None:
        self.url = url
        self._factory = store_factory
        self._store: Any = None
        self._lock = threading.RLock()

    # ---- connection ------------------------------------------------------
    def _open(self) -> Any:
        if self._store is None:
            if self._factory is not None:
                self._store = self._factory(self.url)
            else:
                from chainsight.storage.query import Store

                self._store = Store(self.url)
        return self._store

    def _drop(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                pass

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(store)``; reconnect once on a lost connection, else raise StoreDown."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return fn(self._open())
                except Exception as error:
                    if not _is_connection_error(error):
                        raise
                    self._drop()
                    if attempt == 2:
                        raise StoreDown(_describe(error)) from error
            raise AssertionError("unreachable")

    def warm_up(self) -> None:
        """Import the storage layer and connect on a thread, while the UI starts."""
        def run() -> None:
            try:
                self.call(lambda store: None)
            except Exception:
                pass  # the first real read reports it
        threading.Thread(target=run, name="chainsight-store-open", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            self._drop()

    # ---- reads -----------------------------------------------------------
    def list_traces(self, filter_text: str = "", *, limit: int = 50, cursor: str | None = None,
                    order: str = "start_ns", descending: bool = True,
                    now_ns: int | None = None) -> Any:
        filters = parse(filter_text, now_ns)
        return self.call(lambda s: s.list_traces(filters, limit=limit, cursor=cursor,
                                                 order=order, descending=descending))

    def count_traces(self, filter_text: str = "", now_ns: int | None = None) -> int:
        filters = parse(filter_text, now_ns)
        return int(self.call(lambda s: s.count_traces(filters)))

    def get_trace(self, trace_id: str) -> Any:
        return self.call(lambda s: s.get_trace(trace_id))

    def aggregates(self, since_ns: int | None, until_ns: int | None,
                   group_by: str | None = None) -> list[Any]:
        return list(self.call(lambda s: s.aggregates(since_ns, until_ns, group_by=group_by)))

    def series(self, metrics: Sequence[str], since_ns: int, until_ns: int, buckets: int,
               group_by: str | None = None) -> dict[str, Any]:
        return dict(self.call(lambda s: s.series(metrics, since_ns, until_ns, buckets,
                                                 group_by=group_by)))

    def list_alerts(self, state: str | None = None, limit: int = 100) -> list[Alert]:
        return list(self.call(lambda s: s.list_alerts(state=state, limit=limit)))

    def get_traces(self, trace_ids: list[str]) -> list[Any]:
        """The traces of ``trace_ids`` still in the store, in that order (an alert's)."""
        return list(self.call(lambda s: s.get_traces(trace_ids)))

    def list_scores(self, **kwargs: Any) -> list[Score]:
        return list(self.call(lambda s: s.list_scores(**kwargs)))

    def score_stats(self, since_ns: int | None, until_ns: int | None) -> list[Any]:
        return list(self.call(lambda s: s.score_stats(since_ns, until_ns)))

    def list_samples(self, name: str | None = None, since_ns: int | None = None,
                     until_ns: int | None = None, limit: int = 10_000) -> list[Sample]:
        return list(self.call(lambda s: s.list_samples(name=name, since_ns=since_ns,
                                                       until_ns=until_ns, limit=limit)))

    def list_sessions(self, limit: int = 500) -> list[Any]:
        """Sessions with their totals, most recently active first (``storage.sessions``)."""
        from chainsight.storage.sessions import list_sessions

        return list(self.call(lambda s: list_sessions(s, limit=limit)))

    def session_turns(self, session_id: str) -> list[Any]:
        """A session's turns, oldest first, with what each said (``storage.sessions``)."""
        from chainsight.storage.sessions import session_turns

        return list(self.call(lambda s: session_turns(s, session_id)))

    def list_experiments(self) -> list[Any]:
        """Experiments, newest first; [] until the query API has them."""
        def read(store: Any) -> list[Any]:
            method = getattr(store, "list_experiments", None)
            return [] if method is None else list(method())
        return self.call(read)

    def experiment_results(self, experiment_id: str) -> list[Any]:
        def read(store: Any) -> list[Any]:
            method = getattr(store, "list_experiment_results", None)
            return [] if method is None else list(method(experiment_id))
        return self.call(read)


def parse(filter_text: str, now_ns: int | None = None) -> Any:
    """The filter bar's text as a TraceFilter (None when empty); raises FilterError."""
    if not filter_text.strip():
        return None
    from chainsight.storage.filters import parse_filter

    return parse_filter(filter_text, now_ns=now_ns)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
