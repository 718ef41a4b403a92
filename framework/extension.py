"""The objects a plugin hands the host through the ``register_*`` hooks.

Each is a structural Protocol: any object with these attributes works, no base
class needed. The host owns naming, de-duplication (the first object registered
under a name wins; a later one with the same name is reported and ignored) and
policy (time budgets, degradation after repeated failures).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from chainsight.framework.model import Alert, Sample, Score, Span


@runtime_checkable
class SpanCheck(Protocol):
    """A quality check that judges one finished span.

    Called on the pipeline worker, after ``process_span`` (so it sees redacted
    content), once per finished span. Return the scores it produced (possibly
    none). It must not block for long: the host measures every call, logs one
    that exceeds its budget (``[pipeline] check_budget_ms``) and degrades a
    check that keeps exceeding it or raising.
    """

    name: str

    def check_span(self, span: Span) -> Iterable[Score] | None: ...


@runtime_checkable
class TraceCheck(Protocol):
    """A quality check that judges a whole trace once its root span ended.

    ``spans`` holds every span of the trace that the worker saw, root included
    (the groundedness check reads the retriever's documents and the answer).
    Same thread and budget rules as :class:`SpanCheck`.
    """

    name: str

    def check_trace(self, root: Span, spans: Sequence[Span]) -> Iterable[Score] | None: ...


@runtime_checkable
class Exporter(Protocol):
    """Ships finished spans somewhere else (OTLP, a JSON log, a metrics backend).

    ``export`` is called on the pipeline worker with each frozen batch after it
    was written to storage; it must not block for long (give network clients a
    short timeout). ``shutdown`` is called once, with what is left of the
    shutdown deadline.
    """

    name: str

    def export(self, spans: Sequence[Span]) -> None: ...

    def shutdown(self, timeout: float) -> None: ...


@runtime_checkable
class Sampler(Protocol):
    """Produces periodic samples (GPU utilisation and memory...).

    ``sample`` is called every ``interval_s`` seconds on the host's sampler
    thread (never the caller's, never the pipeline worker's). It may raise;
    the host counts it, logs it once and keeps calling on the next tick.
    """

    name: str
    interval_s: float

    def sample(self) -> Iterable[Sample]: ...


@runtime_checkable
class Notifier(Protocol):
    """Delivers alert transitions (Slack, a webhook, stderr...).

    Called on the pipeline worker for each state change of an alert; give
    network calls a short timeout.
    """

    name: str

    def notify(self, alert: Alert) -> None: ...


CommandRunner = Callable[[argparse.Namespace], int]


class CommandRegistry(Protocol):
    """What ``register_commands`` receives: a way to add ``chainsight`` subcommands."""

    def add(
        self,
        name: str,
        help: str,
        configure: Callable[[argparse.ArgumentParser], None],
        run: CommandRunner,
    ) -> None:
        """Add ``chainsight NAME``. ``configure`` adds its arguments (``--db``
        and ``--json`` are added by the host); ``run`` gets the parsed
        namespace and returns the exit status."""
        ...


Register = Callable[[object], None]
