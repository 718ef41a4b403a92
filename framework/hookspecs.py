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

Every extension point is a hook; there is no second registry. What to
implement for each kind of extension:

=================  ==========================================================
a quality check    :func:`check_span` (one span) and/or :func:`trace_finished`
                   (a whole trace); both return scores
an exporter        :func:`spans_finished` (each stored batch) and
                   :func:`shutdown` (flush within the time left)
a notifier         :func:`alert_changed`
a sampler          :func:`collect_samples` (GPU, process...)
a redactor         :func:`process_span` and :func:`process_score`
a price source     :func:`price_span`
a CLI command      :func:`register_commands`
an evaluator       :func:`evaluate` (a dataset item's output against its
                   expected answer, or a judge's opinion of it)
=================  ==========================================================

A plugin that keeps state is a class: the host builds one instance per
observer from the module's ``create_plugin()`` factory (or registers the
object it is given), so two observers never share it. No module globals.

There are four kinds of hooks, by the thread that calls them.

**Startup hooks** (``configure``, ``register_commands``,
``setup_problems``) run once, before the pipeline processes any span: on the
pipeline worker thread (so building an observer never waits for them), or on
the thread that builds the observer when it is strict (``register_commands``
and ``setup_problems`` on the CLI's). They may block briefly (read a file,
open a client) but must not do network I/O that can hang.

**Pipeline hooks** (``process_span``, ``price_span``, ``check_span``,
``process_score``, ``trace_finished``, ``spans_finished``,
``samples_collected``, ``alert_changed``, ``feedback_recorded``,
``shutdown``) run on the single pipeline worker thread, never on the thread
of the user's chain. The host calls them implementation by implementation
through a guarded dispatcher: an exception in one plugin is logged once (with
the plugin's name), counted, and the other plugins still run; after
``[pipeline] degrade_after`` consecutive failures the plugin's pipeline hooks
are skipped and it is shown as *degraded* by ``chainsight plugins``. The two
check hooks also have a time budget (``[pipeline] check_budget_ms``): a call
over it counts as a failure of kind "slow". A plugin that sets
``FAIL_CLOSED = True`` on its class or module (redaction does) is never
degraded: its failures are counted and reported, and the content of a span or
score it failed on is withheld instead of stored unprocessed. In strict mode
(``[pipeline] strict = true``, used by the tests) the exception is re-raised
instead.

**Sampler hook** (``collect_samples``) runs on the host's sampler thread,
under the same guard.

**Evaluation hook** (``evaluate``) runs only in an evaluation run
(``chainsight eval run``, ``chainsight.evaluate``), on the run's own worker
threads, several items at once; never on the pipeline worker, so it may
block (an LLM judge calls a model).

Nothing here is ever called on the caller's thread: the recorder only builds
spans and enqueues them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

from chainsight.framework.extension import CommandRegistry
from chainsight.framework.model import Alert, EvalCase, Sample, Score, Span

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
def check_span(span: Span) -> list[Score] | None:
    """Judge one finished span: a quality check (length, PII, refusal...).

    When: on the pipeline worker, once per finished span, after
    :func:`process_span` and :func:`price_span` (so the span is redacted and
    priced). Treat the span as read-only. Budget: each call is timed; one over
    ``[pipeline] check_budget_ms`` is logged and counted as "slow", and a check
    that keeps failing or running slow is degraded like any plugin. Exit being
    near skips checks (the span is stored unchecked and counted).

    Return: the scores it produced (``Score(name, value, passed=...,
    source="check")``), or None / an empty list when it has nothing to say
    about this span. Scores go through :func:`process_score` and are stored
    with the span. Must not block.
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
    """Observe a batch of finished, processed and stored spans: exporters
    and other sinks (a JSON log, metrics counters) live here.

    When: on the pipeline worker after each batch was written to storage (or
    spilled). ``spans`` is a tuple; treat the spans as read-only. Return:
    ignored. Must not block for long: it holds up the next batch, so give a
    network client a short timeout, or hand the batch to a thread of your own
    and drain it in :func:`shutdown`.
    """


@hookspec
def trace_finished(root: Span, spans: Sequence[Span]) -> list[Score] | None:
    """Judge a whole trace once its root span ended: trace-level checks
    (groundedness reads the retriever's documents and the final answer).

    When: on the pipeline worker, once per trace, after the root span (the one
    with ``parent_id`` None) was processed and checked; ``spans`` is a tuple of
    every span of the trace the worker has seen, the root included (spans that
    ended more than ``[pipeline] trace_buffer_s`` seconds before their root
    may be missing). Same budget as :func:`check_span`.
    Return: a list of :class:`~chainsight.framework.model.Score` to store, or None.
    """


@hookspec
def collect_samples() -> list[Sample] | None:
    """Take a periodic reading: GPU utilisation and memory, process CPU...

    When: every ``[pipeline] sample_interval_s`` seconds (default 5), on the
    host's sampler thread: never the caller's, never the pipeline worker's.
    The thread starts only when some plugin implements this hook. It may
    raise; the host counts it, logs it once and calls again on the next tick.
    Return: the samples to store (they reach :func:`samples_collected`), or
    None. May block briefly (a driver call), not for seconds.
    """


@hookspec
def samples_collected(samples: Sequence[Sample]) -> None:
    """Observe a batch of samples (GPU utilisation...) that was just stored.

    When: on the pipeline worker. Return: ignored. Must not block for long.
    """


@hookspec
def alert_changed(alert: Alert) -> None:
    """An alert changed state (pending -> firing -> resolved; a pending one
    that clears before it fired: inactive): notifiers (a webhook, Slack,
    stderr) live here. ``alert.alert_id`` is the same through one alert's states.

    When: on the pipeline worker, after the alert row was stored.
    Return: ignored. Give network calls a short timeout.
    """


@hookspec
def feedback_recorded(score: Score) -> None:
    """User feedback (thumbs, rating, comment) was recorded and stored.

    When: on the pipeline worker. ``score.source`` is ``"feedback"``.
    Return: ignored.
    """


@hookspec
def shutdown(timeout: float) -> None:
    """The observer is shutting down: flush buffers, close clients.

    When: once, after the last batch, inside the shutdown deadline (atexit,
    SIGTERM or an explicit ``shutdown()``), on a thread of the host's that it
    stops waiting for at the deadline. ``timeout`` is the seconds left of the
    deadline when the hooks start; an exporter gives its final flush no more.
    Return: ignored.
    """



# --------------------------------------------------------------------------
# Evaluation (the eval runner's threads)
# --------------------------------------------------------------------------


@hookspec
def evaluate(case: EvalCase) -> list[Score] | None:
    """Judge one dataset item's output: an evaluator (exact match, ROUGE-L,
    an LLM judge...).

    When: in an evaluation run, once per item and evaluator, after the target
    ran on the item and its trace was stored, so ``case.spans`` hold the
    trace as stored (redacted, priced; the online checks have run on it).
    ``case.output`` is what the target returned, ``case.expected`` the
    dataset's expected output (None when the item has none), ``case.error``
    set when the target failed (built-in reference evaluators then score 0;
    an evaluator may also return None). Thread: one of the run's worker
    threads; several items are evaluated at once, so keep per-item state
    local. May block (a judge calls a model): give network calls a timeout.
    Guarded like pipeline hooks: a raising evaluator is counted, reported
    in the run's summary with its name, and the other evaluators still run.

    Return: the scores, e.g. ``Score("exact_match", "eval", case.trace_id,
    value=1.0, passed=True)``; ``value`` in 0..1, higher is better (the
    summary averages it, comparisons and gates read it that way), ``passed``
    the verdict, ``comment`` the explanation. The runner links each score to
    the item's trace and the experiment (``trace_id``, ``experiment_id``),
    keeps ``source`` ``"eval"`` or ``"judge"`` (anything else becomes
    ``"eval"``), and stores it through :func:`process_score`. None or an
    empty list: nothing to say about this item.
    """
