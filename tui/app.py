"""The Chainsight Textual app: modes for each screen, workers for every read."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from chainsight.tui.data import DataSource, StoreDown
from chainsight.tui.export import default_dir, export_path, trace_json, write_private
from chainsight.tui.safe_text import clean
from chainsight.tui.screens.alerts import AlertsScreen
from chainsight.tui.screens.experiments import ExperimentsScreen
from chainsight.tui.screens.help import HelpScreen
from chainsight.tui.screens.metrics import MetricsScreen
from chainsight.tui.screens.sessions import SessionsScreen
from chainsight.tui.screens.trace_detail import TraceDetailScreen
from chainsight.tui.screens.traces import TracesScreen
from chainsight.tui.widgets.health import Health, HealthBar

if TYPE_CHECKING:
    from chainsight.framework.config import Settings

SCREENS = Binding.Group("Screens")  # the footer labels 1-4 together when narrow
PIPELINE_SAMPLES = {
    "dropped": "chainsight_spans_dropped_total",
    "failed": "chainsight_spans_failed_total",
    "dead_lettered": "chainsight_spans_dead_lettered_total",
}


class ChainsightApp(App[None]):
    """Browse a Chainsight store. ``now_ns`` freezes "now" (tests, snapshots);
    ``replay_mock_response`` makes replays answer that text offline (tests, dry runs);
    ``settings``: the configuration replays record with (``chainsight --config``;
    None: plugins.toml as any observer finds it)."""

    TITLE = "Chainsight"
    CSS_PATH = "app.tcss"
    MODES: ClassVar = {
        "traces": TracesScreen,
        "metrics": MetricsScreen,
        "alerts": AlertsScreen,
        "experiments": ExperimentsScreen,
        "sessions": SessionsScreen,
    }
    DEFAULT_MODE = "traces"
    BINDINGS: ClassVar = [
        Binding("1", "show('traces')", "Traces", group=SCREENS),
        Binding("2", "show('metrics')", "Metrics", group=SCREENS),
        Binding("3", "show('alerts')", "Alerts", group=SCREENS),
        Binding("4", "show('experiments')", "Experiments", group=SCREENS),
        Binding("5", "show('sessions')", "Sessions", group=SCREENS),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        store_url: str,
        *,
        now_ns: int | None = None,
        live_interval: float = 2.0,
        health_interval: float = 5.0,
        retry_interval: float = 2.0,
        page_size: int = 100,
        export_dir: str | Path | None = None,
        data: DataSource | None = None,
        live: bool = False,
        store_label: str | None = None,
        replay_mock_response: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__()
        self.store_url = store_url
        self.data = data or DataSource(store_url)
        self.frozen_now = now_ns
        self.live_interval = live_interval
        self.health_interval = health_interval
        self.retry_interval = retry_interval
        self.page_size = page_size
        self.start_live = live
        self.export_dir = Path(export_dir) if export_dir is not None else default_dir()
        self.health = Health(store=store_label or _display_url(store_url))
        self.replay_mock_response = replay_mock_response
        """litellm's mock_response for replays (``p`` on a model call): tests and dry runs."""
        self.settings = settings
        """The configuration replays are recorded with (redaction, pricing, checks)."""

    # ---- time and health ----------------------------------------------------
    def now(self) -> int:
        return self.frozen_now if self.frozen_now is not None else time.time_ns()

    def set_health(self, **changes: Any) -> None:
        from dataclasses import replace

        self.health = replace(self.health, **changes)
        for bar in self.screen.query(HealthBar):
            bar.refresh()

    def store_down(self, error: StoreDown) -> None:
        """Called (on the UI thread) when a read failed; the caller retries on a timer."""
        self.set_health(error=f"store unavailable: {error} (retrying)")

    def store_ok(self) -> None:
        if self.health.error is not None:
            self.set_health(error=None)

    def on_load(self) -> None:
        self.data.warm_up()

    def on_mount(self) -> None:
        self.refresh_health()
        self.set_interval(self.health_interval, self.refresh_health)

    @work(thread=True, exclusive=True, group="health", exit_on_error=False)
    def refresh_health(self) -> None:
        try:
            count = self.data.count_traces()
            firing = len(self.data.list_alerts(state="firing"))
            pipeline: dict[str, int | None] = {}
            for key, name in PIPELINE_SAMPLES.items():
                samples = self.data.list_samples(name=name, limit=10_000)
                pipeline[key] = int(max(s.value for s in samples)) if samples else None
        except StoreDown as error:
            self.call_from_thread(self.store_down, error)
            return
        self.call_from_thread(self.set_health, traces=count, firing=firing, error=None,
                              **pipeline)

    # ---- navigation -------------------------------------------------------
    def action_show(self, mode: str) -> None:
        """Go to a screen; pressed on a trace of that screen, back to its list."""
        if mode != self.current_mode:
            self.switch_mode(mode)
            return
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "show" and parameters == (self.current_mode,) and len(self.screen_stack) <= 1:
            return None  # the screen you are on: its key is shown dimmed
        return True

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def open_trace(self, trace_id: str) -> None:
        if self.current_mode != "traces":
            self.switch_mode("traces")
        self.push_screen(TraceDetailScreen(trace_id))

    def show_traces(self, filter_text: str) -> None:
        """Switch to the traces screen with ``filter_text`` applied."""
        self.switch_mode("traces")
        screen = self.screen
        while isinstance(screen, TraceDetailScreen):
            self.pop_screen()
            screen = self.screen
        if isinstance(screen, TracesScreen):
            screen.set_filter(filter_text)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Traces", "Recent traces with filter and live tail",
                            lambda: self.action_show("traces"))
        yield SystemCommand("Metrics", "Latency, TTFT, TPOT, throughput, cost, GPU",
                            lambda: self.action_show("metrics"))
        yield SystemCommand("Alerts", "Firing and recent alerts",
                            lambda: self.action_show("alerts"))
        yield SystemCommand("Experiments", "Experiments side by side",
                            lambda: self.action_show("experiments"))
        yield SystemCommand("Sessions", "Conversations by session id, each as a transcript",
                            lambda: self.action_show("sessions"))
        yield SystemCommand("Help", "Keys of every screen", self.action_help)
        if isinstance(screen, TracesScreen):
            yield SystemCommand("Toggle live tail", "Follow new traces as they arrive",
                                screen.action_toggle_live)
            yield SystemCommand("Filter traces", "Focus the filter bar", screen.action_focus_filter)
            yield SystemCommand("Errors only", "Filter: status:error",
                                lambda: screen.set_filter("status:error"))
        if isinstance(screen, TraceDetailScreen):
            yield SystemCommand("Export trace as JSON", "Write the trace to a file",
                                screen.action_export)
            yield SystemCommand("Copy trace JSON", "Copy to the clipboard", screen.action_copy)
            yield SystemCommand("Thumbs up", "Feedback +1", lambda: screen.action_thumbs(1))
            yield SystemCommand("Thumbs down", "Feedback -1", lambda: screen.action_thumbs(-1))
            yield SystemCommand("Rate trace", "Rating 1 to 5", screen.action_rate)
            yield SystemCommand("Comment on trace", "Free-text feedback", screen.action_comment)
            yield SystemCommand("Replay model call", "Send the selected llm span's messages again",
                                screen.action_replay)

    # ---- feedback and export (thread workers) -----------------------------
    @work(thread=True, group="feedback", exit_on_error=False)
    def send_feedback(self, trace_id: str, span_id: str | None = None, **feedback: Any) -> None:
        from chainsight.tui.feedback import record_feedback

        try:
            record_feedback(self.store_url, trace_id, span_id, **feedback)
        except Exception as error:  # shown to the user, never fatal
            self.call_from_thread(self.say, f"feedback failed: {error}", "error")
            return
        what = ", ".join(f"{k} {v}" for k, v in feedback.items() if k != "comment") or "comment"
        self.call_from_thread(self.say, f"feedback saved: {what}")
        self.call_from_thread(self._feedback_done, trace_id)

    def _feedback_done(self, trace_id: str) -> None:
        screen = self.screen
        if isinstance(screen, TraceDetailScreen) and screen.trace_id == trace_id:
            screen.load()

    @work(thread=True, group="datasets", exit_on_error=False)
    def add_to_dataset(self, detail: Any, name: str) -> None:
        from chainsight.tui.datasets import add_trace

        try:
            label, count, new = add_trace(self.store_url, detail, name)
        except Exception as error:  # shown to the user, never fatal
            self.call_from_thread(self.say, f"not added to dataset {name!r}: {error}", "error")
            return
        said = "added to" if new else "already in"
        self.call_from_thread(self.say, f"trace {said} dataset {label} ({count} items)")

    @work(thread=True, group="export", exit_on_error=False)
    def export_trace(self, detail: Any) -> None:
        path = export_path(self.export_dir, detail.trace.trace_id)
        try:
            write_private(path, trace_json(detail))
        except OSError as error:
            self.call_from_thread(self.say, f"export to {path} failed: {error}", "error")
            return
        self.call_from_thread(self.say, f"exported to {path}")

    def say(self, message: str, severity: str = "information") -> None:
        self.notify(clean(message), severity=severity, markup=False)  # type: ignore[arg-type]

    def on_unmount(self) -> None:
        self.data.close()


def _display_url(url: str) -> str:
    from chainsight.storage.engine import display_url

    return display_url(url)


def run(store_url: str) -> int:
    ChainsightApp(store_url).run()
    return 0
