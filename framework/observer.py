"""The Observer: the recorder users and adapters call, and its process default.

Everything on the caller's thread is O(1): build or finish a :class:`Span`,
append it to the pipeline's queue. No I/O, no plugin code, and no exception
ever reaches user code from here (internal errors are counted and logged).
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import inspect
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from framework.dispatch import GuardedDispatcher
from framework.model import Alert, PipelineStats, Sample, Score, Span
from framework.pipeline import Feedback, Pipeline, PipelineOptions, Registered
from framework.plugin_manager import PluginSet, load_plugins, plugin_name

if TYPE_CHECKING:
    from framework.config import Settings

log = logging.getLogger("chainsight")

F = TypeVar("F", bound=Callable[..., Any])

_current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "chainsight_current_span", default=None
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
    ) -> None:
        from framework.config import load_settings, resolve_plugin_configs
        from storage.writer import StoreWriter

        self.settings = settings if settings is not None else load_settings(config_path)
        options: dict[str, Any] = dict(self.settings.pipeline)
        options.update(pipeline or {})
        self.strict = bool(options.get("strict", False)) if strict is None else strict
        self.storage_url = storage_url or self.settings.storage_url
        max_content = int(
            self.settings.storage.get("max_content_bytes") or options.get("max_content_bytes", 32_768)
        )

        self.plugins: PluginSet = load_plugins(
            self.settings, strict=self.strict, builtins=builtins,
            entry_points=entry_points, extra=plugins,
        )
        self.dispatcher = GuardedDispatcher(
            self.plugins.pm, strict=self.strict, degrade_after=int(options.get("degrade_after", 5))
        )
        self.registered = Registered()
        # Effective options, visible to plugins from configure() on.
        self.pipeline_options = PipelineOptions.from_settings(options)
        failed = [i.name for i in self.plugins.infos if i.status == "failed"]
        self._configs = resolve_plugin_configs(self.settings, self.plugins.schemas, ignore=failed)
        self._configure_all()
        self._collect_registrations()

        self.writer = StoreWriter(self.storage_url, max_content_bytes=max_content)
        path = Path(spill_path) if spill_path is not None else self.settings.spill_path
        self.pipeline = Pipeline(
            self.writer, self.dispatcher, self.registered, self.pipeline_options, path,
        )
        self.internal_errors = 0
        self._closed = False
        self._sampler: _SamplerThread | None = None
        if self.registered.samplers:
            self._sampler = _SamplerThread(self)
            self._sampler.start()
        _live_observers.add(self)

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
            log.error("plugin %r failed to configure and is disabled: %s", name, exc)
            self.plugins.mark_failed(name, f"configure: {type(exc).__name__}: {exc}")
            self.dispatcher.refresh()

    def _collect_registrations(self) -> None:
        from framework.extension import Exporter, Notifier, Sampler, SpanCheck, TraceCheck

        seen: dict[str, set[str]] = {}

        def registrar(kind: str, accept: Callable[[object], None]) -> Callable[[object], None]:
            names = seen.setdefault(kind, set())

            def register(obj: object) -> None:
                name = getattr(obj, "name", None)
                if not isinstance(name, str) or not name:
                    raise TypeError(f"{kind} {obj!r} has no 'name'")
                if name in names:
                    log.warning("%s %r is already registered; ignoring the second one", kind, name)
                    return
                names.add(name)
                accept(obj)

            return register

        def accept_check(obj: object) -> None:
            is_span, is_trace = isinstance(obj, SpanCheck), isinstance(obj, TraceCheck)
            if not (is_span or is_trace):
                raise TypeError(f"check {obj!r} has neither check_span nor check_trace")
            if is_span:
                self.registered.span_checks.append(obj)
            if is_trace:
                self.registered.trace_checks.append(obj)

        def typed(protocol: type, target: list[Any], kind: str) -> Callable[[object], None]:
            def accept(obj: object) -> None:
                if not isinstance(obj, protocol):
                    raise TypeError(f"{kind} {obj!r} does not implement {protocol.__name__}")
                target.append(obj)

            return accept

        hooks: list[tuple[str, Callable[[object], None]]] = [
            ("register_checks", registrar("check", accept_check)),
            ("register_exporters", registrar("exporter", typed(Exporter, self.registered.exporters, "exporter"))),
            ("register_samplers", registrar("sampler", typed(Sampler, self.registered.samplers, "sampler"))),
            ("register_notifiers", registrar("notifier", typed(Notifier, self.registered.notifiers, "notifier"))),
        ]
        for hook, register in hooks:
            for impl in reversed(getattr(self.plugins.pm.hook, hook).get_hookimpls()):
                try:
                    impl.function(register)
                except Exception as exc:
                    if self.strict:
                        raise
                    log.error("plugin %r failed in %s: %s", impl.plugin_name, hook, exc)

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin after startup (it gets ``configure`` at once).

        Its ``register_*`` hooks are not replayed; register checks and
        exporters before the observer is built (pass ``plugins=[...]``).
        """
        name = self.plugins.register(plugin, name or plugin_name(plugin))
        self.dispatcher.refresh()
        for impl in self.plugins.pm.hook.configure.get_hookimpls():
            if impl.plugin_name == name:
                self._configure_one(name, impl.function, impl.argnames)
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
        without either it starts a new trace. Never raises."""
        try:
            if parent is not None:
                parent_id, trace_id = parent.span_id, parent.trace_id
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
        if thumbs is None and rating is None and not comment:
            raise ValueError("feedback needs thumbs, rating or comment")
        if thumbs is not None and thumbs not in (1, -1):
            raise ValueError(f"thumbs must be +1 or -1, got {thumbs!r}")
        if rating is not None and (isinstance(rating, bool) or rating not in range(1, 6)):
            raise ValueError(f"rating must be an integer from 1 to 5, got {rating!r}")
        if not trace_id:
            raise ValueError("feedback needs a trace_id")
        label = f"user:{user_id}" if user_id else None
        scores: list[Score] = []
        if thumbs is not None:
            scores.append(Score("thumbs", "feedback", trace_id, span_id, float(thumbs),
                                "up" if thumbs > 0 else "down", thumbs > 0, comment))
        if rating is not None:
            scores.append(Score("rating", "feedback", trace_id, span_id, float(rating),
                                label, rating >= 4, comment))
        if not scores:
            scores.append(Score("comment", "feedback", trace_id, span_id, None, label, None, comment))
        for score in scores:
            self.pipeline.put(Feedback(score))
        return scores

    # ---- lifecycle -------------------------------------------------------
    def stats(self) -> PipelineStats:
        return self.pipeline.stats()

    def flush(self, timeout: float = 5.0) -> bool:
        """Block until everything recorded so far is processed; False on timeout."""
        return self.pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Drain the queue, stop the worker, call shutdown hooks; one deadline."""
        if self._closed:
            return True
        self._closed = True
        if timeout is None:
            timeout = float(self.settings.pipeline.get("shutdown_timeout_s", 5.0))
        if self._sampler is not None:
            self._sampler.stop()
        ok = self.pipeline.stop(timeout)
        if not self.pipeline.alive:
            # Closing under a worker still inside a write would pull the
            # connection from under it; past the deadline it is left to exit.
            self.writer.close()
        _live_observers.discard(self)
        return ok

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


class _SamplerThread(threading.Thread):
    """Calls each registered sampler every ``interval_s`` and queues its samples."""

    def __init__(self, observer: Observer) -> None:
        super().__init__(name="chainsight-sampler", daemon=True)
        self.observer = observer
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2.0)

    def run(self) -> None:
        samplers = self.observer.registered.samplers
        due = {id(s): 0.0 for s in samplers}
        guard = self.observer.dispatcher.guard
        while not self._stop_event.is_set():
            now = time.monotonic()
            for sampler in samplers:
                if now >= due[id(sampler)]:
                    due[id(sampler)] = now + max(0.05, float(sampler.interval_s))
                    ok, samples = guard(sampler.name, sampler.sample, what="sample")
                    if ok and samples:
                        for sample in samples:
                            self.observer.record_sample(sample)
            wait = min(due.values()) - time.monotonic()
            self._stop_event.wait(max(0.01, wait))


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
    for observer in list(_live_observers):
        try:
            observer.shutdown()
        except Exception:
            log.exception("shutdown failed")


atexit.register(_shutdown_all)


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
