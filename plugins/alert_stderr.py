"""Built-in plugin ``alert_stderr``: alert notifications on standard error.

One line per alert of each notification, prefixed ``chainsight:``, without
control characters (model names and labels are untrusted text). Grouping
and repeat interval as every notifier (:mod:`chainsight.plugins.alert_notify`);
turn it off with ``[plugins.alert_stderr] enabled = false``.
"""

from __future__ import annotations

import sys
from typing import Final

from chainsight.plugins.alert_notify import Notification, Notifier, policy_schema, text_lines

CONFIG_SCHEMA: Final = policy_schema()


class StderrNotifier(Notifier):
    NAME = "alert_stderr"
    CONFIG_SCHEMA = CONFIG_SCHEMA

    def deliver(self, notification: Notification) -> None:
        stream = sys.stderr
        for line in text_lines(notification):
            stream.write(f"chainsight: {line}\n")
        stream.flush()


def create_plugin() -> StderrNotifier:
    return StderrNotifier()
