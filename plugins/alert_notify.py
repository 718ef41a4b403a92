"""What the notifier plugins share: grouping, repeat interval, payloads.

A notifier (``alert_log``, ``alert_stderr``, ``alert_webhook``,
``alert_command``) implements the ``alert_changed`` hook through
:class:`Notifier`, which does what Alertmanager does between alerts and
receivers, so a flapping series does not spam:

* alerts are **grouped** by the labels of ``group_by`` (default
  ``["alertname"]``; ``["..."]``: every label, one group per series), and a
  notification carries a whole group;
* a new group is sent after ``group_wait`` (more alerts may join it);
  alerts that join a group already sent wait for ``group_interval``;
* a group that keeps firing is sent again every ``repeat_interval``;
* a group's resolution is sent once it has had no firing alert for
  ``group_interval``: a series that resolves and fires again within that
  time (flapping) is not news, so it is notified once per
  ``repeat_interval``.

Only firing and resolved alerts are notified (pending and inactive ones
are not), and only those at or above ``min_severity``. Deliveries run on the
notifier's own thread (started with the first alert), never on the pipeline
worker; a delivery that fails is logged with the notifier's name and
counted, and the group is tried again at its next repeat. At shutdown,
groups still waiting are sent at once, within the time left.

The payloads: Alertmanager's webhook format (``version: "4"``), the list
Alertmanager's own API takes (``POST /api/v2/alerts``), and Slack's
incoming-webhook ``{"text": ...}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Alert
from chainsight.plugins.alert_rules import DURATION_PATTERN, SEVERITIES, parse_duration
from chainsight.storage.serialize import key_text

if TYPE_CHECKING:
    from chainsight.framework.observer import Observer

log = logging.getLogger("chainsight.alerts")

ALL_LABELS: Final = "..."
NOTIFIED_STATES: Final = ("firing", "resolved")

POLICY_PROPERTIES: Final[dict[str, Any]] = {
    "group_by": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": ["alertname"],
                 "description": "labels that make a group (alertname is the rule); [\"...\"]: all"},
    "group_wait": {"type": "string", "pattern": DURATION_PATTERN, "default": "30s",
                   "description": "wait before a new group's first notification"},
    "group_interval": {"type": "string", "pattern": DURATION_PATTERN, "default": "5m",
                       "description": "wait before notifying alerts that joined a group, and "
                                      "how long a group must stay resolved to notify it"},
    "repeat_interval": {"type": "string", "pattern": DURATION_PATTERN, "default": "4h",
                        "description": "send a group that is still firing again after this"},
    "send_resolved": {"type": "boolean", "default": True},
    "min_severity": {"enum": list(SEVERITIES), "default": "info"},
}


def policy_schema(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A notifier's CONFIG_SCHEMA: the policy keys and its own."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {**POLICY_PROPERTIES, **(extra or {})},
    }


# ---- notifications ------------------------------------------------------------------


def alert_labels(alert: Alert) -> dict[str, str]:
    """The labels an alert is known by outside: ``alertname`` (the rule),
    ``severity`` and the alert's own."""
    return {"alertname": alert.rule, "severity": alert.severity, **(alert.labels or {})}


def fingerprint(labels: Mapping[str, str]) -> str:
    return hashlib.sha256(key_text(dict(labels)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Notification:
    """One message about one group: its firing alerts, and those that resolved since the last one."""

    group_key: str
    group_labels: dict[str, str]
    status: str  # firing (any alert fires) or resolved
    alerts: tuple[Alert, ...]
    repeat: bool = False

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.state == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.state != "firing"]


@dataclass(frozen=True)
class Policy:
    group_by: tuple[str, ...] = ("alertname",)
    group_wait_ns: int = 30 * 10**9
    group_interval_ns: int = 300 * 10**9
    repeat_interval_ns: int = 4 * 3600 * 10**9
    send_resolved: bool = True
    min_severity: str = "info"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        return cls(
            group_by=tuple(config.get("group_by") or ("alertname",)),
            group_wait_ns=parse_duration(str(config.get("group_wait", "30s"))),
            group_interval_ns=parse_duration(str(config.get("group_interval", "5m"))),
            repeat_interval_ns=parse_duration(str(config.get("repeat_interval", "4h"))),
            send_resolved=bool(config.get("send_resolved", True)),
            min_severity=str(config.get("min_severity", "info")),
        )


@dataclass
class _Group:
    labels: dict[str, str]
    created_ns: int
    alerts: dict[str, Alert] = field(default_factory=dict)  # fingerprint -> latest state
    sent_ns: int | None = None
    sent_firing: frozenset[str] = frozenset()
    quiet_since_ns: int | None = None

    def firing(self) -> frozenset[str]:
        return frozenset(fp for fp, a in self.alerts.items() if a.state == "firing")


class NotificationGroups:
    """The grouping and timing of notifications (no I/O, no clock of its
    own: ``now`` is given). Not thread-safe: :class:`Notifier` locks it."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._groups: dict[str, _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, alert: Alert, now: int) -> None:
        if alert.state not in NOTIFIED_STATES or not _severe_enough(alert.severity, self.policy.min_severity):
            return
        labels = alert_labels(alert)
        if ALL_LABELS in self.policy.group_by:
            group_labels = labels
        else:
            group_labels = {k: labels[k] for k in self.policy.group_by if k in labels}
        key = key_text(group_labels)
        group = self._groups.get(key)
        if group is None:
            if alert.state != "firing":
                return  # the end of something never notified
            group = self._groups[key] = _Group(group_labels, now)
        group.alerts[fingerprint(labels)] = alert
        if alert.state == "firing":
            group.quiet_since_ns = None
        elif group.quiet_since_ns is None and not group.firing():
            group.quiet_since_ns = now

    def due(self, now: int, *, flush: bool = False) -> list[Notification]:
        """The notifications to send at ``now`` (``flush``: every group with
        something unsent, waits ignored: shutdown)."""
        p = self.policy
        out: list[Notification] = []
        for key, g in list(self._groups.items()):
            firing = g.firing()
            if g.sent_ns is None:
                if not firing:
                    del self._groups[key]
                elif flush or now >= g.created_ns + p.group_wait_ns:
                    out.append(self._send(key, g, now, firing))
            elif not firing:
                quiet = g.quiet_since_ns if g.quiet_since_ns is not None else now
                if flush or now >= quiet + p.group_interval_ns:
                    if p.send_resolved and g.sent_firing:
                        out.append(self._send(key, g, now, firing))
                    del self._groups[key]
            elif firing - g.sent_firing:
                if flush or now >= g.sent_ns + p.group_interval_ns:
                    out.append(self._send(key, g, now, firing))
            elif not flush and now >= g.sent_ns + p.repeat_interval_ns:
                out.append(self._send(key, g, now, firing, repeat=True))
        return out

    def next_due(self) -> int | None:
        """The earliest time a notification may become due, or None."""
        p = self.policy
        times = []
        for g in self._groups.values():
            if g.sent_ns is None:
                times.append(g.created_ns + p.group_wait_ns)
            elif g.quiet_since_ns is not None and not g.firing():
                times.append(g.quiet_since_ns + p.group_interval_ns)
            else:
                times.append(g.sent_ns + min(p.group_interval_ns, p.repeat_interval_ns))
        return min(times) if times else None

    def _send(self, key: str, g: _Group, now: int, firing: frozenset[str],
              repeat: bool = False) -> Notification:
        shown = [g.alerts[fp] for fp in sorted(firing)]
        if self.policy.send_resolved:
            shown += [a for fp, a in sorted(g.alerts.items()) if fp not in firing and fp in g.sent_firing]
        for fp in [fp for fp in g.alerts if fp not in firing]:
            del g.alerts[fp]  # told (or never worth telling)
        g.sent_ns, g.sent_firing = now, firing
        return Notification(key, dict(g.labels), "firing" if firing else "resolved", tuple(shown),
                            repeat)


def _severe_enough(severity: str, minimum: str) -> bool:
    order = {name: i for i, name in enumerate(SEVERITIES)}
    return order.get(severity, len(SEVERITIES)) >= order.get(minimum, 0)


# ---- the notifier base ------------------------------------------------------------


class Notifier:
    """Base of the notifier plugins: groups what ``alert_changed`` hands it
    and delivers due notifications on its own thread. A subclass sets
    ``NAME`` and implements :meth:`deliver` (raise when it failed) and,
    if it has options, :meth:`setup`."""

    NAME = "notifier"

    def __init__(self, clock: Callable[[], int] = time.time_ns, *, background: bool = True) -> None:
        """``background=False``: no thread; whoever drives the clock calls :meth:`pump`."""
        self.name = self.NAME  # the plugin's name, [plugins.NAME], when registered by hand
        self.clock = clock
        self.background = background
        self.groups = NotificationGroups(Policy())
        self.delivered = 0
        self.failed = 0
        self.deadline: float | None = None  # monotonic; deliveries at shutdown stop there
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- hooks ----------------------------------------------------------------
    @hookimpl
    def configure(self, observer: Observer, config: Mapping[str, Any]) -> None:
        self.groups = NotificationGroups(Policy.from_config(config))
        self.setup(config)

    @hookimpl
    def alert_changed(self, alert: Alert) -> None:
        if not self.active():
            return
        with self._lock:
            self.groups.add(alert, self.clock())
        if self._thread is None and self.background:
            self._thread = threading.Thread(target=self._run, name=f"chainsight-{self.NAME}",
                                            daemon=True)
            self._thread.start()
        self._wake.set()

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(min(1.0, timeout / 4))
        self.deadline = time.monotonic() + timeout * 0.9
        self.pump(self.clock(), flush=True)

    # ---- for subclasses --------------------------------------------------------
    def setup(self, config: Mapping[str, Any]) -> None:
        """Read the notifier's own options."""

    def active(self) -> bool:
        """False when there is nowhere to deliver to (no URL, no command)."""
        return True

    def deliver(self, notification: Notification) -> None:
        raise NotImplementedError

    # ---- delivery -------------------------------------------------------------
    def pump(self, now: int, *, flush: bool = False) -> list[Notification]:
        """Deliver what is due at ``now`` (the thread calls it; so can tests)."""
        with self._lock:
            due = self.groups.due(now, flush=flush)
        for notification in due:
            try:
                self.deliver(notification)
                self.delivered += 1
            except Exception as exc:
                self.failed += 1
                names = ", ".join(sorted({a.rule for a in notification.alerts}))
                log.error("notifier %r could not deliver the %s notification of %s: %s",
                          self.NAME, notification.status, names, describe(exc))
        return due

    def _run(self) -> None:
        while not self._stop.is_set():
            self.pump(self.clock())
            with self._lock:
                next_ns = self.groups.next_due()
            wait = 1.0 if next_ns is None else (next_ns - self.clock()) / 1e9
            self._wake.wait(min(1.0, max(0.01, wait)))
            self._wake.clear()


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---- payloads -----------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ZERO_TIME: Final = "0001-01-01T00:00:00Z"


def plain(text: Any) -> str:
    """``text`` on one line without control characters (a terminal or a log)."""
    return _CONTROL.sub(" ", str(text))


def rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def alert_annotations(alert: Alert) -> dict[str, str]:
    out = {"summary": alert.summary}
    if alert.description:
        out["description"] = alert.description
    if alert.value is not None:
        out["value"] = f"{alert.value:g}"
    if alert.trace_ids:
        out["trace_ids"] = ",".join(alert.trace_ids)
    return out


def _am_alert(alert: Alert) -> dict[str, Any]:
    labels = alert_labels(alert)
    return {
        "status": "firing" if alert.state == "firing" else "resolved",
        "labels": labels,
        "annotations": alert_annotations(alert),
        "startsAt": rfc3339(alert.started_ns),
        "endsAt": rfc3339(alert.ended_ns) if alert.ended_ns else ZERO_TIME,
        "generatorURL": "",
        "fingerprint": fingerprint(labels),
    }


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def alertmanager_webhook(n: Notification, receiver: str = "chainsight") -> dict[str, Any]:
    """Alertmanager's webhook payload (``version: "4"``), what webhook receivers expect."""
    alerts = [_am_alert(a) for a in n.alerts]
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": receiver,
        "groupLabels": n.group_labels,
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": "",
        "alerts": alerts,
    }


def alertmanager_api(n: Notification) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts`` of an Alertmanager: a firing
    alert has no end, a resolved one ends when it resolved."""
    out = []
    for a in n.alerts:
        item: dict[str, Any] = {"labels": alert_labels(a), "annotations": alert_annotations(a),
                                "startsAt": rfc3339(a.started_ns)}
        if a.state != "firing":
            item["endsAt"] = rfc3339(a.ended_ns or time.time_ns())
        out.append(item)
    return out


def _slack_escape(text: str) -> str:
    return plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook message (mrkdwn; the alerts' text escaped)."""
    names = ", ".join(sorted({a.rule for a in n.alerts}))
    count = len(n.firing) if n.status == "firing" else len(n.alerts)
    head = f"*[{n.status.upper()}:{count}]* {_slack_escape(names)}"
    if n.repeat:
        head += " (still firing)"
    lines = [head]
    for a in n.alerts:
        mark = ":red_circle:" if a.state == "firing" else ":white_check_mark:"
        labels = ", ".join(f"{k}={v}" for k, v in sorted((a.labels or {}).items()))
        lines.append(f"{mark} [{_slack_escape(a.severity)}] {_slack_escape(a.summary)}"
                     + (f" ({_slack_escape(labels)})" if labels else ""))
    return {"text": "\n".join(lines)}


def text_lines(n: Notification) -> list[str]:
    """One plain line per alert (the log and stderr notifiers)."""
    out = []
    for a in n.alerts:
        state = "FIRING" if a.state == "firing" else "RESOLVED"
        if n.repeat and a.state == "firing":
            state = "STILL FIRING"
        labels = ", ".join(f"{k}={v}" for k, v in sorted((a.labels or {}).items()))
        line = f"alert {state} [{a.severity}] {a.rule}: {a.summary}"
        if labels:
            line += f" ({labels})"
        if a.trace_ids:
            shown = ", ".join(t[-10:] for t in a.trace_ids[:3])
            more = f" +{len(a.trace_ids) - 3} more" if len(a.trace_ids) > 3 else ""
            line += f"; traces {shown}{more}"
        out.append(plain(line))
    return out
