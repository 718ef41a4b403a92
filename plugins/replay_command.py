"""Built-in plugin ``replay``: ``chainsight replay SPAN_ID`` sends a stored
model call's messages again through litellm and shows both answers side by side.

::

    chainsight replay 9b1c2d3e4f --model gpt-4o --temperature 0.2
    chainsight replay 9b1c2d3e4f --edit                 # change the messages in $EDITOR first
    chainsight replay 9b1c2d3e4f --mock-response "hi"   # a dry run: litellm answers offline
    chainsight replay 9b1c2d3e4f --model openai/o3-mini --temperature none   # send no temperature

SPAN_ID is an ``llm`` span's id or a unique part of it (its end, as the TUI
shows it, or its start); a trace id picks that trace's model call when it has
just one. The replay is recorded into the same store (``--db``) as a new
trace tagged ``replay`` whose root names the original span and trace
(``chainsight show`` prints the link). Masked content (what redaction
replaced with ``[redacted:KIND]``, or the configured ``replacement``) is sent
masked, and the output says so. The call is given up after ``--timeout``
seconds (default 60).
How replay works: :mod:`chainsight.framework.replay`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainsight.framework import hookimpl
from chainsight.framework.commands import (
    MISSING,
    Column,
    CommandError,
    display_url,
    fmt_cost,
    fmt_int,
    fmt_seconds,
    open_store,
    print_json,
    print_lines,
    print_table,
    short_id,
)
from chainsight.framework.replay import (
    CALL_TIMEOUT_S,
    PARAMS,
    ReplayError,
    ReplayRequest,
    Side,
    masked_notice,
    messages_json,
    parse_messages,
    placeholder_of,
    replay_call,
    replay_into,
    request_from_span,
    side_of,
    span_params,
    with_messages,
)

if TYPE_CHECKING:
    from chainsight.framework.extension import CommandRegistry
    from chainsight.framework.model import Span
    from chainsight.storage.query import Store


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("span_id", metavar="SPAN_ID",
                        help="the model call (llm span) to replay: its id or a unique part of it; "
                             "a trace id picks the trace's one model call")
    parser.add_argument("--model", help="send to this model (a litellm model name, e.g. "
                                        "openai/gpt-4o; default: the span's own)")
    parser.add_argument("--temperature", type=_temperature, metavar="T",
                        help="sampling temperature (default: the span's); 'none' sends no temperature "
                             "(reasoning models refuse one)")
    parser.add_argument("--max-tokens", type=_max_tokens, dest="max_tokens", metavar="N",
                        help="at most N output tokens (default: the span's); 'none' sends no limit")
    parser.add_argument("--timeout", type=_seconds, metavar="SECONDS", default=CALL_TIMEOUT_S,
                        help=f"give the model call up after SECONDS (default: {CALL_TIMEOUT_S:g})")
    parser.add_argument("--edit", action="store_true",
                        help="edit the messages (JSON) in $EDITOR before sending them")
    parser.add_argument("--mock-response", metavar="TEXT", dest="mock_response",
                        help="litellm's mock_response: answer TEXT without calling the model "
                             "(tests and dry runs; the replay is still recorded)")


NONE = "none"
"""The value of --temperature / --max-tokens that sends no such parameter."""


def _temperature(text: str) -> float | str:
    if text.strip().lower() == NONE:
        return NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number (or 'none'): {text!r}") from None


def _max_tokens(text: str) -> int | str:
    if text.strip().lower() == NONE:
        return NONE
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer (or 'none'): {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def find_span(store: Store, text: str) -> tuple[str, str]:
    """``(trace id, span id)`` of the span ``text`` names (a whole id, its
    start or its end), or of the one model call of the trace it names."""
    spans = store.find_span_ids(text, limit=5)
    if len(spans) == 1:
        return spans[0]
    if spans:
        listed = ", ".join(span_id for _trace, span_id in spans[:4])
        raise CommandError(f"{text!r} matches several spans ({listed}); give more of the id")
    traces = store.resolve_trace_id(text, limit=2)
    if len(traces) != 1:
        raise CommandError(f"no span (or trace) matches {text!r} in {display_url(store.url)}")
    detail = store.get_trace(traces[0])
    calls = [s for s in detail.spans if s.kind == "llm"] if detail is not None else []
    if len(calls) == 1:
        return traces[0], calls[0].span_id
    if not calls:
        raise CommandError(f"trace {traces[0]} has no model call (llm span) to replay")
    listed = ", ".join(f"{short_id(s.span_id)} ({s.name})" for s in calls[:6])
    raise CommandError(f"trace {traces[0]} has {len(calls)} model calls; name one by its span id: {listed}")


def _span(store: Store, trace_id: str, span_id: str) -> Span:
    detail = store.get_trace(trace_id)
    span = next((s for s in detail.spans if s.span_id == span_id), None) if detail else None
    if span is None:  # deleted between the two reads
        raise CommandError(f"span {span_id} of trace {trace_id} is no longer in {display_url(store.url)}")
    return span


def edit_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as edited in ``$EDITOR`` (a JSON file in a private temporary folder)."""
    editor = os.environ.get("EDITOR", "").strip()
    if not editor:
        raise CommandError("--edit needs an editor: set $EDITOR (for example EDITOR=nano)")
    with tempfile.TemporaryDirectory(prefix="chainsight-replay-") as folder:
        path = Path(folder) / "messages.json"
        path.write_text(messages_json(messages), encoding="utf-8")
        try:
            done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot run the editor $EDITOR={editor!r}: {exc}") from None
        if done.returncode != 0:
            raise CommandError(f"the editor $EDITOR={editor!r} exited with status {done.returncode}; "
                               "nothing was replayed")
        text = path.read_text(encoding="utf-8")
    try:
        return parse_messages(text, "the edited messages")
    except ReplayError as exc:
        raise CommandError(f"{exc}; nothing was replayed") from None


def _params(params: dict[str, Any]) -> str:
    return "  ".join(f"{k} {params[k]}" for k in PARAMS if params.get(k) is not None) or MISSING


def _tokens(side: Side | None) -> str:
    if side is None or (side.input_tokens is None and side.output_tokens is None):
        return MISSING
    return f"{fmt_int(side.input_tokens)} → {fmt_int(side.output_tokens)}"


def _column(side: Side | None, params: dict[str, Any]) -> list[str]:
    if side is None:
        return [MISSING] * 7
    return [side.model or MISSING, side.status, fmt_seconds(side.latency_s), fmt_seconds(side.ttft_s),
            _tokens(side), fmt_cost(side.cost_usd), _params(params)]


COLUMNS = (Column(""), Column("original", max_width=50, flex=True), Column("replay", max_width=50, flex=True))
ROWS = ("model", "status", "latency", "ttft", "tokens in → out", "cost", "parameters")


def _print(original: Side, span: Span, replayed: Side | None, request: ReplayRequest,
           trace_id: str, notice: str) -> None:
    edited = " (messages edited)" if request.edited else ""
    print_lines([f"replayed span {span.span_id} ({span.name}) of trace {span.trace_id}{edited}",
                 f"new trace {trace_id}  (chainsight show {short_id(trace_id)})"])
    if notice:
        print_lines([notice])
    sys.stdout.write("\n")
    rows = zip(ROWS, _column(original, span_params(span)), _column(replayed, request.params), strict=True)
    print_table(COLUMNS, [list(row) for row in rows])
    for title, text in (("original output", original.output),
                        ("replay output", replayed.output if replayed else None)):
        sys.stdout.write(f"\n{title}:\n")
        print_lines([f"  {line}" for line in (text or MISSING).splitlines() or [MISSING]])


def _run(ns: argparse.Namespace) -> int:
    with open_store(ns.db) as store:
        trace_id, span_id = find_span(store, ns.span_id)
        span = _span(store, trace_id, span_id)
    settings = getattr(ns, "settings", None)
    given = {"temperature": ns.temperature, "max_tokens": ns.max_tokens}
    try:
        request = request_from_span(
            span, model=ns.model,
            temperature=None if ns.temperature == NONE else ns.temperature,
            max_tokens=None if ns.max_tokens == NONE else ns.max_tokens,
            drop=[name for name, value in given.items() if value == NONE],
            placeholder=placeholder_of(settings))
    except ReplayError as exc:
        raise CommandError(str(exc)) from None
    if ns.edit:
        request = with_messages(request, edit_messages(request.messages))
    outcome = replay_into(ns.db, request, settings=settings, mock_response=ns.mock_response,
                          call_timeout_s=ns.timeout)
    with open_store(ns.db) as store:
        detail = store.get_trace(outcome.trace_id) if outcome.trace_id else None
    call = replay_call(list(detail.spans)) if detail is not None else None
    original, replayed = side_of(span), side_of(call) if call is not None else None
    notice = masked_notice(request.masked, request.masked_in_call, request.placeholder)
    if ns.json:
        print_json({
            "trace_id": outcome.trace_id,
            "replay_of": {"trace_id": span.trace_id, "span_id": span.span_id},
            "request": {"model": request.model, "params": request.params, "messages": request.messages,
                        "edited": request.edited},
            "original": dataclasses.asdict(original),
            "replay": dataclasses.asdict(replayed) if replayed is not None else None,
            "masked": request.masked,
            "masked_in_call": request.masked_in_call,
            "masked_notice": notice or None,
            "error": outcome.error,
            "stored": outcome.stored,
            "warnings": list(outcome.warnings),
        })
    else:
        _print(original, span, replayed, request, outcome.trace_id, notice)
    for warning in outcome.warnings:
        sys.stderr.write(f"chainsight: warning: {warning}\n")
    if outcome.error:
        raise CommandError(f"the replay failed: {outcome.error} (recorded as an error in trace "
                           f"{outcome.trace_id})")
    if not outcome.stored or replayed is None:
        raise CommandError(f"the replay ran, but trace {outcome.trace_id} was not (all) stored in "
                           f"{display_url(ns.db)} in time; see `chainsight plugins` for what was lost")
    return 0


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add("replay", "send a stored model call (llm span) again, to the same or another model, "
            "and compare the answers", _configure, _run)
