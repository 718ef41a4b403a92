"""Replay a stored model call: send an ``llm`` span's messages again through
litellm, to the same or another model, with other parameters or edited
messages, and record the run as a new trace linked to the original.

What a stored ``llm`` span holds (both adapters, read back through the query
API, shared content already resolved):

* ``inputs``: the messages. LangChain spans keep LangChain messages as dumped
  by pydantic (``{"type": "human", "content": ...}``; a non-chat model's
  prompt is a string); litellm spans keep the OpenAI-style messages litellm
  was given (``{"role": "user", "content": ...}``). :func:`to_messages` turns
  either into what litellm takes. Content stored without them (the adapters'
  ``capture_content=False``, ``[pipeline] metrics_only``), withheld after
  redaction failed, or truncated to ``max_content_bytes`` cannot be replayed.
* ``model`` and ``provider`` (LangChain's ``ls_provider``, litellm's
  ``custom_llm_provider``), and the attributes ``temperature`` and
  ``max_tokens`` when the call set them.
* ``attributes["chainsight.redacted"]``: what the redaction plugin masked in
  the span (inputs and outputs), by kind. Masked text stays masked: the
  placeholders (``[redacted:email]``, the plugin's ``replacement``) are what is
  sent again. :attr:`ReplayRequest.masked` counts the placeholders found in
  the messages sent (the form taken from the configuration, :func:`placeholder_of`);
  :attr:`ReplayRequest.masked_in_call` is the span's own count, everywhere in
  the call, which :func:`masked_notice` falls back to (worded as such) when
  no placeholder of that form is in the messages.

The new trace is a ``chain`` span named ``replay <original span name>``,
tagged ``replay``, whose attributes name the original span and trace
(:data:`REPLAY_OF_SPAN`, :data:`REPLAY_OF_TRACE`); the litellm call under it
is recorded by Chainsight's own :class:`~chainsight.framework.adapters.litellm.LitellmCallback`
(given to that one call, and taken out of litellm's global callback lists
afterwards: litellm adds a per-call callback to them for good),
through the normal pipeline: redacted, priced, checked and stored like any
other span. A failing call is an error span in the new trace and
:attr:`ReplayOutcome.error`. The call is given ``timeout=``
(:data:`CALL_TIMEOUT_S` unless told otherwise; litellm's own default is 600 s),
and when its span has not ended soon (:data:`END_WAIT_S`) after it returned,
the root, which would end before its child, says so (:data:`REPLAY_CALL_PENDING`)
and so does :attr:`ReplayOutcome.warnings`.

The core part of replay: nothing here reads the store (the readers find the
span and read the new trace back) and litellm is imported only when a replay
runs, through the adapter.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from chainsight.framework.model import REDACTED, REDACTION_PLACEHOLDER, WITHHELD, Span

if TYPE_CHECKING:
    from chainsight.framework.config import Settings
    from chainsight.framework.observer import Observer

REPLAY_TAG: Final = "replay"
REPLAY_OF_SPAN: Final = "chainsight.replay_of.span_id"
REPLAY_OF_TRACE: Final = "chainsight.replay_of.trace_id"
REPLAY_EDITED: Final = "chainsight.replay.edited"
"""Root attribute: True when the messages were edited before the replay."""
REPLAY_MASKED: Final = "chainsight.replay.masked"
"""Root attribute: the redaction placeholders in the messages sent, by kind."""
REPLAY_CALL_PENDING: Final = "chainsight.replay.call_pending"
"""Root attribute: True when the model call's span had not ended in time (and is not recorded)."""
PARAMS: Final = ("temperature", "max_tokens")
"""The invocation parameters the adapters record (as span attributes) and replay passes on."""
CALL_TIMEOUT_S: Final = 60.0
"""The default limit on the replayed call (litellm's ``timeout=``; its own default is 600 s)."""
END_WAIT_S: Final = 5.0
"""How long after the call returns its span is waited for, before the root span ends."""

# LangChain message types -> chat roles ("chat" messages carry their own role).
_ROLES: Final = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool",
                 "function": "function", "developer": "developer",
                 "HumanMessageChunk": "user", "AIMessageChunk": "assistant"}
# LangChain's provider names (ls_provider) that litellm spells otherwise.
_PROVIDERS: Final = {"amazon_bedrock": "bedrock", "google_genai": "gemini",
                     "google_vertexai": "vertex_ai", "mistralai": "mistral",
                     "fireworks": "fireworks_ai", "together": "together_ai"}
# An Azure call is addressed by deployment name, which no span records: said when it fails.
_AZURE_HINT: Final = ("; an Azure model is named by its deployment (azure/DEPLOYMENT), which the span "
                      "does not record: if {model!r} is not a deployment of yours, name one as the model")


class ReplayError(Exception):
    """A span that cannot be replayed, or edited messages that are not usable;
    the message says which and why."""


@dataclass(frozen=True)
class ReplayRequest:
    """What a replay sends: built by :func:`request_from_span`, changed with
    :func:`dataclasses.replace` (or :func:`with_messages` after an edit)."""

    span_id: str
    trace_id: str
    name: str
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    masked: dict[str, int] = field(default_factory=dict)
    """The redaction placeholders (of the form :attr:`placeholder`) in :attr:`messages`, by kind:
    what is sent masked, as stored."""
    masked_in_call: dict[str, int] = field(default_factory=dict)
    """What redaction masked anywhere in the original span (its inputs or outputs), by kind."""
    placeholder: str = REDACTION_PLACEHOLDER
    """The form of a redaction placeholder (``{kind}`` the kind) that :attr:`masked` counts."""
    edited: bool = False


@dataclass(frozen=True)
class ReplayOutcome:
    """What one replay did: the new trace, the model's answer or the error,
    and whether everything recorded reached the store."""

    trace_id: str
    output: str | None
    error: str | None
    stored: bool = True
    warnings: tuple[str, ...] = ()
    """What went wrong in the recording, short of the call failing (its span did not end in time)."""


@dataclass(frozen=True)
class Side:
    """One model call as the side-by-side comparison shows it (from a stored span)."""

    span_id: str
    model: str | None
    status: str
    output: str
    error: str | None
    latency_s: float | None
    ttft_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None


# ---- from a stored span --------------------------------------------------------


def request_from_span(
    span: Span,
    *,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    drop: Iterable[str] = (),
    placeholder: str = REDACTION_PLACEHOLDER,
) -> ReplayRequest:
    """The replay of ``span`` (as read from the store) with the given changes:
    ``temperature`` / ``max_tokens`` replace the span's, the parameters named
    in ``drop`` (of :data:`PARAMS`) are not sent at all (reasoning models refuse
    a temperature), ``placeholder`` is the redaction placeholder's form
    (:func:`placeholder_of`). :class:`ReplayError` naming the span and the
    reason when it cannot be replayed."""
    unknown = sorted(set(drop) - set(PARAMS))
    if unknown:
        raise ReplayError(f"cannot drop {', '.join(unknown)}: replay sends only {', '.join(PARAMS)}")
    messages = messages_of(span)
    chosen = model or default_model(span)
    if not chosen:
        raise ReplayError(f"span {span.span_id} ({span.name}) records no model: name one to replay "
                          "it with (--model)")
    params = span_params(span)
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    for name in drop:
        params.pop(name, None)
    return ReplayRequest(span_id=span.span_id, trace_id=span.trace_id, name=span.name, model=chosen,
                         messages=messages, params=params, masked=masked_in(messages, placeholder),
                         masked_in_call=masked_of(span), placeholder=placeholder)


def messages_of(span: Span) -> list[dict[str, Any]]:
    """The messages a replay of ``span`` sends; :class:`ReplayError` naming
    the span when it is no model call or holds no usable messages."""
    where = f"span {span.span_id} ({span.name})"
    if span.kind != "llm":
        raise ReplayError(f"{where} is a {span.kind} span, not a model call: replay takes an llm span")
    try:
        return to_messages(span.inputs)
    except ReplayError as exc:
        raise ReplayError(f"{where} cannot be replayed: {exc}") from None


def masked_of(span: Span) -> dict[str, int]:
    """What redaction masked anywhere in ``span``, inputs and outputs (kind ->
    count, from its attribute; empty when nothing)."""
    masked = (span.attributes or {}).get(REDACTED)
    if not isinstance(masked, Mapping):
        return {}
    return {str(k): int(v) for k, v in masked.items() if isinstance(v, int | float)}


def placeholder_of(settings: Settings | None) -> str:
    """The form of the placeholders redaction writes under ``settings``
    (``[plugins.redaction] replacement``; plugins.toml, as an observer reads
    it, when None): :data:`REDACTION_PLACEHOLDER` unless configured."""
    if settings is None:
        from chainsight.framework.config import ConfigError, read_settings

        try:
            settings, _problems = read_settings(None)
        except ConfigError:  # a named file that is missing: the observer falls back to defaults too
            return REDACTION_PLACEHOLDER
    value = (settings.plugins.get("redaction") or {}).get("replacement")
    return value if isinstance(value, str) and value else REDACTION_PLACEHOLDER


def masked_in(messages: Any, placeholder: str = REDACTION_PLACEHOLDER) -> dict[str, int]:
    """The redaction placeholders of the form ``placeholder`` (``{kind}``
    standing for a word) in ``messages``' text and keys, by kind (``masked``
    when the form names no kind)."""
    parts = placeholder.split("{kind}")
    if not "".join(parts):  # no literal text: placeholders cannot be told from other words
        return {}
    pattern = re.compile(r"(\w+)".join(re.escape(part) for part in parts))
    counts: dict[str, int] = {}
    for text in _strings(messages):
        for found in pattern.finditer(text):
            kind = found.group(1) if len(parts) > 1 else "masked"
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def span_params(span: Span) -> dict[str, Any]:
    """The invocation parameters (:data:`PARAMS`) the span's call was made with."""
    attributes = span.attributes or {}
    return {k: attributes[k] for k in PARAMS if attributes.get(k) is not None}


def default_model(span: Span) -> str | None:
    """The litellm model name of the span's call: its model, prefixed with its
    provider (``openai/gpt-4o-mini``) unless the name already starts with it.
    A slash in the name is no provider of its own: litellm records
    ``together_ai/meta-llama/Llama-3-8b-chat-hf`` as the model
    ``meta-llama/Llama-3-8b-chat-hf`` of the provider ``together_ai`` (so with
    OpenRouter's and Fireworks' names)."""
    if not span.model:
        return None
    provider = _PROVIDERS.get(span.provider or "", span.provider)
    if not provider or span.model.startswith(f"{provider}/"):
        return span.model
    return f"{provider}/{span.model}"


def to_messages(inputs: Any) -> list[dict[str, Any]]:
    """The chat messages of a stored ``llm`` span's inputs, as litellm takes
    them; :class:`ReplayError` when the span holds none."""
    if inputs is None:
        raise ReplayError("it has no stored messages (recorded without content: capture_content "
                          "off or [pipeline] metrics_only)")
    if inputs == WITHHELD:
        raise ReplayError("its content was withheld (redaction failed on it), so nothing can be sent")
    if isinstance(inputs, str):  # a completion model's prompt
        return [{"role": "user", "content": inputs}]
    if isinstance(inputs, Mapping):
        if inputs.get("__truncated__"):
            raise ReplayError(f"its stored messages were truncated ({inputs.get('original_bytes')} "
                              "bytes, over [storage] max_content_bytes)")
        if "__missing__" in inputs:
            raise ReplayError(f"its messages are missing: {inputs['__missing__']}")
        if "messages" in inputs:
            return to_messages(inputs["messages"])
        raise ReplayError("its inputs are not chat messages")
    if isinstance(inputs, list) and inputs and all(isinstance(m, list) for m in inputs):
        if len(inputs) > 1:
            raise ReplayError(f"it holds a batch of {len(inputs)} prompts, not one conversation")
        inputs = inputs[0]
    if not isinstance(inputs, list) or not inputs:
        raise ReplayError("its inputs are not chat messages")
    if all(isinstance(m, str) for m in inputs):  # several prompts of a completion model
        if len(inputs) > 1:
            raise ReplayError(f"it holds a batch of {len(inputs)} prompts, not one conversation")
        return [{"role": "user", "content": inputs[0]}]
    return [_message(m, i) for i, m in enumerate(inputs, 1)]


def _message(message: Any, number: int) -> dict[str, Any]:
    if not isinstance(message, Mapping):
        raise ReplayError(f"message {number} is not an object")
    if isinstance(message.get("role"), str):  # already a chat message (litellm's)
        return dict(message)
    kind = message.get("type")
    role = message.get("role") if kind == "chat" else _ROLES.get(str(kind))
    if not isinstance(role, str):
        raise ReplayError(f"message {number} has no role (type {kind!r})")
    out: dict[str, Any] = {"role": role, "content": message.get("content")}
    if message.get("name"):
        out["name"] = message["name"]
    if role == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {"id": call.get("id"), "type": "function",
             "function": {"name": call.get("name"), "arguments": json.dumps(call.get("args") or {})}}
            for call in message["tool_calls"] if isinstance(call, Mapping)
        ]
    if role == "tool" and message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


# ---- edited messages --------------------------------------------------------------


def messages_json(messages: list[dict[str, Any]]) -> str:
    """The messages as the text a person edits (one JSON array, indented)."""
    return json.dumps(messages, indent=2, ensure_ascii=False) + "\n"


def parse_messages(text: str, where: str) -> list[dict[str, Any]]:
    """Edited messages back from :func:`messages_json`'s form; :class:`ReplayError`
    naming ``where`` (the file) and the line when the text is not usable."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReplayError(f"{where}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
    if not isinstance(value, list) or not value:
        raise ReplayError(f"{where}: expected a JSON array of messages, one or more")
    for number, message in enumerate(value, 1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ReplayError(f"{where}: message {number} must be an object with a \"role\" string")
        if "content" not in message and not message.get("tool_calls"):
            raise ReplayError(f"{where}: message {number} has no \"content\"")
    return value


def with_messages(request: ReplayRequest, messages: list[dict[str, Any]]) -> ReplayRequest:
    """``request`` sending ``messages`` instead (marked edited when they differ;
    the placeholders in them counted again)."""
    if messages == request.messages:
        return request
    return dataclasses.replace(request, messages=messages, edited=True,
                               masked=masked_in(messages, request.placeholder))


# ---- running it -----------------------------------------------------------------


def run_replay(
    request: ReplayRequest,
    observer: Observer,
    *,
    mock_response: str | None = None,
    call_timeout_s: float = CALL_TIMEOUT_S,
    end_wait_s: float = END_WAIT_S,
) -> ReplayOutcome:
    """Send ``request`` through litellm, recorded by ``observer`` as a new trace
    (see the module's doc). ``mock_response``: litellm's own offline answer
    (tests, dry runs); ``call_timeout_s``: litellm's ``timeout`` for the call;
    ``end_wait_s``: how long the call's span is waited for once it returned.
    Never raises for a failed call: the error is recorded and returned. Does
    not flush the observer (:func:`replay_into` does)."""
    from chainsight.framework.adapters import litellm as adapter  # imports litellm (seconds)

    attributes: dict[str, Any] = {REPLAY_OF_SPAN: request.span_id, REPLAY_OF_TRACE: request.trace_id}
    if request.edited:
        attributes[REPLAY_EDITED] = True
    if request.masked:
        attributes[REPLAY_MASKED] = dict(request.masked)
    extra: dict[str, Any] = {} if mock_response is None else {"mock_response": mock_response}
    output: str | None = None
    error: str | None = None
    warnings: list[str] = []
    trace_id = ""
    callback = adapter.LitellmCallback(observer)
    try:
        with observer.span(f"replay {request.name}", "chain", tags=[REPLAY_TAG], attributes=attributes,
                           inputs={"messages": request.messages}) as root:
            trace_id = root.trace_id
            try:
                response = adapter.recorded_completion(
                    callback, model=request.model, messages=request.messages, timeout=call_timeout_s,
                    end_wait_s=end_wait_s, **request.params, **extra)
            finally:
                if not callback.wait_pending(0):  # its end did not come in time: not recorded
                    root.attributes = {**(root.attributes or {}), REPLAY_CALL_PENDING: True}
                    warnings.append(
                        f"the model call's span had not ended {end_wait_s:g} s after the call returned, "
                        f"so it is not recorded: the replay's root span in trace {trace_id} has no "
                        "model call under it")
            output = response_text(response)
            root.outputs = output
    except Exception as exc:  # the call failed: the spans say so; so does the outcome
        error = f"{type(exc).__name__}: {exc}" if type(exc).__name__ not in str(exc) else str(exc)
        if request.model.startswith("azure/"):
            error += _AZURE_HINT.format(model=request.model)
    return ReplayOutcome(trace_id=trace_id, output=output, error=error, warnings=tuple(warnings))


def replay_into(
    url: str | None,
    request: ReplayRequest,
    *,
    settings: Settings | None = None,
    mock_response: str | None = None,
    timeout_s: float = 30.0,
    call_timeout_s: float = CALL_TIMEOUT_S,
) -> ReplayOutcome:
    """:func:`run_replay` with an observer of its own on the store at ``url``
    (configured by ``settings`` or plugins.toml: redaction, pricing and the
    checks run as for any span), flushed (for at most ``timeout_s``) and shut
    down before it returns; ``stored`` is False when not everything reached the
    store in time. ``call_timeout_s``: the limit on the model call."""
    from chainsight.framework.observer import Observer

    observer = Observer(url, settings=settings)
    try:
        outcome = run_replay(request, observer, mock_response=mock_response, call_timeout_s=call_timeout_s)
        stored = observer.flush(timeout_s)
    finally:
        observer.shutdown()
    return dataclasses.replace(outcome, stored=stored)


# ---- reading the result back -----------------------------------------------------


def response_text(response: Any) -> str:
    """The answer's text of a litellm response (its first choice)."""
    choices = getattr(response, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    return output_text(message if message is not None else response)


def output_text(outputs: Any) -> str:
    """The text of a model call's stored output: a LangChain message, a
    litellm message, or text; tool calls are shown as JSON."""
    if outputs is None:
        return ""
    if isinstance(outputs, str):
        return outputs
    if not isinstance(outputs, Mapping):
        dump = getattr(outputs, "model_dump", None)
        outputs = dump() if callable(dump) else {"content": str(outputs)}
    content = outputs.get("content")
    if isinstance(content, list):  # content parts
        text = "".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
    else:
        text = "" if content is None else str(content)
    calls = outputs.get("tool_calls")
    if calls:
        text += ("\n" if text else "") + "tool calls: " + json.dumps(calls, ensure_ascii=False, default=str)
    if not text and "content" not in outputs:
        return json.dumps(dict(outputs), ensure_ascii=False, default=str)
    return text


def side_of(span: Span) -> Side:
    """The comparison's column for one stored model call."""
    return Side(span_id=span.span_id, model=span.model, status=span.status,
                output=output_text(span.outputs), error=span.error, latency_s=span.latency_s,
                ttft_s=span.ttft_s, input_tokens=span.input_tokens,
                output_tokens=span.output_tokens, cost_usd=span.cost_usd)


def replay_call(spans: list[Span]) -> Span | None:
    """The model call of a replay trace's spans (its one ``llm`` span)."""
    return next((s for s in spans if s.kind == "llm"), None)


def replay_link(span: Span) -> tuple[str, str] | None:
    """``(trace id, span id)`` of the call that the root span ``span`` replayed, or None."""
    attributes = span.attributes or {}
    span_id, trace_id = attributes.get(REPLAY_OF_SPAN), attributes.get(REPLAY_OF_TRACE)
    if isinstance(span_id, str) and isinstance(trace_id, str):
        return trace_id, span_id
    return None


def masked_notice(sent: Mapping[str, int], in_call: Mapping[str, int] | None = None,
                  placeholder: str = REDACTION_PLACEHOLDER) -> str:
    """The line that says what of the messages is sent masked: ``sent``, the
    placeholders found in them (:func:`masked_in`); else, when the original
    call had content masked (``in_call``, :func:`masked_of`), a line that says
    so without claiming it was sent; empty when neither."""
    if sent:
        return (f"masked content replayed masked: the messages hold redaction placeholders "
                f"({_counts(sent)}), sent as stored, never the original text")
    if in_call:
        form = placeholder.replace("{kind}", "KIND")
        return (f"redaction had masked {_counts(in_call)} in this call (its messages or its output); "
                f"no placeholder of the form {form} is in the messages sent")
    return ""


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))


__all__ = [
    "CALL_TIMEOUT_S",
    "END_WAIT_S",
    "PARAMS",
    "REPLAY_CALL_PENDING",
    "REPLAY_EDITED",
    "REPLAY_MASKED",
    "REPLAY_OF_SPAN",
    "REPLAY_OF_TRACE",
    "REPLAY_TAG",
    "ReplayError",
    "ReplayOutcome",
    "ReplayRequest",
    "Side",
    "default_model",
    "masked_in",
    "masked_notice",
    "masked_of",
    "messages_json",
    "messages_of",
    "output_text",
    "parse_messages",
    "placeholder_of",
    "replay_call",
    "replay_into",
    "replay_link",
    "request_from_span",
    "response_text",
    "run_replay",
    "side_of",
    "span_params",
    "to_messages",
    "with_messages",
]
