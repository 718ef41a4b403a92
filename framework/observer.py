"""The Observer: the recorder users and adapters call, and its process default.

Everything on the caller's thread is O(1): build or finish a :class:`Span`,
append it to the pipeline's queue. No I/O, no plugin code, and no exception
ever reaches user code from here (internal errors are counted and logged).
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  see _before_fork
import contextvars
import functools
import inspect
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from chainsight.framework.defaults import FAIL_CLOSED_BUILTINS
from chainsight.framework.dispatch import GuardedDispatcher
from chainsight.framework.model import Alert, PipelineStats, Sample, Score, Span, feedback_scores
from chainsight.framework.pipeline import (
    Feedback,
    Pipeline,
    PipelineOptions,
    PipelineParts,
)
from chainsight.framework.plugin_manager import PluginSet, load_plugins, plugin_name
from chainsight.framework.process_context import process_context

if TYPE_CHECKING:
    from chainsight.framework.config import ConfigProblem, Settings
    from chainsight.framework.store_api import Store, StoreFactory

log = logging.getLogger("chainsight")

F = TypeVar("F", bound=Callable[..., Any])

_current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "chainsight_current_span", default=None
)


# How long reading a start-up attribute (``observer.plugins``...) waits for it.
STARTUP_WAIT_S = 60.0
# How long a fork() waits for a starting observer (see _before_fork).
FORK_WAIT_S = 10.0
_STARTED = frozenset({"settings", "plugins", "dispatcher", "pipeline_options",
                      "writer", "storage_url", "strict"})


@dataclass(frozen=True)
class _Given:
    """The observer's constructor arguments, kept for start-up on the worker."""

    storage_url: str | None
    settings: Settings | None
    config_path: str | os.PathLike[str] | None
    plugins: tuple[object, ...]
    builtins: Sequence[tuple[str, str]] | None
    entry_points: bool
    strict: bool | None
    spill_path: str | os.PathLike[str] | None
    pipeline: dict[str, Any]
    store_factory: StoreFactory | None


def _say_config_problems(settings: Settings, problems: Sequence[ConfigProblem]) -> None:
    """Once per observer, in the words of ``chainsight config check``."""
    log.error(
        "chainsight: invalid configuration in %s (%d problem%s); recording goes on with the "
        "built-in defaults for those parts:\n%s",
        settings.display_path, len(problems), "" if len(problems) == 1 else "s",
        "\n".join(f"  {p}" for p in problems),
    )


def current_span() -> Span | None:
    """The innermost span opened with ``observer.span()`` / ``@observe`` in this context."""
    return _current_span.get()


class Observer:
    """Records spans, scores, samples and alerts and runs them through plugins.

    Build one per process with :func:`get_observer` (from the configuration),
    or directly in tests and embedded uses::

        obs = Observer("sqlite:///runs.db", plugins=[MyPlugin()], strict=True)
    """

    def __init__(
        self,
        storage_url: str | None = None,
        *,
        settings: Settings | None = None,
        config_path: str | os.PathLike[str] | None = None,
        plugins: Sequence[object] = (),
        builtins: Sequence[tuple[str, str]] | None = None,
        entry_points: bool = True,
        strict: bool | None = None,
        spill_path: str | os.PathLike[str] | None = None,
        pipeline: Mapping[str, Any] | None = None,
        store_factory: StoreFactory | None = None,
    ) -> None:
        """Cheap: the configuration, the plugins and the store are loaded on
        the pipeline worker, so building an observer (and the first traced
        call) never waits for them; spans recorded meanwhile are queued.
        With ``strict=True`` they load here, and a problem raises.

        ``store_factory`` builds the store from the storage URL
        (``chainsight.framework.store_api.StoreFactory``); by default the one
        ``DEFAULT_STORE_FACTORY`` names, the storage package's writer."""
        self._given = _Given(storage_url, settings, config_path, tuple(plugins), builtins,
                             entry_points, strict, spill_path, dict(pipeline or {}), store_factory)
        self.internal_errors = 0
        self.last_trace_id: str | None = None
        """The trace of the last root span this observer ended (``%chainsight`` shows it)."""
        self._closed = False
        self._sampler: _SamplerThread | None = None
        self._shutdown_timeout = float(self._given.pipeline.get("shutdown_timeout_s", 5.0))
        options = PipelineOptions.from_settings(self._given.pipeline)
        parts = self._startup() if strict else None
        self.pipeline = Pipeline(options, self._startup, parts)
        self.pipeline.start()
        if parts is not None:
            self._start_sampler()
        _live_observers.add(self)
        _watch_multiprocessing_child()

    # Set by _startup (on the worker): reading one waits until start-up is done.
    settings: Settings
    plugins: PluginSet
    dispatcher: GuardedDispatcher
    pipeline_options: PipelineOptions
    writer: Store
    storage_url: str
    strict: bool

    def __getattr__(self, name: str) -> Any:
        if name in _STARTED and "pipeline" in self.__dict__:
            self.pipeline.wait_ready(STARTUP_WAIT_S)
            if name in self.__dict__:
                return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _startup(self) -> PipelineParts:
        """Configuration, plugins and the store (the worker, or the caller in strict mode)."""
        from chainsight.framework.config import (
            ConfigError,
            Settings,
            read_settings,
            resolve_plugin_configs_leniently,
        )
        from chainsight.framework.store_api import default_store_factory

        given = self._given
        problems: list[ConfigProblem] = []
        if given.settings is not None:
            settings = given.settings
        else:
            try:
                settings, problems = read_settings(given.config_path)
            except ConfigError as exc:  # a named file that does not exist
                settings, problems = Settings(), exc.problems
        strict = bool(settings.pipeline.get("strict", False)) if given.strict is None else given.strict
        if problems and strict:
            raise ConfigError(problems)
        options: dict[str, Any] = dict(settings.pipeline)
        options.update(given.pipeline)
        self.settings = settings
        self.strict = strict
        self.storage_url = given.storage_url or settings.storage_url
        self._shutdown_timeout = float(options.get("shutdown_timeout_s", 5.0))
        max_content = int(settings.storage.get("max_content_bytes") or options.get("max_content_bytes", 32_768))
        self.plugins = load_plugins(settings, strict=strict, builtins=given.builtins,
                                    entry_points=given.entry_points, extra=given.plugins)
        self.dispatcher = GuardedDispatcher(self.plugins.pm, strict=strict,
                                            degrade_after=int(options.get("degrade_after", 5)))
        self.pipeline_options = PipelineOptions.from_settings(options)
        failed = [i.name for i in self.plugins.infos if i.status == "failed"]
        self._configs, plugin_problems = resolve_plugin_configs_leniently(
            settings, self.plugins.schemas, ignore=failed)
        if plugin_problems and strict:
            raise ConfigError(plugin_problems)
        if problems or plugin_problems:
            _say_config_problems(settings, [*problems, *plugin_problems])
        self._configure_all()
        store_factory = given.store_factory or default_store_factory()
        self.writer = store_factory(self.storage_url, max_content_bytes=max_content)
        path = (Path(given.spill_path) if given.spill_path is not None
                else settings.spill_path_for(self.storage_url))
        if "pipeline" in self.__dict__:  # else __init__ starts it, once the pipeline exists
            self._start_sampler()
        return PipelineParts(self.writer, self.dispatcher, self.pipeline_options,
                             path, withhold_all=self._redaction_missing())

    def _start_sampler(self) -> None:
        if self._sampler is None and self.dispatcher.has_impls("collect_samples"):
            self._sampler = _SamplerThread(self, float(self.settings.pipeline.get("sample_interval_s", 5.0)))
            self._sampler.start()

    def _redaction_missing(self) -> str | None:
        """Why content must be withheld: a fail-closed built-in that is not
        disabled could not be loaded or configured."""
        for name in FAIL_CLOSED_BUILTINS:
            info = self.plugins.info(name)
            if info is not None and info.status == "failed":
                log.error("chainsight: the %s plugin is not working (%s); span content is withheld "
                          "until it is fixed", name, info.error)
                return f"{name}: {info.error}"
        return None

    # ---- startup ---------------------------------------------------------
    def _configure_all(self) -> None:
        for impl in reversed(self.plugins.pm.hook.configure.get_hookimpls()):
            self._configure_one(impl.plugin_name, impl.function, impl.argnames)

    def _configure_one(self, name: str, function: Callable[..., Any], argnames: Sequence[str]) -> None:
        args = {"observer": self, "config": self._configs.get(name, {})}
        try:
            function(*[args[a] for a in argnames])
        except Exception as exc:
            if self.strict:
                raise
            if name in FAIL_CLOSED_BUILTINS and self._configure_with_defaults(name, function, argnames):
                log.error("plugin %r failed to configure (%s); it runs with its defaults", name, exc)
                return
            log.error("plugin %r failed to configure and is disabled: %s", name, exc)
            self.plugins.mark_failed(name, f"configure: {type(exc).__name__}: {exc}")
            self.dispatcher.refresh()

    def _configure_with_defaults(self, name: str, function: Callable[..., Any],
                                 argnames: Sequence[str]) -> bool:
        from chainsight.framework.config import apply_defaults

        args = {"observer": self, "config": apply_defaults(self.plugins.schemas.get(name), {})}
        try:
            function(*[args[a] for a in argnames])
            return True
        except Exception:
            return False

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin after startup: it gets ``configure`` at once,
        and its pipeline hooks (checks, sinks...) from the next batch on."""
        name = self.plugins.register(plugin, name or plugin_name(plugin))
        self.dispatcher.refresh()
        for impl in self.plugins.pm.hook.configure.get_hookimpls():
            if impl.plugin_name == name:
                self._configure_one(name, impl.function, impl.argnames)
        self._start_sampler()
        return name

    # ---- hot path --------------------------------------------------------
    def start_span(
        self,
        name: str,
        kind: str = "chain",
        *,
        parent: Span | None = None,
        span_id: str | None = None,
        trace_id: str | None = None,
        parent_id: str | None = None,
        start_ns: int | None = None,
        inputs: Any = None,
        model: str | None = None,
        provider: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        """Open a span. ``parent`` (or ``parent_id`` + ``trace_id``) nests it;
        without either it starts a new trace, whose user, session and tags
        default to the process's (``CHAINSIGHT_USER``...). Never raises."""
        try:
            if parent is not None:
                parent_id, trace_id = parent.span_id, parent.trace_id
            elif parent_id is None:
                context = process_context()
                if user_id is None:
                    user_id = context.user_id
                if session_id is None:
                    session_id = context.session_id
                if context.tags:
                    tags = [*context.tags, *(t for t in tags or () if t not in context.tags)]
            span = Span(name, kind, span_id=span_id, trace_id=trace_id, parent_id=parent_id, start_ns=start_ns)
            if inputs is not None:
                span.inputs = inputs
            if model is not None:
                span.model = model
            if provider is not None:
                span.provider = provider
            if tags:
                span.tags = list(tags)
            if metadata:
                span.metadata = dict(metadata)
            if user_id is not None:
                span.user_id = user_id
            if session_id is not None:
                span.session_id = session_id
            if attributes:
                span.attributes = dict(attributes)
            return span
        except Exception:
            self.internal_errors += 1
            log.debug("start_span failed", exc_info=True)
            return Span(str(name), "other")

    def end_span(
        self,
        span: Span,
        *,
        outputs: Any = None,
        error: BaseException | str | None = None,
        end_ns: int | None = None,
    ) -> None:
        """Finish a span and hand it to the pipeline. Ending twice is a no-op."""
        try:
            if span.end_ns is not None:
                return
            span.end_ns = end_ns if end_ns is not None else time.time_ns()
            if outputs is not None:
                span.outputs = outputs
            if error is not None:
                span.status = "error"
                if isinstance(error, BaseException):
                    span.error_type = type(error).__name__
                    span.error = str(error) or type(error).__name__
                else:
                    span.error = error
            elif span.status == "unset":
                span.status = "ok"
            if span.parent_id is None:
                self.last_trace_id = span.trace_id
            self.pipeline.put(span)
        except Exception:
            self.internal_errors += 1
            log.debug("end_span failed", exc_info=True)

    # ---- manual instrumentation -------------------------------------------
    @contextmanager
    def span(self, name: str, kind: str = "chain", **fields: Any) -> Iterator[Span]:
        """Record a block as a span, nested under the enclosing ``span()``::

            with obs.span("retrieve", kind="retriever", user_id="u1") as s:
                s.outputs = docs
        """
        span = self.start_span(name, kind, parent=_current_span.get(), **fields)
        token = _current_span.set(span)
        try:
            yield span
        except BaseException as exc:
            self.end_span(span, error=exc)
            raise
        else:
            self.end_span(span)
        finally:
            _current_span.reset(token)

    def observe(
        self, name: str | None = None, kind: str = "chain", *, capture: bool = True, **fields: Any
    ) -> Callable[[F], F]:
        """Decorator: each call of the function (sync or async) becomes a span."""

        def decorate(function: F) -> F:
            span_name = name or function.__qualname__

            def inputs_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if not capture:
                    return None
                return {"args": list(args), "kwargs": kwargs} if kwargs else list(args)

            if inspect.iscoroutinefunction(function):

                @functools.wraps(function)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    with self.span(span_name, kind, inputs=inputs_of(args, kwargs), **fields) as span:
                        result = await function(*args, **kwargs)
                        if capture:
                            span.outputs = result
                        return result

                return cast(F, async_wrapper)

            @functools.wraps(function)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.span(span_name, kind, inputs=inputs_of(args, kwargs), **fields) as span:
                    result = function(*args, **kwargs)
                    if capture:
                        span.outputs = result
                    return result

            return cast(F, wrapper)

        return decorate

    # ---- other records ---------------------------------------------------
    def record_score(self, score: Score) -> None:
        self.pipeline.put(score)

    def record_sample(self, sample: Sample) -> None:
        self.pipeline.put(sample)

    def record_alert(self, alert: Alert) -> None:
        self.pipeline.put(alert)

    def feedback(
        self,
        trace_id: str,
        *,
        thumbs: int | None = None,
        rating: int | None = None,
        comment: str | None = None,
        span_id: str | None = None,
        user_id: str | None = None,
    ) -> list[Score]:
        """Record user feedback on a trace (or one of its spans).

        ``thumbs`` is +1 or -1, ``rating`` 1..5; a comment alone is stored
        too. Raises ValueError for anything else (this is not the hot path:
        bad input must be reported, not silently stored).
        """
        scores = feedback_scores(trace_id, thumbs=thumbs, rating=rating, comment=comment,
                                 span_id=span_id, user_id=user_id)
        for score in scores:
            self.pipeline.put(Feedback(score))
        return scores

    # ---- lifecycle -------------------------------------------------------
    def stats(self) -> PipelineStats:
        return self.pipeline.stats()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything recorded so far is processed. True only if
        all of it is in the store: False on timeout, while anything waits in
        the spill file, or when a span was dropped, failed or refused by the
        store since the previous flush."""
        return self.pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Store what was recorded, stop the threads, call the shutdown hooks:
        all within one deadline (``[pipeline] shutdown_timeout_s``)."""
        if self._closed:
            return True
        self._closed = True
        started = time.monotonic()
        if timeout is None:
            timeout = self.exit_deadline_s()
        deadline = started + timeout
        if self._sampler is not None:
            self._sampler.stop(min(1.0, (deadline - started) / 4))
        ok = self.pipeline.stop(max(0.0, deadline - time.monotonic()))
        parts = self.pipeline.parts
        if parts is not None and not self.pipeline.alive:
            # Closing under a thread still inside a write would pull the
            # connection from under it; past the deadline it is left to exit.
            parts.store.close()
        _live_observers.discard(self)
        return ok

    def exit_deadline_s(self) -> float:
        """``[pipeline] shutdown_timeout_s``. The configuration is read by
        start-up, so an observer still starting (a process that exits soon
        after its first span) waits for it, at most the default deadline."""
        self.pipeline.wait_startup(self._shutdown_timeout)
        return self._shutdown_timeout

    def _after_fork_in_child(self) -> None:
        if self._closed:
            return
        self._sampler = None  # its thread is gone; the pipeline restarts its own
        self.pipeline.after_fork_in_child()
        if self.pipeline.parts is not None:
            self._start_sampler()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _SamplerThread(threading.Thread):
    """Calls the ``collect_samples`` hooks every ``interval_s`` and queues the samples."""

    def __init__(self, observer: Observer, interval_s: float) -> None:
        super().__init__(name="chainsight-sampler", daemon=True)
        self.observer = observer
        self.interval_s = max(0.05, interval_s)
        self._stop_event = threading.Event()

    def stop(self, timeout: float) -> None:
        self._stop_event.set()
        self.join(timeout)

    def run(self) -> None:
        dispatcher = self.observer.dispatcher
        while True:
            for name, function in dispatcher.implementations("collect_samples"):
                try:
                    ok, samples = dispatcher.guard(name, function, what="collect_samples")
                except Exception:  # strict mode re-raises: say it, as the worker does
                    log.exception("chainsight: collect_samples of plugin %r raised (strict mode); "
                                  "the sampler stops", name)
                    return
                if ok and samples:
                    for sample in samples:
                        self.observer.record_sample(sample)
            if self._stop_event.wait(self.interval_s):
                return


# ---- the process default ---------------------------------------------------

_live_observers: weakref.WeakSet[Observer] = weakref.WeakSet()
_default: Observer | None = None
_default_lock = threading.Lock()


def get_observer() -> Observer:
    """The process-wide observer, built on first use from the configuration
    (``CHAINSIGHT_CONFIG``, ./plugins.toml, ...). Thread-safe."""
    global _default
    observer = _default
    if observer is not None and not observer._closed:
        return observer
    with _default_lock:
        if _default is None or _default._closed:
            _default = Observer()
            _install_sigterm()
        return _default


def set_observer(observer: Observer | None) -> Observer | None:
    """Replace the process default (tests, embedding); returns the previous one."""
    global _default
    with _default_lock:
        previous, _default = _default, observer
    return previous


def _shutdown_all() -> None:
    """Every live observer, within one deadline (the longest configured)."""
    observers = list(_live_observers)
    if not observers:
        return
    started = time.monotonic()
    deadline = started + max(o.exit_deadline_s() for o in observers)
    for observer in observers:
        try:
            observer.shutdown(max(0.0, deadline - time.monotonic()))
        except Exception:
            log.exception("shutdown failed")


atexit.register(_shutdown_all)


# ---- fork and multiprocessing ------------------------------------------------
#
# A forked child has none of its parent's threads: each live observer starts a
# fresh queue and threads there. Children of ``multiprocessing`` leave through
# ``os._exit`` (atexit does not run), but run ``multiprocessing.util``'s
# finalizers first; its registry is cleared after the fork hooks run, so the
# finalizer is registered from ``register_after_fork``, armed before the fork.


def _after_fork_in_child() -> None:
    global _mp_finalizer_pid
    _mp_finalizer_pid = None
    for observer in list(_live_observers):
        try:
            observer._after_fork_in_child()
        except Exception:
            log.exception("could not restart an observer in a forked child")


def _before_fork() -> None:
    """A child forked while the worker imports the plugins would inherit the
    import locks that thread holds, and deadlock on its first import: let
    start-up finish first (it takes well under a second). A module that
    registers fork hooks of its own must not be imported first by start-up
    during this wait (its after-hook would run without its before-hook):
    ``concurrent.futures.thread``, which start-up imports, is imported with
    this module."""
    for observer in list(_live_observers):
        pipeline = observer.__dict__.get("pipeline")
        if pipeline is not None and not observer._closed:
            pipeline.wait_started(FORK_WAIT_S)
    if _live_observers and "multiprocessing.util" in sys.modules:
        _arm_multiprocessing()


_mp_armed = False
_mp_finalizer_pid: int | None = None


def _arm_multiprocessing() -> None:
    global _mp_armed
    if _mp_armed:
        return
    import multiprocessing.util

    multiprocessing.util.register_after_fork(_MP_TOKEN, lambda _token: _register_mp_finalizer())
    _mp_armed = True


def _register_mp_finalizer() -> None:
    """Shut every observer down when a ``multiprocessing`` child ends."""
    global _mp_finalizer_pid
    if _mp_finalizer_pid == os.getpid():
        return
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _shutdown_all, exitpriority=0)
    _mp_finalizer_pid = os.getpid()


def _watch_multiprocessing_child() -> None:
    """An observer built inside a ``multiprocessing`` child (fork or spawn)."""
    if "multiprocessing" not in sys.modules:
        return
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        _register_mp_finalizer()


class _Token:
    """A weak-referenceable key for ``register_after_fork``."""


_MP_TOKEN = _Token()
os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


def _install_sigterm() -> None:
    """Drain on SIGTERM, then die as SIGTERM would have. Only when nobody else
    handles it and we are on the main thread (signal handlers must be)."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_sigterm(signum: int, frame: object) -> None:
            _shutdown_all()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        pass
