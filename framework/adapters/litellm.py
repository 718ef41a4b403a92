"""litellm adapter: every completion / acompletion / streaming / failed call
becomes one ``llm`` span.

Usage::

    import litellm
    from chainsight.framework import LitellmCallback

    callback = LitellmCallback()          # the process observer (get_observer())
    litellm.callbacks = [callback]
    litellm.completion(model="gpt-4o", messages=[...])
    ...
    callback.flush()                      # sync programs: before exit (optional)
    await callback.aflush()               # async programs: before the loop ends

Importing this module imports litellm (seconds, ~200 MB); ``import chainsight``
does not (``chainsight.LitellmCallback`` is resolved lazily).

How the span is built
    * ``log_pre_api_call`` runs on the caller's thread, in the caller's context
      (for ``acompletion`` in an executor thread with a copy of it): there the
      parent is looked up and kept by ``litellm_call_id``. The parent is the
      innermost of LangChain's active run (``var_child_runnable_config``, with
      a handler that has ``span_for_run``) and the manual span of
      ``observer.span()``; without either the call is a one-span trace.
    * The success / failure events (sync ones on litellm's logging threads,
      async ones on the loop through litellm's logging worker) read
      ``kwargs["standard_logging_object"]``: start/end, completion start
      (TTFT, only for streamed calls: for others litellm sets it to the end
      time), tokens (cached and reasoning from the usage details), model,
      provider, messages, response, finish reason, litellm's own cost (as the
      attribute ``litellm.response_cost``; ``cost_usd`` is set by the pricing
      plugin), the ``temperature`` and ``max_tokens`` the call set (as
      attributes, named as the LangChain adapter names them; replay reuses
      them), and for failures the litellm exception class.
    * One call can fire several end events (sync + async, stream + success):
      the first one ends the span, the rest are dropped by ``litellm_call_id``
      (a bounded set of recently ended ids).
    * ``chunk_count`` of a streamed call is the number of its chunks that
      carried output (text or a tool call; not the role-only or finish
      chunks), from litellm's per-chunk stream events. litellm sends them only
      for *sync* streams (``completion(stream=True)``), from its logging
      threads and possibly after the call's end event; so the sync end event
      of a stream (itself on a litellm logging thread, never the caller's)
      first waits until the chunks' text adds up to the response's (a stream
      of tool calls only: until no chunk came for ``STREAM_QUIET_S``), at
      most ``STREAM_WAIT_S``. An ``acompletion`` stream gets no chunk events:
      its ``chunk_count`` stays 0 (unknown), and its async end event never
      waits.
    * A call that failed without usage has no token counts (and so no cost):
      nothing says the provider counted or charged its prompt.
    * A root span's user, session and tags default to the process's
      (``CHAINSIGHT_USER``...; the observer fills them), litellm's own
      ``user`` / ``metadata`` win, and request tags are added to them.

Zero-code tracing adds a :class:`GlobalLitellmCallback` with
:func:`add_global_callback`; it leaves every call alone while an explicit
``LitellmCallback`` is registered with litellm (one span per call).

The callbacks only build a Span and enqueue it: no serialisation, no I/O.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from litellm.integrations.custom_logger import CustomLogger

from chainsight.framework.model import Span
from chainsight.framework.observer import current_span

if TYPE_CHECKING:
    from chainsight.framework.observer import Observer

log = logging.getLogger("chainsight.litellm")

RECENT_CALLS: Final = 10_000
"""How many ended call ids are remembered to drop duplicate events."""
PENDING_CALLS: Final = 10_000
"""How many started-but-not-ended calls are tracked (parents, flush)."""
STREAM_QUIET_S: Final = 0.1
"""A sync stream of tool calls only is taken as complete when no chunk event came for this long."""
STREAM_WAIT_S: Final = 2.0
"""The longest a sync stream's end event waits for its chunk events."""


def _ns(value: Any) -> int | None:
    """A litellm time (float epoch seconds or datetime) as epoch nanoseconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return int(value * 1e9)
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1e9)
    return None


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def langchain_parent() -> Span | None:
    """The span of the LangChain run active in this context, if any.

    Only looks when langchain_core is already imported (never imports it).
    """
    module = sys.modules.get("langchain_core.runnables.config")
    if module is None:
        return None
    var = getattr(module, "var_child_runnable_config", None)
    if var is None:
        return None
    config = var.get()
    if not config:
        return None
    callbacks = config.get("callbacks")
    if callbacks is None:
        return None
    run_id = getattr(callbacks, "parent_run_id", None)
    if run_id is None:
        return None
    handlers = getattr(callbacks, "handlers", None)
    if handlers is None and isinstance(callbacks, list):
        handlers = callbacks
    for handler in handlers or ():
        span_for_run = getattr(handler, "span_for_run", None)
        if span_for_run is not None:
            span = span_for_run(run_id)
            if span is not None:
                return span
    return None


def find_parent() -> Span | None:
    """The innermost enclosing span: LangChain's active run or ``observer.span()``.

    Both are ancestors of the code running now, so the one that started later
    is the deeper one.
    """
    manual = current_span()
    try:
        chain = langchain_parent()
    except Exception:  # a foreign handler misbehaving must not break the call
        log.debug("LangChain parent lookup failed", exc_info=True)
        chain = None
    if chain is None:
        return manual
    if manual is None or manual.end_ns is not None:
        return chain
    return chain if chain.start_ns >= manual.start_ns else manual


@dataclass
class _StreamSeen:
    """Output-carrying chunk events of one streamed call, per source (sync, async):
    each chunk may be reported by both, so the larger count is the real one."""

    chunks: list[int] = field(default_factory=lambda: [0, 0])
    chars: list[int] = field(default_factory=lambda: [0, 0])


class LitellmCallback(CustomLogger):
    """A litellm ``CustomLogger`` that records each call as an ``llm`` span.

    ``observer``: where spans go (default: :func:`chainsight.get_observer`, looked
    up at the first event). ``capture_content``: record messages and the
    response (False: timings, tokens and cost only).
    """

    def __init__(self, observer: Observer | None = None, *, capture_content: bool = True) -> None:
        super().__init__()
        self._observer = observer
        self.capture_content = capture_content
        self._lock = threading.Condition(threading.Lock())
        # call id -> parent span (or None) captured in the caller's context
        self._pending: OrderedDict[str, Span | None] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()
        # call id -> [sync, async] chunk events seen (a chunk may fire both)
        self._chunks: OrderedDict[str, _StreamSeen] = OrderedDict()
        self._chunk_seen = threading.Condition(threading.Lock())
        self.spans_recorded = 0
        self.duplicates_dropped = 0
        self.internal_errors = 0

    @property
    def observer(self) -> Observer:
        if self._observer is None:
            from chainsight.framework.observer import get_observer

            self._observer = get_observer()
        return self._observer

    # ---- litellm hooks (names and parameters are litellm's contract) -------
    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        try:
            self._started(kwargs)
        except Exception:
            self.internal_errors += 1
            log.debug("litellm pre-call hook failed", exc_info=True)

    async def async_log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        self.log_pre_api_call(model, messages, kwargs)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        if kwargs.get("stream"):
            self._await_chunks(kwargs.get("litellm_call_id"), response_obj)
        self._record(kwargs, response_obj, start_time, end_time, failed=False)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, start_time, end_time, failed=False)

    def log_stream_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._chunk(kwargs, response_obj, 0)

    async def async_log_stream_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._chunk(kwargs, response_obj, 1)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._record(kwargs, response_obj, start_time, end_time, failed=True)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._record(kwargs, response_obj, start_time, end_time, failed=True)

    # ---- bookkeeping ------------------------------------------------------
    def _started(self, kwargs: Mapping[str, Any]) -> None:
        call_id = kwargs.get("litellm_call_id")
        if not call_id:
            return
        parent = find_parent()
        with self._lock:
            if call_id in self._ended or call_id in self._pending:
                return
            self._pending[call_id] = parent
            while len(self._pending) > PENDING_CALLS:
                self._pending.popitem(last=False)

    def _chunk(self, kwargs: Any, chunk: Any, source: int) -> None:
        """Count one chunk event of a streamed call that carried output (text
        or a tool call); ``source`` 0: the sync event, 1: the async one."""
        try:
            call_id = kwargs.get("litellm_call_id")
            delta = _get(_first_choice(chunk), "delta")
            text, calls = _get(delta, "content"), _get(delta, "tool_calls")
            if not call_id or not (text or calls):
                return  # a role-only or finish chunk
            with self._chunk_seen:
                seen = self._chunks.get(call_id)
                if seen is None:
                    seen = self._chunks[call_id] = _StreamSeen()
                    while len(self._chunks) > PENDING_CALLS:
                        self._chunks.popitem(last=False)
                seen.chunks[source] += 1
                seen.chars[source] += len(text) if isinstance(text, str) else 0
                self._chunk_seen.notify_all()
        except Exception:
            self.internal_errors += 1
            log.debug("litellm stream event could not be counted", exc_info=True)

    def _await_chunks(self, call_id: Any, response_obj: Any) -> None:
        """On litellm's logging thread, before a sync stream's end event is
        recorded: wait until the chunk events carrying its text have arrived
        (their characters add up to the response's), or for a stream without
        text (tool calls) until they have stopped for STREAM_QUIET_S; at most
        STREAM_WAIT_S."""
        if not call_id:
            return
        message = _get(_first_choice(response_obj), "message")
        text = _get(message, "content")
        expected = len(text) if isinstance(text, str) else 0
        deadline = time.monotonic() + STREAM_WAIT_S
        with self._chunk_seen:
            count, changed = 0, time.monotonic()
            while True:
                now = time.monotonic()
                seen = self._chunks.get(call_id)
                if expected and seen is not None and max(seen.chars) >= expected:
                    return
                if seen is not None and max(seen.chunks) != count:
                    count, changed = max(seen.chunks), now
                until = changed + STREAM_QUIET_S if count and not expected else deadline
                if now >= min(until, deadline):
                    return
                self._chunk_seen.wait(min(until, deadline) - now)

    def _claim(self, call_id: str) -> tuple[bool, Span | None, bool, int]:
        """(first end event?, parent, parent known?, chunks streamed) for this call id."""
        with self._chunk_seen:
            seen = self._chunks.pop(call_id, None)
        with self._lock:
            if call_id in self._ended:
                return False, None, False, 0
            self._ended[call_id] = None
            while len(self._ended) > RECENT_CALLS:
                self._ended.popitem(last=False)
            known = call_id in self._pending
            parent = self._pending.pop(call_id, None)
            if not self._pending:
                self._lock.notify_all()
            return True, parent, known, max(seen.chunks) if seen is not None else 0

    def _record(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any, *, failed: bool) -> None:
        try:
            slo = kwargs.get("standard_logging_object")
            if not slo:
                return  # not a final event (stream chunks, pre-payload hooks)
            call_id = kwargs.get("litellm_call_id") or slo.get("litellm_call_id") or slo.get("id")
            if not call_id:
                return
            first, parent, known, chunks = self._claim(str(call_id))
            if not first:
                self.duplicates_dropped += 1
                return
            if not known:
                # No pre-call event seen (e.g. the call failed before it): this
                # event may still run in the caller's context (sync failures do).
                parent = find_parent()
            self._emit(kwargs, slo, response_obj, start_time, end_time, parent, failed, chunks)
        except Exception:
            self.internal_errors += 1
            log.debug("litellm event could not be recorded", exc_info=True)

    def _emit(
        self,
        kwargs: Mapping[str, Any],
        slo: Mapping[str, Any],
        response_obj: Any,
        start_time: Any,
        end_time: Any,
        parent: Span | None,
        failed: bool,
        chunks: int = 0,
    ) -> None:
        observer = self.observer
        start_ns = _ns(slo.get("startTime")) or _ns(start_time) or time.time_ns()
        end_ns = _ns(slo.get("endTime")) or _ns(end_time) or time.time_ns()
        model = slo.get("model") or kwargs.get("model")
        provider = slo.get("custom_llm_provider")
        call_type = slo.get("call_type") or "completion"
        span = observer.start_span(
            f"litellm.{call_type}",
            "llm",
            parent=parent,
            start_ns=start_ns,
            model=model,
            provider=provider,
        )
        if slo.get("stream"):
            first_ns = _ns(slo.get("completionStartTime"))
            if first_ns is not None and start_ns <= first_ns <= end_ns:
                span.first_token_ns = first_ns
            span.chunk_count = chunks

        usage = _usage(slo, response_obj)
        prompt = slo.get("prompt_tokens")
        completion = slo.get("completion_tokens")
        if prompt or completion or not failed:
            span.input_tokens = int(prompt or 0)
            span.output_tokens = int(completion or 0)
        # else: failed without usage: no tokens, so no cost (token_estimate
        # leaves a failed span that produced nothing alone too)
        cached = _get(_get(usage, "prompt_tokens_details"), "cached_tokens")
        if cached is None:
            cached = _get(usage, "cache_read_input_tokens")
        if cached:
            span.cached_tokens = int(cached)
        reasoning = _get(_get(usage, "completion_tokens_details"), "reasoning_tokens")
        if reasoning:
            span.reasoning_tokens = int(reasoning)

        attributes: dict[str, Any] = {"litellm.call_id": slo.get("litellm_call_id")}
        response_cost = slo.get("response_cost")
        if response_cost is not None and not failed:
            attributes["litellm.response_cost"] = response_cost
        if slo.get("cache_hit"):
            attributes["litellm.cache_hit"] = True
        if slo.get("api_base"):
            attributes["litellm.api_base"] = slo.get("api_base")
        parameters = slo.get("model_parameters") or {}
        for name in ("temperature", "max_tokens"):  # as the LangChain adapter records them
            if parameters.get(name) is not None:
                attributes[name] = parameters[name]

        response = slo.get("response")
        choice = _first_choice(response)
        finish = _get(choice, "finish_reason")
        if finish:
            attributes["finish_reason"] = finish
        span.attributes = attributes

        if slo.get("end_user"):
            span.user_id = slo.get("end_user")
        elif kwargs.get("user"):
            span.user_id = kwargs.get("user")
        if parent is not None and span.user_id is None:
            span.user_id = parent.user_id
        session = slo.get("session_id")
        if session:
            span.session_id = session
        elif parent is not None:
            span.session_id = parent.session_id
        tags = slo.get("request_tags")
        if tags:
            span.tags = [*(span.tags or ()), *(str(t) for t in tags if str(t) not in (span.tags or ()))]

        if self.capture_content:
            messages = slo.get("messages")
            span.inputs = messages if messages is not None else kwargs.get("messages")
            if not failed:
                message = _get(choice, "message")
                span.outputs = message if message is not None else response

        error: str | None = None
        if failed:
            info = slo.get("error_information") or {}
            span.error_type = info.get("error_class") or _exception_type(kwargs)
            error = slo.get("error_str") or info.get("error_message") or span.error_type or "error"
        self.spans_recorded += 1
        observer.end_span(span, error=error, end_ns=end_ns)

    # ---- flushing ---------------------------------------------------------
    def pending(self) -> int:
        """Calls whose pre-call event was seen but no end event yet."""
        with self._lock:
            return len(self._pending)

    def wait_pending(self, timeout: float = 5.0) -> bool:
        """Block until every started call has ended (its end event recorded)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Sync programs: wait for litellm's logging threads to deliver the end
        events of the calls made so far, then for the observer to process the
        spans. Returns False on timeout. Calls never finished (a stream not
        consumed) make it wait the whole timeout. In async code use
        :meth:`aflush` (async events need the running loop)."""
        deadline = time.monotonic() + max(0.0, timeout)
        ok = self.wait_pending(timeout)
        return self.observer.flush(max(0.0, deadline - time.monotonic())) and ok

    async def aflush(self, timeout: float = 5.0) -> bool:
        """Async programs: await litellm's logging worker (GLOBAL_LOGGING_WORKER),
        which runs the async success/failure callbacks as background tasks,
        then wait for the observer. Call it before the event loop ends
        (``asyncio.run`` returning cancels those tasks and their spans are
        lost). Returns False on timeout."""
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        for _ in range(3):  # let just-finished calls schedule their logging tasks
            await asyncio.sleep(0)
        ok = True
        try:
            await asyncio.wait_for(GLOBAL_LOGGING_WORKER.flush(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            ok = False
        remaining = max(0.0, deadline - loop.time())
        ok = await asyncio.to_thread(self.wait_pending, remaining) and ok
        remaining = max(0.0, deadline - loop.time())
        return await asyncio.to_thread(self.observer.flush, remaining) and ok


def recorded_completion(callback: LitellmCallback, *, timeout: float, end_wait_s: float = 5.0,
                        **kwargs: Any) -> Any:
    """``litellm.completion(**kwargs)`` recorded by ``callback`` alone; raises
    what litellm raises (the failed call is recorded as an error span).

    * ``timeout``: the limit on the call, in seconds (required: litellm's
      default is 600 s).
    * The call's end event may come after it returned (litellm's logging
      threads): this returns (or raises) once the call's span has ended, at
      most ``end_wait_s`` later, so a span opened around the call ends after
      it. ``callback.wait_pending(0)`` then says whether it did (False: its
      end was not recorded).
    * litellm adds a per-call callback to its global callback lists for good;
      ``callback`` is taken out of them again afterwards (unless it was there
      before), so later calls in the process are not recorded by it.

    Replay's call: it also turns off litellm's debug hints, which it prints on
    stdout (in the TUI, the screen) when a call fails."""
    import litellm

    litellm.suppress_debug_info = True
    manager = litellm.logging_callback_manager
    registered = any(c is callback for c in manager.get_all_callbacks())
    try:
        return litellm.completion(callbacks=[callback], timeout=timeout, **kwargs)
    finally:
        callback.wait_pending(end_wait_s)
        if not registered:
            manager.remove_callback_from_all_lists(callback)


def _usage(slo: Mapping[str, Any], response_obj: Any) -> Any:
    usage = _get(slo.get("metadata"), "usage_object")
    if usage:
        return usage
    hidden = slo.get("hidden_params")
    usage = _get(hidden, "usage_object")
    if usage:
        return usage
    return _get(response_obj, "usage")


def _first_choice(response: Any) -> Any:
    choices = _get(response, "choices")
    if isinstance(choices, list | tuple) and choices:
        return choices[0]
    return None


def _exception_type(kwargs: Mapping[str, Any]) -> str | None:
    exc = kwargs.get("exception")
    return type(exc).__name__ if isinstance(exc, BaseException) else None


# ---- zero-code tracing ---------------------------------------------------------

# The lists litellm dispatches events from that are public: a LitellmCallback
# in litellm.callbacks is copied into the others at the next call, and stays
# there when litellm.callbacks is reassigned.
_PUBLIC_LISTS = ("callbacks", "input_callback", "success_callback", "failure_callback")


class GlobalLitellmCallback(LitellmCallback):
    """The callback zero-code tracing adds to litellm: a :class:`LitellmCallback`
    that records a call only while no explicit ``LitellmCallback`` is
    registered with litellm, so a call is one span either way."""

    def _started(self, kwargs: Mapping[str, Any]) -> None:
        if not explicit_callback_registered():
            super()._started(kwargs)

    def _record(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any, *, failed: bool) -> None:
        if explicit_callback_registered():
            call_id = kwargs.get("litellm_call_id")
            if call_id:
                self._claim(str(call_id))  # forget it, so flush() does not wait for it
            return
        super()._record(kwargs, response_obj, start_time, end_time, failed=failed)


def explicit_callback_registered() -> bool:
    """Whether a LitellmCallback other than the global one is in litellm's callback lists."""
    import litellm

    for name in _PUBLIC_LISTS:
        for callback in getattr(litellm, name, None) or ():
            if isinstance(callback, LitellmCallback) and not isinstance(callback, GlobalLitellmCallback):
                return True
    return False


def add_global_callback(observer: Observer | None = None) -> GlobalLitellmCallback:
    """Add a :class:`GlobalLitellmCallback` to litellm: to ``litellm.callbacks``
    and, as litellm itself does at a call's set-up, to the lists it dispatches
    from (so an application that later assigns ``litellm.callbacks = [...]``
    does not drop it)."""
    import litellm

    callback = GlobalLitellmCallback(observer)
    manager = litellm.logging_callback_manager
    manager.add_litellm_callback(callback)
    manager.add_litellm_input_callback(callback)
    manager.add_litellm_success_callback(callback)
    manager.add_litellm_failure_callback(callback)
    manager.add_litellm_async_success_callback(callback)
    manager.add_litellm_async_failure_callback(callback)
    return callback


def remove_global_callback(callback: GlobalLitellmCallback) -> None:
    """Take ``callback`` out of every litellm callback list."""
    import litellm

    litellm.logging_callback_manager.remove_callback_from_all_lists(callback)


__all__ = [
    "GlobalLitellmCallback",
    "LitellmCallback",
    "add_global_callback",
    "explicit_callback_registered",
    "find_parent",
    "langchain_parent",
    "recorded_completion",
    "remove_global_callback",
]
