"""Notifiers: grouping and the repeat interval (a flapping series notifies once
per repeat interval), the webhook against a local HTTP server (a timeout, a
500 then a 200), the command runner, stderr and the log, and a notifier that
fails without stopping anything."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from chainsight.framework.model import Alert
from chainsight.plugins.alert_command import CommandNotifier
from chainsight.plugins.alert_engine import Evaluator
from chainsight.plugins.alert_log import LogNotifier
from chainsight.plugins.alert_notify import (
    Notification,
    NotificationGroups,
    Notifier,
    Policy,
    alertmanager_api,
)
from chainsight.plugins.alert_rules import build_rule
from chainsight.plugins.alert_stderr import StderrNotifier
from chainsight.plugins.alert_webhook import WebhookNotifier
from chainsight.storage.query import Store
from tests.plugins.cases.alerting import MINUTE, SECOND, T0, Clock, at, call, per_minute, write


class Collecting(Notifier):
    """A notifier that keeps what it would send (the base does the rest)."""

    NAME = "collecting"

    def __init__(self, clock: Clock, **policy: Any) -> None:
        super().__init__(clock, background=False)
        self.groups = NotificationGroups(Policy(**policy))
        self.sent: list[Notification] = []
        self.sent_at: list[int] = []

    def deliver(self, notification: Notification) -> None:
        self.sent.append(notification)
        self.sent_at.append(self.clock())


def firing(rule: str = "errors", at_ns: int = T0, **labels: str) -> Alert:
    return Alert(rule, "firing", "critical", 0.5, 0.1, at_ns, labels=labels,
                 alert_id=f"{rule}-{sorted(labels.items())}")


def resolved(alert: Alert, at_ns: int) -> Alert:
    return Alert(alert.rule, "resolved", alert.severity, alert.value, alert.threshold,
                 alert.started_ns, at_ns, alert.summary, alert.labels, alert.alert_id)


# ---- grouping and timing ---------------------------------------------------------------


def test_a_flapping_series_notifies_once_per_repeat_interval(sqlite_url: str) -> None:
    """The real evaluator over a series that fails every other minute for 3 hours:
    90 firing and 90 resolved transitions, three notifications (one an hour)."""
    write(sqlite_url, per_minute(range(181), lambda m, i: call(
        at(m, 5 * i), status="error" if m % 2 == 0 and m < 180 and i == 0 else "ok")))
    rule = build_rule({"name": "errors", "metric": "error_rate", "threshold": 0.01, "window": "1m"})
    clock = Clock()
    notifier = Collecting(clock, group_wait_ns=30 * SECOND, group_interval_ns=5 * MINUTE,
                          repeat_interval_ns=60 * MINUTE)
    store = Store(sqlite_url)
    transitions = []

    def changed(alert: Alert) -> None:
        transitions.append(alert.state)
        notifier.alert_changed(alert)

    evaluator = Evaluator(store, [rule], changed, clock)
    for second in range(0, 200 * 60, 10):  # the evaluator and the notifier, every 10 s
        clock.now = T0 + second * SECOND
        if second % 60 == 50:
            evaluator.evaluate()
        notifier.pump(clock.now)
    store.close()
    assert transitions.count("firing") == 90 and transitions.count("resolved") == 90
    # First firing at 0:50 + 30 s group wait; repeated each hour while it flaps; the
    # resolution once it stayed resolved for the group interval (flapping ended at 179:50).
    assert [(n.status, n.repeat) for n in notifier.sent] == [
        ("firing", False), ("firing", True), ("firing", True), ("resolved", False)]
    assert [round((t - T0) / SECOND) for t in notifier.sent_at] == [
        80, 80 + 3600, 80 + 7200, 179 * 60 + 50 + 300]


def test_alerts_are_grouped_and_late_ones_wait_for_the_group_interval() -> None:
    groups = NotificationGroups(Policy(group_wait_ns=30 * SECOND, group_interval_ns=5 * MINUTE))
    a, b, c = firing(model="a"), firing(model="b"), firing(model="c")
    groups.add(a, T0)
    groups.add(b, T0 + 10 * SECOND)
    assert groups.due(T0 + 29 * SECOND) == []
    (first,) = groups.due(T0 + 30 * SECOND)
    assert first.group_labels == {"alertname": "errors"} and len(first.firing) == 2
    groups.add(c, T0 + MINUTE)
    assert groups.due(T0 + 2 * MINUTE) == []  # waits for the group interval
    (second,) = groups.due(T0 + 30 * SECOND + 5 * MINUTE)
    assert {x.labels["model"] for x in second.firing} == {"a", "b", "c"}
    # b resolves: nothing new to say at once; the next repeat shows it resolved.
    groups.add(resolved(b, T0 + 6 * MINUTE), T0 + 6 * MINUTE)
    assert groups.due(T0 + 12 * MINUTE) == []
    (again,) = groups.due(T0 + 30 * SECOND + 5 * MINUTE + 4 * 3600 * SECOND)
    assert again.repeat and {x.labels["model"] for x in again.firing} == {"a", "c"}
    assert [x.labels["model"] for x in again.resolved] == ["b"]


def test_group_by_every_label_and_severity_floor() -> None:
    groups = NotificationGroups(Policy(group_by=("...",), group_wait_ns=0, min_severity="critical"))
    groups.add(firing(model="a"), T0)
    groups.add(firing(model="b"), T0)
    groups.add(Alert("minor", "firing", "warning", 1.0), T0)
    groups.add(Alert("slow", "pending", "critical", 1.0), T0)  # pending: never notified
    assert sorted(n.group_labels["model"] for n in groups.due(T0)) == ["a", "b"]


def test_send_resolved_false_and_a_resolution_never_notified() -> None:
    groups = NotificationGroups(Policy(group_wait_ns=MINUTE, group_interval_ns=MINUTE,
                                       send_resolved=False))
    a = firing()
    groups.add(a, T0)
    groups.add(resolved(a, T0 + SECOND), T0 + SECOND)  # before its group was sent
    assert groups.due(T0 + 10 * MINUTE) == [] and len(groups) == 0
    groups.add(a, T0)
    assert len(groups.due(T0 + MINUTE)) == 1
    groups.add(resolved(a, T0 + 2 * MINUTE), T0 + 2 * MINUTE)
    assert groups.due(T0 + 10 * MINUTE) == [] and len(groups) == 0


def test_shutdown_sends_what_waits(capsys: pytest.CaptureFixture[str]) -> None:
    notifier = StderrNotifier(Clock(), background=False)
    notifier.configure(None, {"group_wait": "10m"})  # type: ignore[arg-type]
    notifier.alert_changed(firing())
    assert capsys.readouterr().err == ""
    notifier.shutdown(2.0)
    assert "alert FIRING [critical] errors" in capsys.readouterr().err


# ---- the webhook ---------------------------------------------------------------------------


class Server:
    """A local HTTP server answering from a script: ``(status, delay_s)`` per request."""

    def __init__(self, script: list[tuple[int, float]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append({"path": self.path, "body": json.loads(body),
                                        "headers": dict(self.headers), "at": time.monotonic()})
                status, delay = server.script.pop(0) if server.script else (200, 0.0)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (its timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[Server] = []

    def make(script: list[tuple[int, float]]) -> Server:
        servers.append(Server(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def webhook(**target: Any) -> WebhookNotifier:
    notifier = WebhookNotifier(Clock(), background=False)
    notifier.configure(None, {"group_wait": "0s", "targets": [  # type: ignore[arg-type]
        {"timeout_s": 5, "retries": 3, "backoff_s": 0.05, **target}]})
    return notifier


def test_webhook_retries_a_500_and_delivers_alertmanager_json(server_factory: Any) -> None:
    server = server_factory([(500, 0.0), (200, 0.0)])
    notifier = webhook(url=server.url + "/hook/secret-token")
    notifier.alert_changed(firing(model="gpt-4o"))
    notifier.pump(T0)
    assert (notifier.delivered, notifier.failed) == (1, 0)
    assert len(server.requests) == 2 and server.requests[0]["body"] == server.requests[1]["body"]
    body = server.requests[1]["body"]
    assert body["version"] == "4" and body["status"] == "firing" and body["receiver"] == "chainsight"
    assert body["groupLabels"] == {"alertname": "errors"}
    (alert,) = body["alerts"]
    assert alert["labels"] == {"alertname": "errors", "severity": "critical", "model": "gpt-4o"}
    assert alert["status"] == "firing" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["startsAt"].endswith("Z") and alert["fingerprint"]
    assert server.requests[1]["headers"]["Content-Type"] == "application/json"


def test_webhook_gives_up_on_a_hung_server_after_its_timeout_and_retries(server_factory: Any) -> None:
    server = server_factory([(200, 1.5), (200, 0.0)])
    notifier = webhook(url=server.url, timeout_s=0.3, backoff_s=0.1)
    started = time.monotonic()
    notifier.alert_changed(firing())
    notifier.pump(T0)
    elapsed = time.monotonic() - started
    assert (notifier.delivered, notifier.failed) == (1, 0)
    assert len(server.requests) == 2
    assert elapsed < 1.4  # the first request was abandoned at 0.3 s, not waited for
    assert server.requests[1]["at"] - server.requests[0]["at"] >= 0.35  # timeout + backoff


def test_webhook_failure_is_logged_without_the_url_path(server_factory: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    server = server_factory([(503, 0.0)] * 3)
    notifier = webhook(url=server.url + "/services/T000/SECRET", retries=2)
    notifier.alert_changed(firing())
    notifier.pump(T0)
    assert (notifier.delivered, notifier.failed) == (0, 1) and len(server.requests) == 3
    (record,) = [r for r in caplog.records if r.name == "chainsight.alerts"]
    message = record.getMessage()
    assert "'alert_webhook'" in message and "HTTP 503" in message and "failed 3 times" in message
    assert "SECRET" not in message and server.url in message


def test_webhook_does_not_retry_a_client_error(server_factory: Any) -> None:
    server = server_factory([(404, 0.0)])
    notifier = webhook(url=server.url)
    notifier.alert_changed(firing())
    notifier.pump(T0)
    assert notifier.failed == 1 and len(server.requests) == 1


def test_webhook_to_a_closed_port_fails_quickly() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    notifier = webhook(url=f"http://127.0.0.1:{port}/x", retries=1, backoff_s=0.01)
    notifier.alert_changed(firing())
    notifier.pump(T0)
    assert notifier.failed == 1


def test_slack_payload_escapes_untrusted_text(server_factory: Any) -> None:
    server = server_factory([])
    notifier = webhook(url=server.url, format="slack")
    alert = Alert("errors", "firing", "critical", 0.5, 0.1, T0, summary="rate <b>&</b>",
                  labels={"model": "<!channel>"})
    notifier.alert_changed(alert)
    notifier.pump(T0)
    text = server.requests[0]["body"]["text"]
    assert text.startswith("*[FIRING:1]* errors")
    assert "&lt;!channel&gt;" in text and "rate &lt;b&gt;&amp;&lt;/b&gt;" in text and "<" not in text


def test_alertmanager_api_format_ends_resolved_alerts() -> None:
    a = firing()
    n = Notification("k", {}, "resolved", (resolved(a, T0 + MINUTE),))
    (item,) = alertmanager_api(n)
    assert item["endsAt"] == "2027-01-15T08:01:00.000Z" and item["labels"]["alertname"] == "errors"


def test_webhook_through_an_observer_with_a_secret_from_the_environment(
        server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """record_alert -> stored -> alert_changed -> the webhook's thread -> the server."""
    from chainsight.framework.observer import Observer

    server = server_factory([])
    monkeypatch.setenv("TEST_ALERT_HOOK", server.url + "/hook")
    config = tmp_path / "plugins.toml"
    config.write_text('[plugins.alert_webhook]\ngroup_wait = "0s"\n'
                      'targets = [{ url = { env = "TEST_ALERT_HOOK" }, format = "slack" }]\n')
    obs = Observer(f"sqlite:///{tmp_path / 'a.db'}", config_path=config, strict=True,
                   builtins=[("alert_webhook", "chainsight.plugins.alert_webhook")],
                   entry_points=False, spill_path=tmp_path / "spill")
    try:
        obs.record_alert(Alert("errors", "firing", "critical", 0.2, 0.01, summary="2 of 10 failed"))
        assert obs.flush(10)
        for _ in range(100):
            if server.requests:
                break
            time.sleep(0.05)
    finally:
        obs.shutdown(5)
    assert server.requests and "2 of 10 failed" in server.requests[0]["body"]["text"]


# ---- command, stderr, log -------------------------------------------------------------------


def test_command_gets_the_notification_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    script = ("import json, os, sys; body = json.load(sys.stdin); "
              f"open({str(out)!r}, 'w').write(json.dumps({{'status': os.environ['CHAINSIGHT_ALERT_STATUS'], "
              "'names': os.environ['CHAINSIGHT_ALERT_NAMES'], 'body': body}))")
    notifier = CommandNotifier(Clock(), background=False)
    notifier.configure(None, {"group_wait": "0s", "command": [sys.executable, "-c", script]})  # type: ignore[arg-type]
    notifier.alert_changed(firing(model="m"))
    notifier.pump(T0)
    got = json.loads(out.read_text())
    assert notifier.delivered == 1
    assert got["status"] == "firing" and got["names"] == "errors"
    assert got["body"]["alerts"][0]["labels"]["model"] == "m"


def test_a_failing_command_is_reported_with_its_stderr(caplog: pytest.LogCaptureFixture) -> None:
    notifier = CommandNotifier(Clock(), background=False)
    notifier.configure(None, {"group_wait": "0s", "command": [  # type: ignore[arg-type]
        sys.executable, "-c", "import sys; sys.stderr.write('pager down\\n'); sys.exit(3)"]})
    notifier.alert_changed(firing())
    notifier.pump(T0)
    assert notifier.failed == 1
    assert any("exit status 3: pager down" in r.getMessage() for r in caplog.records)


def test_a_command_that_hangs_is_killed(caplog: pytest.LogCaptureFixture) -> None:
    notifier = CommandNotifier(Clock(), background=False)
    notifier.configure(None, {"group_wait": "0s", "timeout_s": 0.3,  # type: ignore[arg-type]
                              "command": [sys.executable, "-c", "import time; time.sleep(30)"]})
    started = time.monotonic()
    notifier.alert_changed(firing())
    notifier.pump(T0)
    assert notifier.failed == 1 and time.monotonic() - started < 10
    assert any("killed" in r.getMessage() for r in caplog.records)


def test_no_command_no_url_means_nothing_to_do() -> None:
    for notifier in (CommandNotifier(Clock(), background=False), WebhookNotifier(Clock(), background=False)):
        notifier.configure(None, {})  # type: ignore[arg-type]
        notifier.alert_changed(firing())
        assert len(notifier.groups) == 0


def test_stderr_and_log_lines_are_one_line_of_plain_text(capsys: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    nasty = Alert("errors", "firing", "critical", 0.5, 0.1, T0, summary="bad\n\x1b[31mred",
                  labels={"model": "m\rx"}, trace_ids=("a" * 32, "b" * 32))
    stderr = StderrNotifier(Clock(), background=False)
    stderr.configure(None, {"group_wait": "0s"})  # type: ignore[arg-type]
    stderr.alert_changed(nasty)
    stderr.pump(T0)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\r" not in err
    assert err.startswith("chainsight: alert FIRING [critical] errors: bad  [31mred (model=m x)")
    assert "traces aaaaaaaaaa, bbbbbbbbbb" in err

    caplog.set_level(logging.INFO, "chainsight.alerts")
    log = LogNotifier(Clock(), background=False)
    log.configure(None, {"group_wait": "0s", "level": "warning"})  # type: ignore[arg-type]
    log.alert_changed(nasty)
    log.pump(T0)
    (record,) = [r for r in caplog.records if "FIRING" in r.getMessage()]
    assert record.levelno == logging.WARNING and "\n" not in record.getMessage()


def test_background_thread_delivers_on_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    notifier = StderrNotifier()
    notifier.configure(None, {"group_wait": "0s"})  # type: ignore[arg-type]
    notifier.alert_changed(firing())
    for _ in range(100):
        if notifier.delivered:
            break
        time.sleep(0.02)
    notifier.shutdown(1.0)
    assert notifier.delivered == 1 and "alert FIRING" in capsys.readouterr().err
