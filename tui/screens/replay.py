"""Replay a model call (``p`` on an llm span of the trace screen).

The span's stored messages are sent again through litellm with the model and
temperature of the two fields (prefilled from the span; an empty temperature
leaves it to the model), on a thread worker: the UI never waits. The run is
recorded into the store as a new trace linked to the original
(:mod:`chainsight.framework.replay`), read back, and both calls are shown side
by side: output, latency, tokens, cost. When the messages hold redaction
placeholders, a note says that they are sent as stored (when redaction masked
something else of the call, its output, the note says that instead). A
failed call is shown as the error it was (and recorded as an error span).
The replay records with the app's configuration (``ChainsightApp(settings=...)``,
``chainsight --config FILE tui``): its redaction, pricing and checks. Closing
the screen while a replay runs drops its result (the replay still completes
and is recorded; a notification gives its trace).

``ChainsightApp(replay_mock_response=TEXT)`` (``CHAINSIGHT_REPLAY_MOCK_RESPONSE``
for ``chainsight tui``) makes litellm answer TEXT without calling the model:
for tests and dry runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from chainsight.framework.replay import (
    PARAMS,
    ReplayError,
    ReplayOutcome,
    ReplayRequest,
    Side,
    default_model,
    masked_in,
    masked_notice,
    masked_of,
    messages_of,
    placeholder_of,
    replay_call,
    replay_into,
    request_from_span,
    side_of,
    span_params,
)
from chainsight.tui import format as fmt
from chainsight.tui.data import StoreDown
from chainsight.tui.safe_text import safe

if TYPE_CHECKING:
    from chainsight.framework.config import Settings


def side_text(title: str, side: Side | None, params: dict[str, Any], *, note: str = "") -> Text:
    """One column of the comparison: the call's figures, then its output."""
    out = Text()
    out.append(f"{title}\n", style="bold cyan")
    if side is None:
        out.append(note or fmt.DASH, style="dim")
        return out
    tokens = (fmt.DASH if side.input_tokens is None and side.output_tokens is None
              else f"{fmt.tokens(side.input_tokens)} → {fmt.tokens(side.output_tokens)}")
    shown = "  ".join(f"{k} {params[k]}" for k in PARAMS if params.get(k) is not None)
    for key, value in (("model", safe(side.model, single_line=True, max_len=60, placeholder=fmt.DASH)),
                       ("status", Text(side.status, style="bold red" if side.status == "error" else "green")),
                       ("latency", Text(fmt.duration(side.latency_s))),
                       ("TTFT", Text(fmt.duration(side.ttft_s))),
                       ("tokens", Text(tokens)),
                       ("cost", Text(fmt.cost(side.cost_usd))),
                       ("parameters", safe(shown, single_line=True, placeholder=fmt.DASH))):
        out.append(f"{key:>10} ", style="dim")
        out.append_text(value)
        out.append("\n")
    if side.error:
        out.append("\n── error\n", style="bold red")
        out.append_text(safe(side.error, "red", max_len=2000))
        out.append("\n")
    out.append("\n── output\n", style="bold cyan")
    out.append_text(safe(side.output, max_len=20_000, placeholder="(no output)"))
    return out


class ReplayScreen(ModalScreen[None]):
    """The replay of one llm span: fields, then both calls side by side."""

    BINDINGS: ClassVar = [Binding("escape", "close", "Close"),
                          Binding("ctrl+o", "open_replay", "Open the replay's trace")]

    def __init__(self, span: Any, *, mock_response: str | None = None,
                 settings: Settings | None = None) -> None:
        super().__init__()
        self.span = span
        self.mock_response = mock_response
        self.settings = settings
        self.placeholder = placeholder_of(settings)
        self.request: ReplayRequest | None = None
        self.outcome: ReplayOutcome | None = None
        self.running = False
        try:
            sent = masked_in(messages_of(span), self.placeholder)
        except ReplayError:  # said when Enter is pressed
            sent = {}
        self.notice = masked_notice(sent, masked_of(span), self.placeholder)

    def compose(self) -> ComposeResult:
        span = self.span
        temperature = span_params(span).get("temperature")
        with Vertical(id="replay"):
            title = Text("Replay ", style="bold")
            title.append_text(safe(span.name, "bold", single_line=True, max_len=60))
            title.append(f"  span {span.span_id}", style="dim")
            yield Static(title, id="replay-title")
            if self.notice:
                yield Static(Text(self.notice, style="bold yellow"), id="replay-masked")
            with Horizontal(id="replay-fields"):
                yield Static("model", classes="replay-label")
                yield Input(value=default_model(span) or "", placeholder="a litellm model, e.g. openai/gpt-4o",
                            id="replay-model")
                yield Static("temperature", classes="replay-label")
                yield Input(value="" if temperature is None else str(temperature),
                            placeholder="model default", id="replay-temperature")
            yield Static(Text("Enter runs the replay · Esc closes", style="dim"), id="replay-status")
            with Horizontal(id="replay-sides"):
                with VerticalScroll(classes="replay-side"):
                    yield Static(side_text("original", side_of(span), span_params(span)),
                                 id="replay-original")
                with VerticalScroll(classes="replay-side"):
                    yield Static(side_text("replay", None, {}, note="not run yet"), id="replay-result")

    def on_mount(self) -> None:
        self.query_one("#replay-model", Input).focus()

    def _status(self, text: Text) -> None:
        self.query_one("#replay-status", Static).update(text)

    @on(Input.Submitted)
    def _submit(self, _event: Input.Submitted) -> None:
        if self.running:
            self._status(Text("a replay is running; wait for it", style="yellow"))
            return
        model = self.query_one("#replay-model", Input).value.strip()
        text = self.query_one("#replay-temperature", Input).value.strip()
        try:
            temperature = float(text) if text else None
        except ValueError:
            self._status(Text(f"temperature: not a number: {text!r}", style="red"))
            return
        try:
            request = request_from_span(self.span, model=model or None, temperature=temperature,
                                        drop=() if text else ("temperature",),  # empty: the model's default
                                        placeholder=self.placeholder)
        except ReplayError as error:
            self._status(safe(str(error), "red"))
            return
        self.request, self.running = request, True
        label = Text("replaying to ", style="yellow")
        label.append_text(safe(request.model, "bold yellow", single_line=True, max_len=60))
        label.append("…", style="yellow")
        self._status(label)
        self.query_one("#replay-result", Static).update(side_text("replay", None, {}, note="running…"))
        self._replay(request)

    @work(thread=True, exclusive=True, group="replay", exit_on_error=False)
    def _replay(self, request: ReplayRequest) -> None:
        app: Any = self.app
        try:
            outcome = replay_into(app.store_url, request, settings=self.settings,
                                  mock_response=self.mock_response)
        except Exception as error:  # an observer that could not start...: shown, never fatal
            app.call_from_thread(self._failed, f"replay not run: {type(error).__name__}: {error}")
            return
        try:
            detail = app.data.get_trace(outcome.trace_id) if outcome.trace_id else None
        except StoreDown as error:
            app.call_from_thread(self._failed, f"replay ran as trace {outcome.trace_id}, but the store "
                                               f"cannot be read: {error}")
            return
        app.call_from_thread(self._done, request, outcome, detail)

    def _dismissed(self) -> bool:
        """Whether the screen was closed (Esc) while the replay ran: its result is dropped."""
        return not self.is_attached

    def _failed(self, message: str) -> None:
        if self._dismissed():
            self.app.say(message, "error")  # type: ignore[attr-defined]
            return
        self.running = False
        self._status(safe(message, "bold red"))
        self.query_one("#replay-result", Static).update(side_text("replay", None, {}, note="not run"))

    def _done(self, request: ReplayRequest, outcome: ReplayOutcome, detail: Any) -> None:
        if self._dismissed():
            what = f"failed ({outcome.error})" if outcome.error else "finished"
            self.app.say(f"the replay closed while it ran {what}; recorded as trace "  # type: ignore[attr-defined]
                         f"{outcome.trace_id}", "error" if outcome.error else "information")
            return
        self.running, self.outcome = False, outcome
        call = replay_call(list(detail.spans)) if detail is not None else None
        if call is None and outcome.output is not None:  # ran, but not (yet) stored: what came back
            side: Side | None = Side(span_id="", model=request.model, status="ok", output=outcome.output,
                                     error=None, latency_s=None, ttft_s=None, input_tokens=None,
                                     output_tokens=None, cost_usd=None)
        else:
            side = side_of(call) if call is not None else None
        self.query_one("#replay-result", Static).update(
            side_text("replay", side, request.params, note=outcome.error or "not stored"))
        status = Text()
        if outcome.error:
            status.append("replay failed: ", style="bold red")
            status.append_text(safe(outcome.error, "red", single_line=True, max_len=300))
            status.append(f" (recorded in trace {outcome.trace_id})", style="dim")
        else:
            status.append(f"recorded as trace {outcome.trace_id} (tagged replay)", style="green")
        if not outcome.stored or call is None:
            status.append(" · not all of it reached the store in time", style="bold yellow")
        for warning in outcome.warnings:
            status.append(" · ", style="dim")
            status.append_text(safe(warning, "bold yellow", single_line=True, max_len=300))
        status.append(" · Enter runs again · ctrl+o opens its trace · Esc closes", style="dim")
        self._status(status)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_open_replay(self) -> None:
        """Close, and open the trace the last replay was recorded as."""
        if self.running or self.outcome is None or not self.outcome.trace_id:
            self.app.say("run the replay first (Enter): ctrl+o opens the trace it is recorded as",  # type: ignore[attr-defined]
                         "warning")
            return
        trace_id = self.outcome.trace_id
        self.dismiss(None)
        self.app.open_trace(trace_id)  # type: ignore[attr-defined]
