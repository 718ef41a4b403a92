"""Built-in plugin ``alert_webhook``: alert notifications as JSON POSTs.

Each target gets every notification (grouped and repeated as every
notifier does, :mod:`chainsight.plugins.alert_notify`) in its ``format``:

* ``alertmanager`` (default): Alertmanager's webhook payload (``version:
  "4"``, ``groupKey``, ``status``, ``alerts[]``), what webhook receivers
  (PagerDuty and Opsgenie bridges, your own service) expect;
* ``alertmanager_api``: the list of alerts an Alertmanager takes at
  ``POST /api/v2/alerts``, to hand alerts to an existing one (it then does
  its own routing, grouping and silencing);
* ``slack``: a Slack incoming-webhook message, ``{"text": ...}``.

Secrets are referenced, never written: ``url = { env = "SLACK_WEBHOOK_URL" }``,
``headers = { Authorization = { env = "ALERT_TOKEN" } }``. A request that
fails (connection refused, no answer within ``timeout_s``, HTTP 5xx or 429)
is retried ``retries`` times, waiting ``backoff_s``, then twice that, and
so on; other 4xx answers are not retried. URLs are never logged beyond their
scheme and host (a Slack URL's path is its secret)::

    [plugins.alert_webhook]
    targets = [
      { url = { env = "SLACK_WEBHOOK_URL" }, format = "slack" },
      { url = "http://127.0.0.1:9093/api/v2/alerts", format = "alertmanager_api" },
    ]
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from chainsight.plugins.alert_notify import (
    Notification,
    Notifier,
    alertmanager_api,
    alertmanager_webhook,
    describe,
    policy_schema,
    slack,
)

FORMATS: Final = ("alertmanager", "alertmanager_api", "slack")

CONFIG_SCHEMA: Final = policy_schema({
    "targets": {
        "type": "array",
        "default": [],
        "description": "where notifications are POSTed",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "pattern": "^https?://",
                        "description": "http(s) URL, or { env = \"VAR\" }"},
                "format": {"enum": list(FORMATS), "default": "alertmanager"},
                "headers": {"type": "object", "additionalProperties": {"type": "string"},
                            "default": {}},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 5},
                "retries": {"type": "integer", "minimum": 0, "default": 3},
                "backoff_s": {"type": "number", "minimum": 0, "default": 1},
            },
        },
    },
})


class WebhookError(Exception):
    """A notification could not be delivered to a target."""


@dataclass(frozen=True)
class Target:
    url: str
    format: str = "alertmanager"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 1.0

    @property
    def where(self) -> str:
        """The URL without its path, query or credentials, for messages."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}/…" if parts.path not in ("", "/") else \
            f"{parts.scheme}://{host}{port}"

    def payload(self, notification: Notification) -> Any:
        if self.format == "slack":
            return slack(notification)
        if self.format == "alertmanager_api":
            return alertmanager_api(notification)
        return alertmanager_webhook(notification)


class WebhookNotifier(Notifier):
    NAME = "alert_webhook"
    CONFIG_SCHEMA = CONFIG_SCHEMA

    def setup(self, config: Mapping[str, Any]) -> None:
        self.targets = [Target(url=str(t["url"]), format=str(t.get("format", "alertmanager")),
                               headers=dict(t.get("headers") or {}),
                               timeout_s=float(t.get("timeout_s", 5)),
                               retries=int(t.get("retries", 3)),
                               backoff_s=float(t.get("backoff_s", 1)))
                        for t in config.get("targets") or ()]

    def active(self) -> bool:
        return bool(self.targets)

    def deliver(self, notification: Notification) -> None:
        failures = []
        for target in self.targets:
            try:
                self.post(target, notification)
            except WebhookError as exc:
                failures.append(str(exc))
        if failures:
            raise WebhookError("; ".join(failures))

    def post(self, target: Target, notification: Notification) -> None:
        import urllib.error  # here: urllib.request costs an observer's start-up ~10 ms
        import urllib.request

        body = json.dumps(target.payload(notification)).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "chainsight-alerts",
                   **target.headers}
        attempts = target.retries + 1
        last = ""
        for attempt in range(attempts):
            timeout = target.timeout_s
            if self.deadline is not None:
                timeout = min(timeout, self.deadline - time.monotonic())
                if timeout <= 0:
                    raise WebhookError(f"{target.where}: not sent before the shutdown deadline"
                                       + (f" (last attempt: {last})" if last else ""))
            request = urllib.request.Request(target.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                exc.close()
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code < 500 and exc.code != 429:
                    raise WebhookError(f"{target.where}: {last} (not retried)") from None
            except urllib.error.URLError as exc:
                last = describe(exc.reason) if isinstance(exc.reason, BaseException) else str(exc.reason)
            except (TimeoutError, OSError) as exc:
                last = describe(exc)
            if attempt + 1 < attempts:
                delay = target.backoff_s * 2**attempt
                if self.deadline is not None:
                    delay = min(delay, max(0.0, self.deadline - time.monotonic()))
                time.sleep(delay)
        raise WebhookError(f"{target.where}: failed {attempts} time{'s' if attempts > 1 else ''}, "
                           f"last: {last}")


def create_plugin() -> WebhookNotifier:
    notifier = WebhookNotifier()
    notifier.setup({})
    return notifier
