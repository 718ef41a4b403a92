"""Built-in plugin ``alert_log``: alert notifications as log records.

Each notification becomes one record per alert on the ``chainsight.alerts``
logger (``alert FIRING [critical] error_rate: 6.0% of model calls failed
... (model=gpt-4o); traces ...``), at ``level`` (default ``info``: an
application that configures logging sees them; one that does not is not
written to twice, as ``alert_stderr`` already says it). Grouping and
repeat interval as every notifier (:mod:`chainsight.plugins.alert_notify`)::

    [plugins.alert_log]
    level = "warning"
    group_by = ["alertname"]
    repeat_interval = "4h"
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from chainsight.plugins.alert_notify import Notification, Notifier, policy_schema, text_lines

LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                 "error": logging.ERROR, "critical": logging.CRITICAL}

CONFIG_SCHEMA: Final = policy_schema({
    "level": {"enum": list(LEVELS), "default": "info",
              "description": "level of firing alerts' records (resolved ones: info or lower)"},
    "logger": {"type": "string", "minLength": 1, "default": "chainsight.alerts"},
})


class LogNotifier(Notifier):
    NAME = "alert_log"
    CONFIG_SCHEMA = CONFIG_SCHEMA

    def setup(self, config: Mapping[str, Any]) -> None:
        self.level = LEVELS[str(config.get("level", "info"))]
        self.logger = logging.getLogger(str(config.get("logger", "chainsight.alerts")))

    def deliver(self, notification: Notification) -> None:
        level = self.level if notification.status == "firing" else min(self.level, logging.INFO)
        for line in text_lines(notification):
            self.logger.log(level, "%s", line)


def create_plugin() -> LogNotifier:
    notifier = LogNotifier()
    notifier.setup({})
    return notifier
