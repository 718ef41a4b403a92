"""LangChain callback handlers: every LangChain run becomes a :class:`Span`.

Usage::

    from chainsight.framework import CallbackHandler
    chain.invoke(x, config={"callbacks": [CallbackHandler(user_id="u1")]})

Design (see docs/ARCHITECTURE.md):

* Parentage comes only from ``run_id``/``parent_run_id``. The span id is
  ``run_id.hex``; a root run (or one whose parent this handler never saw, e.g.
  a handler attached mid-tree) starts a trace with a fresh time-ordered id,
  and every child inherits its parent's trace id.
* The callbacks do O(1) work on the caller's thread: build or finish a span,
  keep *references* to inputs and outputs (messages, documents, dicts) and hand
  the span to the observer's queue. Serialising, token estimation
  (``chainsight.plugins.token_estimate``), pricing and every plugin run on the pipeline
  worker.
* One handler may be shared by any number of threads and asyncio tasks. The
  only shared state is ``self._runs`` (run id -> open span); LangChain's run
  ids are unique, so concurrent callbacks touch distinct keys, and ``dict``
  get/set/pop are atomic under the GIL: no lock is needed. A span object is
  only mutated by the callbacks of its own run (plus ``list.append`` for
  events, also atomic), and the pipeline owns it once it ended.
* A span ends exactly once, on its run's ``*_end``/``*_error`` (popping it
  from ``_runs`` makes a repeated end a no-op); ``on_agent_action`` /
  ``on_agent_finish`` only annotate it.
* No callback ever raises into the user's chain: internal errors are counted
  (``internal_errors``) and logged at debug level.

Zero-code tracing (``CHAINSIGHT_TRACING=true``, :func:`chainsight.instrument`):
:func:`enable_global_tracing` registers :class:`TracingHandler` with
LangChain's own global-handler mechanism, ``register_configure_hook``, the
way LangChain switches its tracers on: a context variable (never set here)
plus an environment variable, ``CHAINSIGHT_TRACING``. While that variable is
set, LangChain builds a ``TracingHandler`` for every top-level run in any
thread, and every child run inherits it, so the nesting is exactly the
explicit handler's. A run that an explicit Chainsight handler also records is
left to it (see ``_Claims``): one span per run either way.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler as _LCAsyncHandler
from langchain_core.callbacks import BaseCallbackHandler

from chainsight.framework.model import Span
from chainsight.framework.process_context import process_context

if TYPE_CHECKING:
    from langchain_core.agents import AgentAction, AgentFinish
    from langchain_core.documents import Document
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

    from chainsight.framework.observer import Observer

__all__ = ["AsyncCallbackHandler", "CallbackHandler", "TracingHandler", "enable_global_tracing"]

log = logging.getLogger("chainsight.langchain")

# run_type values LangChain passes to on_chain_start -> span kind
_KINDS: dict[str | None, str] = {
    None: "chain", "chain": "chain", "prompt": "prompt", "parser": "parser",
    "tool": "tool", "retriever": "retriever", "llm": "llm", "agent": "agent",
    "embedding": "embedding",
}
# LangGraph control-flow exceptions (interrupts, Command(goto=...)) are not failures.
_CONTROL_FLOW = frozenset({"GraphBubbleUp", "GraphInterrupt", "ParentCommand"})


def _name(serialized: dict[str, Any] | None, kwargs: dict[str, Any], default: str) -> str:
    name = kwargs.get("name")
    if name:
        return str(name)
    if serialized:
        name = serialized.get("name")
        if name:
            return str(name)
        ident = serialized.get("id")
        if ident:
            return str(ident[-1])
    return default


class _Claims:
    """Which Chainsight handler records a run while global tracing is on.

    An explicit handler (passed in ``config``) always records its runs; the
    global one (:class:`TracingHandler`) records a run only if no explicit
    handler does. Both see every run they share in the same callback loop,
    in either order: at a top-level run the explicit handler comes first
    (``explicit`` tells the global one to leave the run alone); for an
    explicit handler passed to a nested call the global one, inherited,
    comes first (its span is ``tentative`` until the explicit handler claims
    the run and drops it, before anything was enqueued). LangChain calls a
    run's handlers one after the other on one thread, and these are plain
    set/dict operations, atomic under the GIL.
    """

    def __init__(self) -> None:
        # Once on, it stays on: global handlers LangChain built before
        # uninstrument() may still be running.
        self.active = False
        self.explicit: set[int] = set()
        self.tentative: dict[int, _Recorder] = {}


_claims = _Claims()


class _Recorder:
    """The span bookkeeping shared by the sync and async handlers."""

    _observer: Observer | None
    _global = False  # TracingHandler: yields runs that an explicit handler records

    def __init__(
        self,
        observer: Observer | None = None,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._observer = observer
        # Keyed by ``run_id.int``: UUID.__hash__ is Python code, three calls a span.
        self._runs: dict[int, Span] = {}
        # The process's CHAINSIGHT_USER / _SESSION / _TAGS are the defaults.
        context = process_context()
        self._user_id = user_id if user_id is not None else context.user_id
        self._session_id = session_id if session_id is not None else context.session_id
        tags = [*context.tags, *(t for t in tags or () if t not in context.tags)]
        self._tags = tags or None
        self._metadata = dict(metadata) if metadata else None
        self.internal_errors = 0

    # ---- public --------------------------------------------------------
    @property
    def observer(self) -> Observer:
        """The observer spans go to (the process default unless one was given)."""
        observer = self._observer
        if observer is None:
            from chainsight.framework.observer import get_observer

            observer = self._observer = get_observer()
        return observer

    def span_for_run(self, run_id: UUID) -> Span | None:
        """The open span of LangChain run ``run_id`` (None once it ended or if unseen).

        Adapters use it to nest their own spans (a litellm call made inside a
        LangChain run) under the run that is active in LangChain's context.
        """
        return self._runs.get(run_id.int)

    @property
    def open_runs(self) -> int:
        """How many runs started and have not ended yet (tests, diagnostics)."""
        return len(self._runs)

    # ---- start / end -----------------------------------------------------
    def _start(
        self,
        name: str,
        kind: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        inputs: Any,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
    ) -> Span | None:
        """The run's new span; None when the run is left to another handler."""
        key = run_id.int
        if self._global:
            if key in _claims.explicit:
                return None
            _claims.tentative[key] = self
        elif _claims.active:
            _claims.explicit.add(key)
            other = _claims.tentative.pop(key, None)
            if other is not None:
                other._runs.pop(key, None)
        parent = self._runs.get(parent_run_id.int) if parent_run_id is not None else None
        if parent is not None:
            span = Span(name, kind, span_id=f"{run_id.int:032x}", trace_id=parent.trace_id,
                        parent_id=parent.span_id)
            user_id, session_id = parent.user_id, parent.session_id
        else:
            # A fresh trace id (time-ordered, see framework.model.new_ordered_id).
            span = Span(name, kind, span_id=f"{run_id.int:032x}")
            user_id, session_id = self._user_id, self._session_id
            if self._tags:
                tags = self._tags + [t for t in tags or () if t not in self._tags]
            if self._metadata:
                metadata = {**self._metadata, **(metadata or {})}
        if metadata:
            span.metadata = metadata
            user_id = metadata.get("user_id", user_id)
            session_id = metadata.get("session_id", session_id)
        if user_id is not None:
            span.user_id = str(user_id)
        if session_id is not None:
            span.session_id = str(session_id)
        if tags:
            span.tags = tags
        if inputs is not None:
            span.inputs = inputs
        self._runs[key] = span
        return span

    def _end(self, run_id: UUID, outputs: Any = None, error: BaseException | None = None) -> Span | None:
        key = run_id.int
        span = self._runs.pop(key, None)
        if self._global:
            _claims.tentative.pop(key, None)
        else:
            _claims.explicit.discard(key)
        if span is None:
            return None
        if error is not None and not _CONTROL_FLOW.isdisjoint(c.__name__ for c in type(error).__mro__):
            span.set_attribute("control_flow", type(error).__name__)
            error = None
        self.observer.end_span(span, outputs=outputs, error=error)
        return span

    def _failed(self, what: str) -> None:
        self.internal_errors += 1
        log.debug("chainsight LangChain handler failed in %s", what, exc_info=True)

    def _event(self, run_id: UUID | None, name: str, **data: Any) -> None:
        span = self._runs.get(run_id.int) if run_id is not None else None
        if span is None:
            return
        if span.attributes is None:
            span.attributes = {}
        events = span.attributes.get("events")
        if events is None:
            events = span.attributes["events"] = []
        data["name"] = name
        data["time_ns"] = time.time_ns()
        events.append(data)

    # ---- chains --------------------------------------------------------
    def _chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        try:
            run_type = kwargs.get("run_type")
            self._start(
                _name(serialized, kwargs, "chain"), _KINDS.get(run_type, "chain"),
                run_id, parent_run_id, inputs, tags, metadata,
            )
        except Exception:
            self._failed("on_chain_start")

    def _chain_end(self, outputs: Any, run_id: UUID, kwargs: dict[str, Any]) -> None:
        try:
            late_inputs = kwargs.get("inputs")  # streaming runs send their inputs at the end
            if late_inputs is not None:
                span = self._runs.get(run_id.int)
                if span is not None:
                    span.inputs = late_inputs
            self._end(run_id, outputs)
        except Exception:
            self._failed("on_chain_end")

    def _error(self, error: BaseException, run_id: UUID, kwargs: dict[str, Any]) -> None:
        try:
            late_inputs = kwargs.get("inputs")
            if late_inputs is not None:
                span = self._runs.get(run_id.int)
                if span is not None and span.inputs is None:
                    span.inputs = late_inputs
            self._end(run_id, None, error)
        except Exception:
            self._failed("on_*_error")

    def _agent_action(self, action: AgentAction, run_id: UUID) -> None:
        try:
            span = self._runs.get(run_id.int)
            if span is not None and span.kind == "chain":
                span.kind = "agent"
            self._event(run_id, "agent_action", tool=action.tool, tool_input=action.tool_input,
                        log=action.log)
        except Exception:
            self._failed("on_agent_action")

    def _agent_finish(self, finish: AgentFinish, run_id: UUID) -> None:
        try:
            span = self._runs.get(run_id.int)
            if span is not None and span.kind == "chain":
                span.kind = "agent"
            self._event(run_id, "agent_finish", return_values=finish.return_values, log=finish.log)
        except Exception:
            self._failed("on_agent_finish")

    # ---- models --------------------------------------------------------
    def _llm_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: list[str] | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        try:
            span = self._start(_name(serialized, kwargs, "llm"), "llm", run_id, parent_run_id,
                               inputs, tags, metadata)
            if span is None:
                return
            params = kwargs.get("invocation_params") or {}
            md = metadata or {}
            model = params.get("model") or params.get("model_name") or md.get("ls_model_name")
            if model:
                span.model = str(model)
            provider = md.get("ls_provider")
            if provider:
                span.provider = str(provider)
            temperature = params.get("temperature", md.get("ls_temperature"))
            max_tokens = params.get("max_tokens", md.get("ls_max_tokens"))
            if temperature is not None or max_tokens is not None:
                span.attributes = {"temperature": temperature, "max_tokens": max_tokens}
        except Exception:
            self._failed("on_llm_start")

    def _new_token(self, run_id: UUID) -> None:
        span = self._runs.get(run_id.int)
        if span is not None:
            if span.first_token_ns is None:
                span.first_token_ns = time.time_ns()
            span.chunk_count += 1

    def _llm_end(self, response: LLMResult, run_id: UUID) -> None:
        try:
            span = self._runs.get(run_id.int)
            if span is None:
                return
            outputs: Any = None
            generations = response.generations
            generation = generations[0][0] if generations and generations[0] else None
            message: BaseMessage | None = getattr(generation, "message", None)
            usage: Any = None
            if message is not None:
                outputs = message
                usage = getattr(message, "usage_metadata", None)
                tool_calls = getattr(message, "tool_calls", None)
                if tool_calls:
                    span.set_attribute("tool_calls", tool_calls)
                meta = message.response_metadata
                if meta:
                    finish = meta.get("finish_reason") or meta.get("stop_reason")
                    if finish:
                        span.set_attribute("finish_reason", finish)
                    if span.model is None:
                        model = meta.get("model_name") or meta.get("model")
                        if model:
                            span.model = str(model)
            elif generation is not None:
                outputs = generation.text
            if generation is not None and generation.generation_info:
                finish = generation.generation_info.get("finish_reason")
                if finish:
                    span.set_attribute("finish_reason", finish)
            if usage:
                span.input_tokens = usage.get("input_tokens")
                span.output_tokens = usage.get("output_tokens")
                details = usage.get("input_token_details")
                if details and details.get("cache_read") is not None:
                    span.cached_tokens = details["cache_read"]
                details = usage.get("output_token_details")
                if details and details.get("reasoning") is not None:
                    span.reasoning_tokens = details["reasoning"]
                if usage.get("total_cost") == 0:  # how LangChain marks an answer from its cache
                    span.set_attribute("langchain.cache_hit", True)
            llm_output = response.llm_output
            if llm_output:
                if span.model is None:
                    model = llm_output.get("model_name") or llm_output.get("model")
                    if model:
                        span.model = str(model)
                legacy = llm_output.get("token_usage")
                if not usage and legacy:  # pre-usage_metadata integrations (OpenAI style)
                    span.input_tokens = legacy.get("prompt_tokens")
                    span.output_tokens = legacy.get("completion_tokens")
            self._end(run_id, outputs)
        except Exception:
            self._failed("on_llm_end")
            try:
                self._end(run_id)  # still end it, without the details that failed
            except Exception:
                self._failed("on_llm_end")


class CallbackHandler(_Recorder, BaseCallbackHandler):
    """Records every LangChain run as a span (sync; thread-safe; shareable).

    ``run_inline = True``: in async chains LangChain calls it directly on the
    event loop instead of handing each event to a thread pool, which keeps
    events in order and costs nothing extra (the callbacks never block).
    """

    run_inline = True
    raise_error = False

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       parent_run_id: UUID | None = None, tags: list[str] | None = None,
                       metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._chain_start(serialized, inputs, run_id, parent_run_id, tags, metadata, kwargs)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        self._chain_end(outputs, run_id, kwargs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID,
                       parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._error(error, run_id, kwargs)

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]], *,
                            run_id: UUID, parent_run_id: UUID | None = None,
                            tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                            **kwargs: Any) -> None:
        self._llm_start(serialized, messages[0] if len(messages) == 1 else messages, run_id,
                        parent_run_id, tags, metadata, kwargs)

    def on_llm_start(self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
                     parent_run_id: UUID | None = None, tags: list[str] | None = None,
                     metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._llm_start(serialized, prompts[0] if len(prompts) == 1 else prompts, run_id,
                        parent_run_id, tags, metadata, kwargs)

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            self._new_token(run_id)
        except Exception:
            self._failed("on_llm_new_token")

    def on_llm_end(self, response: LLMResult, *, run_id: UUID,
                   parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._llm_end(response, run_id)

    def on_llm_error(self, error: BaseException, *, run_id: UUID,
                     parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._error(error, run_id, kwargs)

    def on_tool_start(self, serialized: dict[str, Any] | None, input_str: str, *, run_id: UUID,
                      parent_run_id: UUID | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None, inputs: dict[str, Any] | None = None,
                      **kwargs: Any) -> None:
        try:
            self._start(_name(serialized, kwargs, "tool"), "tool", run_id, parent_run_id,
                        inputs if inputs is not None else input_str, tags, metadata)
        except Exception:
            self._failed("on_tool_start")

    def on_tool_end(self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                    **kwargs: Any) -> None:
        try:
            self._end(run_id, output)
        except Exception:
            self._failed("on_tool_end")

    def on_tool_error(self, error: BaseException, *, run_id: UUID,
                      parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._error(error, run_id, kwargs)

    def on_retriever_start(self, serialized: dict[str, Any] | None, query: str, *, run_id: UUID,
                           parent_run_id: UUID | None = None, tags: list[str] | None = None,
                           metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        try:
            self._start(_name(serialized, kwargs, "retriever"), "retriever", run_id,
                        parent_run_id, query, tags, metadata)
        except Exception:
            self._failed("on_retriever_start")

    def on_retriever_end(self, documents: Sequence[Document], *, run_id: UUID,
                         parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        try:
            self._end(run_id, documents)
        except Exception:
            self._failed("on_retriever_end")

    def on_retriever_error(self, error: BaseException, *, run_id: UUID,
                           parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._error(error, run_id, kwargs)

    def on_agent_action(self, action: AgentAction, *, run_id: UUID,
                        parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._agent_action(action, run_id)

    def on_agent_finish(self, finish: AgentFinish, *, run_id: UUID,
                        parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        self._agent_finish(finish, run_id)

    def on_retry(self, retry_state: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                 **kwargs: Any) -> None:
        try:
            outcome = getattr(retry_state, "outcome", None)
            exc = outcome.exception() if outcome is not None and outcome.failed else None
            self._event(run_id, "retry", attempt=getattr(retry_state, "attempt_number", None),
                        error=repr(exc) if exc is not None else None)
        except Exception:
            self._failed("on_retry")

    def on_text(self, text: str, *, run_id: UUID, parent_run_id: UUID | None = None,
                **kwargs: Any) -> None:
        try:
            self._event(run_id, "text", text=text)
        except Exception:
            self._failed("on_text")

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID,
                        tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
                        **kwargs: Any) -> None:
        try:
            self._event(run_id, name, data=data)
        except Exception:
            self._failed("on_custom_event")


class AsyncCallbackHandler(_LCAsyncHandler):
    """The same recorder as a LangChain ``AsyncCallbackHandler``.

    Prefer :class:`CallbackHandler` (it works in async chains too, inline on
    the loop); use this one where an API insists on an async handler. Each of
    its callbacks is a coroutine that runs :class:`CallbackHandler`'s
    callback of the same name on its own ``recorder``; none awaits anything,
    so each runs to completion in one step.
    """

    run_inline = True
    raise_error = False

    def __init__(
        self,
        observer: Observer | None = None,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.recorder = CallbackHandler(observer, user_id=user_id, session_id=session_id,
                                        tags=tags, metadata=metadata)

    @property
    def observer(self) -> Observer:
        return self.recorder.observer

    def span_for_run(self, run_id: UUID) -> Span | None:
        return self.recorder.span_for_run(run_id)

    @property
    def open_runs(self) -> int:
        return self.recorder.open_runs

    @property
    def internal_errors(self) -> int:
        return self.recorder.internal_errors


# The LangChain callbacks CallbackHandler implements (on_chain_start, ...).
CALLBACKS: tuple[str, ...] = tuple(sorted(name for name in vars(CallbackHandler) if name.startswith("on_")))


def _coroutine(name: str) -> Callable[..., Coroutine[Any, Any, None]]:
    callback = getattr(CallbackHandler, name)

    async def run(self: AsyncCallbackHandler, *args: Any, **kwargs: Any) -> None:
        callback(self.recorder, *args, **kwargs)

    functools.update_wrapper(run, callback)
    run.__qualname__ = f"AsyncCallbackHandler.{name}"
    return run


for _callback in CALLBACKS:
    setattr(AsyncCallbackHandler, _callback, _coroutine(_callback))


# ---- zero-code tracing ---------------------------------------------------------

TRACING_ENV = "CHAINSIGHT_TRACING"
"""The environment variable LangChain reads, at every top-level run, to add a TracingHandler."""

# register_configure_hook's context variable: LangChain adds the handler set
# in it to runs in that context. Chainsight never sets it: a context variable
# is not seen by threads started later, the environment variable is.
_tracing_var: ContextVar[TracingHandler | None] = ContextVar("chainsight_tracing", default=None)
_hook_registered = False
_global_observer: Observer | None = None


class TracingHandler(CallbackHandler):
    """The handler that zero-code tracing attaches to every LangChain run.

    LangChain builds one for each top-level run while ``CHAINSIGHT_TRACING``
    is set (after :func:`enable_global_tracing`), and the run's children
    inherit it. It records like :class:`CallbackHandler`, into the observer
    given to :func:`enable_global_tracing` (default: the process observer),
    except the runs an explicit Chainsight handler records.
    """

    _global = True

    def __init__(self) -> None:
        super().__init__(_global_observer)


def enable_global_tracing(observer: Observer | None = None) -> None:
    """Register :class:`TracingHandler` with LangChain (once per process) and
    direct it to ``observer``. LangChain adds it to runs while the environment
    variable ``CHAINSIGHT_TRACING`` is set: setting and removing that is the
    caller's part (:mod:`chainsight.framework.zero_code`)."""
    global _global_observer, _hook_registered
    from langchain_core.tracers.context import register_configure_hook

    _global_observer = observer
    _claims.active = True
    if not _hook_registered:
        register_configure_hook(_tracing_var, inheritable=True, handle_class=TracingHandler,
                                env_var=TRACING_ENV)
        _hook_registered = True
