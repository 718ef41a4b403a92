"""Hook specifications: the reference manual for writing a Chainsight plugin.

A plugin is any module or object with functions decorated ``@hookimpl`` (from
``framework``) whose names match the specs below; it may implement any subset
and accept any subset of each hook's arguments. It may also carry a
``CONFIG_SCHEMA`` (JSON Schema, draft 2020-12) for its ``[plugins.NAME]`` table
in plugins.toml; the host validates the table against it, applies its defaults
and passes the result to :func:`configure`.

Hook implementations the host would never call are refused at load: an
unknown name (``trace_finish`` for :func:`trace_finished`; mark one meant for
a later version ``@hookimpl(optionalhook=True)``) and a pluggy wrapper
(``hookwrapper=True`` / ``wrapper=True``: the host calls every hook
implementation by implementation, so wrappers would never run). In strict
mode that is a :class:`~chainsight.framework.plugin_manager.PluginLoadError`; otherwise a
warning naming the plugin and the hook, the implementation is not used, and
``chainsight plugins`` lists it as a problem of the plugin.

There are two kinds of hooks.

**Startup hooks** (``configure``, ``register_*``, ``price_span``'s
registration) run once, before the pipeline processes any span: on the
pipeline worker thread (so building an observer never waits for them), or on
the thread that builds the observer when it is strict. They may block
briefly (read a file, open a client) but must not do network I/O that can
hang.

**Pipeline hooks** (``process_span``, ``process_score``, ``spans_finished``,
``trace_finished``, ``alert_changed``, ``feedback_recorded``,
``samples_collected``) run on the
single pipeline worker thread, never on the thread of the user's chain. The
host calls them implementation by implementation through a guarded
dispatcher: an exception in one plugin is logged once (with the plugin's name),
counted, and the other plugins still run; after
``[pipeline] degrade_after`` consecutive failures the plugin's pipeline hooks
are skipped and it is shown as *degraded* by ``chainsight plugins``. A plugin
that sets ``FAIL_CLOSED = True`` on its class or module (redaction does) is
never degraded: its failures are counted and reported, and the content of a
span or score it failed on is withheld instead of stored unprocessed. In
strict mode (``[pipeline] strict = true``, used by the tests) the exception is
re-raised instead.

Nothing here is ever called on the caller's thread: the recorder only builds
spans and enqueues them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from chainsight.framework.extension import CommandRegistry, Register
from chainsight.framework.model import Alert, Sample, Score, Span

if TYPE_CHECKING:
    from chainsight.framework.observer import Observer

PROJECT_NAME = "chainsight"
ENTRY_POINT_GROUP = "chainsight.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------
# Startup
# --------------------------------------------------------------------------


@hookspec
def configure(observer: Observer, config: Mapping[str, Any]) -> None:
    """Read this plugin's configuration and set up.

    When: once per plugin, right after it is registered (plugins registered
    later, e.g. with ``observer.register(plugin)``, get it on registration:
    historic semantics). Thread: start-up (the pipeline worker; the caller
    of ``Observer(...)`` when strict, or of ``observer.register``).

    ``config`` is this plugin's own ``[plugins.NAME]`` table, validated against
    its ``CONFIG_SCHEMA`` with the schema's defaults applied and secret
    references (``{ env = "NAME" }``) resolved; an empty mapping when the file
    has no table for it. ``observer`` gives access to ``observer.record_score``,
    ``observer.record_sample``, ``observer.record_alert`` and the store URL.

    Return: ignored. Raising here disables the plugin (reported, never fatal
    unless strict).
    """


@hookspec
def register_checks(register: Register) -> None:
    """Register quality checks: objects with ``name`` and ``check_span`` and/or
    ``check_trace`` (see :class:`chainsight.framework.extension.SpanCheck` and
    :class:`~chainsight.framework.extension.TraceCheck`).

    When: once at startup, after every plugin was configured. Thread:
    start-up (the pipeline worker; the builder of a strict observer). Call ``register(check)`` once per check; a second
    check with the same name is reported and ignored. Return: ignored.
    """


@hookspec
def register_exporters(register: Register) -> None:
    """Register exporters (:class:`chainsight.framework.extension.Exporter`), which
    receive every finished batch of spans after it was stored.

    When/thread/return: as :func:`register_checks`.
    """


@hookspec
def register_samplers(register: Register) -> None:
    """Register periodic samplers (:class:`chainsight.framework.extension.Sampler`), run
    on the host's sampler thread every ``interval_s`` seconds.

    When/thread/return: as :func:`register_checks`.
    """


@hookspec
def register_notifiers(register: Register) -> None:
    """Register alert notifiers (:class:`chainsight.framework.extension.Notifier`),
    called on every alert state change.

    When/thread/return: as :func:`register_checks`.
    """


@hookspec
def register_commands(cli: CommandRegistry) -> None:
    """Add ``chainsight`` subcommands with ``cli.add(name, help, configure, run)``.

    When: each time the CLI starts, before arguments are parsed. Thread: main.
    A command whose name is already taken is reported and ignored.
    Return: ignored.

    ``run(namespace)`` returns the exit status. What it needs (``CommandError``
    for a one-line error and its exit status, ``parse_time``, ``open_store``
    for the query API, ``resolve_trace`` / ``resolve_span`` for short ids,
    ``print_json`` / ``print_table``) comes from the public module
    ``chainsight.framework.commands``, never from ``chainsight.framework.cli``.
    """


@hookspec
def setup_problems(config: Mapping[str, Any]) -> list[str] | None:
    """Say what keeps this plugin from doing what its configuration asks,
    though it loaded (the price table it needs is missing, say).

    When: by ``chainsight plugins`` and ``chainsight config check``, which
    show the answer next to the plugin; implementation by implementation,
    each with its own ``[plugins.NAME]`` table as :func:`configure` gets it
    (validated, defaults applied). Thread: the CLI's. May read local files;
    must not do network I/O.

    Return: one-line messages, or None / an empty list when all is well.
    """


# --------------------------------------------------------------------------
# Pipeline (worker thread, guarded dispatch)
# --------------------------------------------------------------------------


@hookspec(firstresult=True)
def price_span(span: Span) -> float | None:
    """Return the cost in US dollars of this finished span, or None.

    When: on the pipeline worker, for every finished span that has a model and
    token counts but no ``cost_usd`` yet, after :func:`process_span` (so token
    counts estimated there are priced too; the span may already be redacted).
    ``firstresult``: the first non-None answer wins, so any plugin or override
    beats the built-in price table (which is ``trylast``). Return None when the
    model is unknown: the span stays *unpriced* (``cost_usd`` NULL), never $0.
    Must not block.
    """


@hookspec
def process_span(span: Span) -> None:
    """Mutate a finished span before anything stores, checks or exports it.

    When: on the pipeline worker, once per finished span, first of all
    pipeline hooks (before :func:`price_span`, checks and storage); pluggy's
    order applies (last registered first; use ``tryfirst``/``trylast``).
    This is the phase for redaction (masking PII in ``inputs``/``outputs``/
    ``attributes``; the built-in one is ``tryfirst``) and enrichment (adding
    attributes, tags, estimated token counts). The span is owned by the
    worker: mutate it in place, but never mutate objects it references
    (they may still belong to the user's code): replace them with copies.
    Return: ignored. Must not block.
    """


@hookspec
def process_score(score: Score) -> Score | None:
    """Mutable phase for scores before they are stored (worker thread):
    feedback comments, check and judge explanations, scores recorded by hand.

    When: on the pipeline worker, once per score and feedback item, before
    it is stored and before :func:`feedback_recorded`. Scores are frozen:
    return a replacement :class:`~chainsight.framework.model.Score` (e.g.
    ``dataclasses.replace(score, comment=masked)``), or None to keep it. The
    implementations are called in pluggy's order, each with the score the
    previous ones left. Redaction implements it (``tryfirst``) and masks
    ``comment`` and ``label`` with the same detectors as span content; when
    it raises, the score is stored with both withheld
    (:func:`chainsight.framework.model.withhold_score`). Must not block.
    """


@hookspec
def spans_finished(spans: Sequence[Span]) -> None:
    """Observe a batch of finished, processed and stored spans (sinks).

    When: on the pipeline worker after each batch was written to storage (or
    spilled). ``spans`` is a tuple; treat the spans as read-only. Prometheus
    counters, alert rule evaluation and exporters live here. Return: ignored.
    Must not block for long.
    """


@hookspec
def trace_finished(root: Span, spans: Sequence[Span]) -> list[Score] | None:
    """Judge a whole trace once its root span ended.

    When: on the pipeline worker, once per trace, after the root span (the one
    with ``parent_id`` None) was processed; ``spans`` holds every span of the
    trace the worker has seen, the root included (spans that ended more than
    ``[pipeline] trace_buffer_s`` seconds before their root may be missing).
    Return: a list of :class:`~chainsight.framework.model.Score` to store, or None.
    """


@hookspec
def samples_collected(samples: Sequence[Sample]) -> None:
    """Observe a batch of samples (GPU utilisation...) that was just stored.

    When: on the pipeline worker. Return: ignored. Must not block for long.
    """


@hookspec
def alert_changed(alert: Alert) -> None:
    """An alert changed state (pending -> firing -> resolved).

    When: on the pipeline worker, after the alert row was stored.
    Return: ignored.
    """


@hookspec
def feedback_recorded(score: Score) -> None:
    """User feedback (thumbs, rating, comment) was recorded and stored.

    When: on the pipeline worker. ``score.source`` is ``"feedback"``.
    Return: ignored.
    """


@hookspec
def shutdown() -> None:
    """The observer is shutting down: flush buffers, close clients.

    When: once, on the pipeline worker's thread after the last batch, inside
    the shutdown deadline (atexit, SIGTERM or an explicit ``shutdown()``).
    Return: ignored. Must return quickly.
    """

