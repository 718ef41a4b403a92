"""Built-in plugin ``alert_command``: run a program for each alert notification.

``command`` is the program and its arguments (run directly, never through
a shell). It gets the notification on standard input as Alertmanager's
webhook JSON (see :mod:`chainsight.plugins.alert_webhook`), and in its
environment ``CHAINSIGHT_ALERT_STATUS`` (firing or resolved),
``CHAINSIGHT_ALERT_NAMES`` (the rules, comma-separated) and
``CHAINSIGHT_ALERT_COUNT``. A command that exits non-zero or runs past
``timeout_s`` is a failed delivery (logged with its standard error).
Grouping and repeat interval as every notifier
(:mod:`chainsight.plugins.alert_notify`)::

    [plugins.alert_command]
    command = ["/usr/local/bin/page-oncall", "--team", "llm"]
    timeout_s = 10
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, Final

from chainsight.plugins.alert_notify import (
    Notification,
    Notifier,
    alertmanager_webhook,
    plain,
    policy_schema,
)

CONFIG_SCHEMA: Final = policy_schema({
    "command": {"type": "array", "items": {"type": "string"}, "default": [],
                "description": "program and arguments; nothing runs while empty"},
    "timeout_s": {"type": "number", "exclusiveMinimum": 0, "default": 10},
})


class CommandError(Exception):
    """The command failed."""


class CommandNotifier(Notifier):
    NAME = "alert_command"
    CONFIG_SCHEMA = CONFIG_SCHEMA

    def setup(self, config: Mapping[str, Any]) -> None:
        self.command = [str(a) for a in config.get("command") or ()]
        self.timeout_s = float(config.get("timeout_s", 10))

    def active(self) -> bool:
        return bool(self.command)

    def deliver(self, notification: Notification) -> None:
        import subprocess

        timeout = self.timeout_s
        if self.deadline is not None:
            timeout = max(0.1, min(timeout, self.deadline - time.monotonic()))
        env = {**os.environ,
               "CHAINSIGHT_ALERT_STATUS": notification.status,
               "CHAINSIGHT_ALERT_NAMES": ",".join(sorted({a.rule for a in notification.alerts})),
               "CHAINSIGHT_ALERT_COUNT": str(len(notification.alerts))}
        body = json.dumps(alertmanager_webhook(notification)).encode()
        program = self.command[0]
        try:
            done = subprocess.run(self.command, input=body, capture_output=True, timeout=timeout,
                                  env=env, check=False)
        except subprocess.TimeoutExpired:
            raise CommandError(f"{program}: still running after {timeout:g}s; killed") from None
        except OSError as exc:
            raise CommandError(f"{program}: cannot run it: {exc.strerror or exc}") from None
        if done.returncode != 0:
            said = plain(done.stderr.decode(errors="replace").strip()[-300:])
            raise CommandError(f"{program}: exit status {done.returncode}" + (f": {said}" if said else ""))


def create_plugin() -> CommandNotifier:
    notifier = CommandNotifier()
    notifier.setup({})
    return notifier
