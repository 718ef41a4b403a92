"""PluginHarness: one plugin in a real observer, on a temporary SQLite store.

The harness builds the observer a user's process would build, with the
plugin loaded and configured the production way (its ``[plugins.NAME]``
table validated against its ``CONFIG_SCHEMA``, defaults applied, secret
references resolved), but with no other plugin than the ones asked for. It
feeds it spans, flushes, and reports what happened, from the pipeline's
sinks, the plugin's health, the log and the store itself (through the query
API, :class:`chainsight.storage.query.Store`).

Strict by default: a plugin that fails to load, is refused a hook, gets a
configuration its schema rejects or raises in ``configure`` fails the
harness's constructor; one that raises (or overruns its time budget) while
spans flow fails the next :meth:`PluginHarness.flush` or
:meth:`PluginHarness.close` with :class:`PluginFailed`, whose cause is the
plugin's own exception.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import logging
import os
import shutil
import tempfile
import threading
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainsight.framework.config import Settings
from chainsight.framework.defaults import DEFAULT_PLUGINS
from chainsight.framework.dispatch import PluginHealth
from chainsight.framework.hookspecs import ENTRY_POINT_GROUP, hookimpl
from chainsight.framework.model import Alert, PipelineStats, Sample, Score, Span, Trace
from chainsight.framework.observer import Observer
from chainsight.framework.plugin_manager import PluginInfo, instantiate, plugin_name
from chainsight.storage.query import Store
from chainsight.testing.recorded import load_spans

if TYPE_CHECKING:
    from chainsight.framework.adapters.langchain import CallbackHandler

PROBE_NAME = "chainsight_testing_probe"
# The harness's sampler thread takes one reading at start and then sleeps:
# readings in a test come from PluginHarness.collect_samples().
SAMPLE_INTERVAL_S = 3600.0


class PluginFailed(AssertionError):
    """The plugin under test failed while spans flowed (strict mode).

    The message lists every failure since the last check; ``__cause__`` is
    the first exception the plugin raised, when there was one."""


@dataclass(frozen=True)
class SinkCalls:
    """What the pipeline handed to the sink hooks (every plugin's alike), in order."""

    spans: tuple[Span, ...] = ()
    """``spans_finished``: each batch's spans, after storage."""
    samples: tuple[Sample, ...] = ()
    """``samples_collected``."""
    alerts: tuple[Alert, ...] = ()
    """``alert_changed``."""
    feedback: tuple[Score, ...] = ()
    """``feedback_recorded``."""


@dataclass(frozen=True)
class HarnessResult:
    """What happened, read after a flush. Rows come from the store, through
    the query API; ``sinks`` from the sink hooks; ``health`` and ``logs``
    from this process."""

    flushed: bool
    """What ``observer.flush()`` (or ``shutdown()``) returned: everything recorded was stored."""
    traces: list[Trace]
    """Stored traces, oldest first."""
    spans: list[Span]
    """Stored spans, trace by trace, each trace's in start order."""
    scores: list[Score]
    """Stored scores, oldest first: checks, feedback, scores recorded by hand."""
    samples: list[Sample]
    """Stored samples, oldest first, without the pipeline's own ``chainsight_*`` counters."""
    alerts: list[Alert]
    """Stored alerts, newest first."""
    sinks: SinkCalls
    """What the sink hooks were given since the harness started."""
    plugin: PluginInfo | None
    """How the plugin under test loaded: its name, hooks, status and problems."""
    health: dict[str, PluginHealth]
    """Runtime health (calls, failures, slow calls, degraded) by plugin name."""
    logs: list[logging.LogRecord]
    """Every record at WARNING or above logged in this process since the harness started."""
    stats: PipelineStats
    """The pipeline's counters: written, dropped, failed, ..."""

    def span(self, name: str) -> Span:
        """The one stored span called ``name`` (AssertionError if not exactly one)."""
        found = [s for s in self.spans if s.name == name]
        assert len(found) == 1, f"{len(found)} stored spans are named {name!r}; names: " \
            f"{sorted({s.name for s in self.spans})}"
        return found[0]

    def scores_for(self, span: Span | str, name: str | None = None) -> list[Score]:
        """Scores stored on one span (a Span or its id), optionally of one name."""
        span_id = span if isinstance(span, str) else span.span_id
        return [s for s in self.scores if s.span_id == span_id and (name is None or s.name == name)]

    def trace_scores(self, trace_id: str, name: str | None = None) -> list[Score]:
        """Scores stored on a whole trace (``span_id`` None), optionally of one name."""
        return [s for s in self.scores
                if s.trace_id == trace_id and s.span_id is None and (name is None or s.name == name)]

    @property
    def plugin_health(self) -> PluginHealth | None:
        """The plugin under test's health (None before it was first called)."""
        return self.health.get(self.plugin.name) if self.plugin is not None else None


@dataclass(frozen=True)
class CommandResult:
    """What a ``chainsight`` command printed and returned."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """``stdout`` parsed as one JSON document (for ``--json``)."""
        import json

        return json.loads(self.stdout)


class _SinkProbe:
    """Registered beside the plugin under test to see what its sinks see."""

    name = PROBE_NAME

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[Span] = []
        self.samples: list[Sample] = []
        self.alerts: list[Alert] = []
        self.feedback: list[Score] = []

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        with self.lock:
            self.spans.extend(spans)

    @hookimpl
    def samples_collected(self, samples: Sequence[Sample]) -> None:
        with self.lock:
            self.samples.extend(samples)

    @hookimpl
    def alert_changed(self, alert: Alert) -> None:
        with self.lock:
            self.alerts.append(alert)

    @hookimpl
    def feedback_recorded(self, score: Score) -> None:
        with self.lock:
            self.feedback.append(score)

    def calls(self) -> SinkCalls:
        with self.lock:
            return SinkCalls(tuple(self.spans), tuple(self.samples), tuple(self.alerts),
                             tuple(self.feedback))


class _LogCapture(logging.Handler):
    """Every record at WARNING or above, from any thread of the process."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _chosen_builtins(
    builtins: Iterable[str] | Mapping[str, Mapping[str, Any]],
) -> tuple[list[tuple[str, str]], dict[str, dict[str, Any]]]:
    known = dict(DEFAULT_PLUGINS)
    names = list(builtins)
    for name in names:
        if name not in known:
            raise ValueError(f"unknown built-in plugin {name!r}; the built-ins are: {', '.join(known)}")
    configs = ({name: dict(builtins[name]) for name in names}
               if isinstance(builtins, Mapping) else {})
    return [(name, known[name]) for name in names], configs


class PluginHarness:
    """Runs one plugin in a real observer on a temporary SQLite store.

    ``plugin`` is what an entry point would name: a module (or its dotted
    name; a module with ``create_plugin()`` gets its own instance, as in
    production), or a plugin object. ``name`` is the plugin's name (its
    ``[plugins.NAME]`` table, what ``chainsight plugins`` lists): by default
    a module's or object's ``name`` attribute, else the module's last dotted
    part. ``config`` is that table, validated as plugins.toml's would be.
    ``builtins`` adds built-in plugins by name (``["redaction"]``), or maps
    each name to its table. ``pipeline`` overrides ``[pipeline]`` settings
    (``check_budget_ms``...). ``strict=False`` runs as a user's process does:
    failures are counted in ``health``, logged, and the plugin degraded,
    instead of failing the test. ``directory`` holds the store and the
    spill file (a temporary folder, removed by :meth:`close`, by default).

    Use it as a context manager, or call :meth:`close`::

        with PluginHarness("my_plugin", config={"max_words": 5}) as h:
            with h.span("answer", kind="llm") as span:
                span.outputs = "one two three"
            result = h.flush()
        (score,) = result.scores_for(span)
    """

    def __init__(
        self,
        plugin: object | str | None,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        builtins: Iterable[str] | Mapping[str, Mapping[str, Any]] = (),
        pipeline: Mapping[str, Any] | None = None,
        strict: bool = True,
        directory: str | os.PathLike[str] | None = None,
        flush_timeout: float = 10.0,
    ) -> None:
        self.strict = strict
        self.flush_timeout = flush_timeout
        chosen, configs = _chosen_builtins(builtins)
        extra: list[object] = []
        self.name: str | None = None
        if isinstance(plugin, str | types.ModuleType):
            dotted = plugin if isinstance(plugin, str) else plugin.__name__
            self.name = name or plugin_name(importlib.import_module(dotted))
            chosen.append((self.name, dotted))  # loaded by dotted path, under this name
        elif plugin is not None:
            self.name = plugin_name(plugin)
            if name is not None and name != self.name:
                raise ValueError(
                    f"the plugin object registers as {self.name!r} (its name attribute or class "
                    f"name), not {name!r}: give its class `name = {name!r}`, or pass its module")
            extra.append(plugin)
        if self.name is not None and config is not None:
            configs[self.name] = dict(config)

        self._own_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="chainsight-harness-") if directory is None
                              else directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.directory / 'chainsight.db'}"
        self._probe = _SinkProbe()
        self._logs = _LogCapture()
        self._reported = 0
        self._failures_seen: dict[str, int] = {}
        self._store: Store | None = None
        self._final: HarnessResult | None = None
        logging.getLogger().addHandler(self._logs)
        settings = Settings(pipeline={"sample_interval_s": SAMPLE_INTERVAL_S, **(pipeline or {})},
                            plugins=configs)
        try:
            self.observer = Observer(
                self.url, settings=settings, builtins=chosen, entry_points=False, strict=strict,
                plugins=[self._probe, *extra], spill_path=self.directory / "spill.jsonl",
            )
        except BaseException:
            self._clean_up()
            raise

    @classmethod
    def from_entry_point(cls, name: str, **options: Any) -> PluginHarness:
        """The plugin installed under entry point ``name`` of the
        ``chainsight.plugins`` group, loaded as ``chainsight`` loads it
        (so this also tests the package's metadata)."""
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not found:
            installed = sorted(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
            raise LookupError(f"no {ENTRY_POINT_GROUP!r} entry point named {name!r} is installed "
                              f"(installed: {', '.join(installed) or 'none'}); is the package installed?")
        (ep,) = tuple(found)[:1]
        if ep.attr is None:
            return cls(ep.module, name=name, **options)
        return cls(instantiate(ep.load()), name=name, **options)

    # ---- feeding ----------------------------------------------------------------
    def span(self, name: str, kind: str = "chain", **fields: Any) -> contextlib.AbstractContextManager[Span]:
        """``observer.span(...)``: record a block as a span (nested under an enclosing one)."""
        return self.observer.span(name, kind, **fields)

    def handler(self, **options: Any) -> CallbackHandler:
        """A LangChain callback handler recording into this harness's observer:
        ``chain.invoke(x, config={"callbacks": [h.handler()]})``."""
        from chainsight.framework.adapters.langchain import CallbackHandler

        return CallbackHandler(self.observer, **options)

    def feed(self, spans: Iterable[Span] | str | os.PathLike[str]) -> list[Span]:
        """Hand finished spans to the pipeline, as if they had just ended:
        Span objects, or the path of a recording (see :func:`load_spans`).

        They go in the order they ended (a trace's root after its children,
        so ``trace_finished`` sees the whole trace); each is a copy, so one
        recording can feed several harnesses. Returns the copies fed.
        """
        given = load_spans(spans) if isinstance(spans, str | os.PathLike) else list(spans)
        copies = [Span.from_dict(span.to_dict()) for span in given]
        copies.sort(key=lambda s: (s.end_ns if s.end_ns is not None else s.start_ns, s.parent_id is None))
        for span in copies:
            end_ns = span.end_ns if span.end_ns is not None else span.start_ns
            span.end_ns = None  # end_span ends a span once
            self.observer.end_span(span, end_ns=end_ns)
        return copies

    def collect_samples(self) -> list[Sample]:
        """Call the ``collect_samples`` hooks once, now, on this thread (as
        the sampler thread does, under the same guard), and queue what they
        return. In strict mode a hook's exception is raised here. (The
        observer's own sampler thread also took one reading at start.)"""
        dispatcher = self.observer.dispatcher
        taken: list[Sample] = []
        for name, function in dispatcher.implementations("collect_samples"):
            ok, samples = dispatcher.guard(name, function, what="collect_samples")
            if ok and samples:
                taken.extend(samples)
        for sample in taken:
            self.observer.record_sample(sample)
        return taken

    # ---- results ----------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The query API on this harness's store, for anything the result does not hold."""
        if self._store is None:
            self._store = Store(self.url)
        return self._store

    @property
    def logs(self) -> list[logging.LogRecord]:
        """Every record at WARNING or above logged in this process so far, from any thread."""
        return list(self._logs.records)

    @property
    def plugin_info(self) -> PluginInfo | None:
        """How the plugin under test loaded (None without one)."""
        return self.observer.plugins.info(self.name) if self.name is not None else None

    def flush(self, timeout: float | None = None) -> HarnessResult:
        """Wait until everything recorded so far is processed and stored, then
        report. Strict: raises :class:`PluginFailed` for any plugin failure or
        Chainsight error logged since the last check, or if not all was stored."""
        flushed = self.observer.flush(self.flush_timeout if timeout is None else timeout)
        result = self._result(flushed)
        self._check(flushed, "flush")
        return result

    def close(self) -> HarnessResult:
        """Shut the observer down (the plugins' ``shutdown`` hooks run), report
        as :meth:`flush` does, and remove the temporary folder. Idempotent."""
        if self._final is not None:
            return self._final
        try:
            ok = self.observer.shutdown()
            self._final = self._result(ok)
            self._check(ok, "shutdown")
        finally:
            self._clean_up()
        return self._final

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_command(self, *argv: str) -> CommandResult:
        """Run ``chainsight ARGV...`` in this process, with the commands of the
        plugins this harness loaded (``register_commands``) and the built-in
        ones, as the ``chainsight`` program builds them; ``--db`` defaults to
        this harness's store. As there, a ``CommandError`` or a missing store
        is one line on stderr and its exit status; any other exception is
        raised here (a bug, with its traceback). Strict: a command the CLI
        refused (its name taken or invalid, its ``configure`` raised) raises
        :class:`PluginFailed`."""
        from chainsight.framework.cli import build_parser
        from chainsight.framework.commands import CommandError
        from chainsight.framework.store_api import StoreMisconfigured

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            parser = build_parser(self.observer.plugins)
        refused = err.getvalue()
        if refused and self.strict:
            raise PluginFailed(f"the CLI refused a plugin's command:\n{refused}")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                ns = parser.parse_args(list(argv))
            except SystemExit as exc:  # --help, or arguments argparse rejected
                return CommandResult(_exit_code(exc.code), out.getvalue(), err.getvalue())
            if not getattr(ns, "run", None):
                return CommandResult(2, out.getvalue(), err.getvalue() + "no command given\n")
            # What the chainsight program sets before running a command.
            ns.settings = self.observer.settings
            ns.config_problems = []
            ns.plugin_set = self.observer.plugins
            if hasattr(ns, "db") and not ns.db:
                ns.db = self.url
            try:
                code = ns.run(ns)
            except (CommandError, StoreMisconfigured) as exc:
                status = exc.exit_status if isinstance(exc, CommandError) else 1
                return CommandResult(status, out.getvalue(), err.getvalue() + f"chainsight: error: {exc}\n")
        return CommandResult(0 if code is None else int(code), out.getvalue(), err.getvalue())

    # ---- inside -----------------------------------------------------------------
    def _result(self, flushed: bool) -> HarnessResult:
        store = self.store
        traces: list[Trace] = []
        cursor: str | None = None
        while True:
            page = store.list_traces(limit=500, cursor=cursor, descending=False)
            traces.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        spans: list[Span] = []
        for trace in traces:
            detail = store.get_trace(trace.trace_id)
            if detail is not None:
                spans.extend(detail.spans)
        scores = list(reversed(store.list_scores(limit=1_000_000)))
        samples = [s for s in store.list_samples(limit=1_000_000) if s.source != "pipeline"]
        health = {h.name: h for h in self.observer.dispatcher.snapshot() if h.name != PROBE_NAME}
        return HarnessResult(
            flushed=flushed, traces=traces, spans=spans, scores=scores, samples=samples,
            alerts=store.list_alerts(limit=1_000_000), sinks=self._probe.calls(),
            plugin=self.plugin_info, health=health, logs=self.logs,
            stats=self.observer.stats(),
        )

    def _check(self, stored: bool, when: str) -> None:
        """Strict: raise for what went wrong since the last check."""
        problems: list[str] = []
        cause: BaseException | None = None
        for health in self.observer.dispatcher.snapshot():
            seen = self._failures_seen.get(health.name, 0)
            if health.failures > seen:
                self._failures_seen[health.name] = health.failures
                problems.append(f"plugin {health.name!r} failed {health.failures - seen} time(s); "
                                f"last: {health.last_error}")
        records = self._logs.records[self._reported:]
        self._reported += len(records)
        for record in records:
            if record.name.split(".")[0] != "chainsight":
                continue
            error = record.exc_info[1] if record.exc_info else None
            if record.levelno >= logging.ERROR:
                raised = f" ({type(error).__name__}: {error})" if error is not None else ""
                problems.append(f"logged by {record.name}: {record.getMessage()}{raised}")
            if cause is None and error is not None:
                cause = error
        if not stored:
            stats = self.observer.stats()
            problems.append(
                f"not everything recorded was stored: {stats.written} written, {stats.failed} failed, "
                f"{stats.dropped} dropped, {stats.dead_lettered} refused by the store, {stats.lost} lost")
        if problems and self.strict:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise PluginFailed(f"Chainsight found problems at {when} (strict mode):\n{lines}") from cause

    def _clean_up(self) -> None:
        logging.getLogger().removeHandler(self._logs)
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


__all__ = [
    "CommandResult",
    "HarnessResult",
    "PluginFailed",
    "PluginHarness",
    "SinkCalls",
]
