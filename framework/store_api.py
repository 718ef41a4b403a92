"""What the pipeline needs from a store, and how a store says it cannot write.

The core does not import ``storage``: the observer builds its store with a
:class:`StoreFactory`, by default the one named by
``chainsight.framework.defaults.DEFAULT_STORE_FACTORY`` (the storage package's
``StoreWriter``), loaded by name, and hands the pipeline an object with these
methods. Storage raises these exceptions, so the pipeline can tell "retry
later" from "the configuration is wrong" without knowing which database is
behind it.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from chainsight.framework.defaults import DEFAULT_STORE_FACTORY
from chainsight.framework.model import Alert, Sample, Score, Span

Rows = dict[str, list[dict[str, Any]]]


class StoreUnavailable(Exception):
    """The store cannot be reached or is locked right now; retry later."""


class StoreMisconfigured(StoreUnavailable):
    """The URL, file, schema or driver is wrong: retrying will not help until
    the user fixes it. ``str()`` is one line a user understands (URL masked).
    A subclass of :class:`StoreUnavailable` because what the pipeline does is
    the same (keep the spans in the spill file); only what it says differs."""


@dataclass
class WriteBatch:
    """What one write stores: the records of one drained batch."""

    spans: Sequence[Span] = ()
    scores: Sequence[Score] = ()
    samples: Sequence[Sample] = ()
    alerts: Sequence[Alert] = ()


class Rejected(Protocol):
    """A row the store refused even alone, with the store's reason."""

    @property
    def table(self) -> str: ...
    @property
    def row(self) -> dict[str, Any]: ...
    @property
    def error(self) -> str: ...


class Store(Protocol):
    """The store as the pipeline sees it (``chainsight.storage.writer.StoreWriter``)."""

    url: str

    def open(self) -> None:
        """Connect and check the schema; raises StoreUnavailable / StoreMisconfigured."""

    def prepare(self, batch: WriteBatch) -> Rows:
        """Rows per table for a batch (pure, no I/O); JSON-serialisable."""

    def write_prepared(self, rows: Rows) -> None:
        """Write rows in one transaction."""

    def write_isolating(self, rows: Rows) -> Sequence[Rejected]:
        """Write rows, splitting a rejected batch; return the rows refused alone."""

    def write_plugin_health(self, health: Sequence[Any]) -> None: ...

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connections without closing them."""

    def close(self) -> None: ...


class StoreFactory(Protocol):
    """Builds the store for a URL; lazy: building one must not connect
    (``open`` does, on the pipeline's writer side). ``max_content_bytes``
    caps the stored size of a span's inputs and outputs."""

    def __call__(self, url: str, *, max_content_bytes: int) -> Store: ...


def default_store_factory() -> StoreFactory:
    """The factory named by ``DEFAULT_STORE_FACTORY``, imported by name."""
    return cast(StoreFactory, pkgutil.resolve_name(DEFAULT_STORE_FACTORY))
