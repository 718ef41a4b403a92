"""Built-in plugin ``jsonlog``: one JSON line per finished span and per alert change.

Ready for Filebeat, Logstash, Vector or ``jq``: each line is one object with
``time`` (ISO 8601, UTC), ``level``, ``event`` (``span`` or ``alert``),
``trace_id`` and ``span_id``, and the span's name, kind, status, latency,
model, provider, tokens, cost and error (an alert's rule, state, severity,
value, threshold and summary). Levels: ERROR for a failed span and a firing
critical alert, WARNING for a span slower than ``slow_ms`` and other
firing alerts, INFO otherwise. Content (inputs, outputs) only with
``include_content = true``, as stored (after redaction).

Opt-in: off until ``path`` (a file, rotated at ``max_bytes`` keeping
``backup_count`` old ones; created owner-only) or ``stderr = true`` is set.
Lines are written on the pipeline worker after the batch was stored.

For the application's own log records, see
:class:`chainsight.framework.trace_context.TraceContextFilter`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.model import Alert, Span
from chainsight.framework.private_files import open_private

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "path": {"type": ["string", "null"], "default": None,
                 "description": "File to write (relative to the working directory); off when absent."},
        "stderr": {"type": "boolean", "default": False, "description": "Write the lines to stderr."},
        "max_bytes": {"type": "integer", "minimum": 0, "default": 10 * 1024 * 1024,
                      "description": "Rotate the file at this size; 0 never rotates."},
        "backup_count": {"type": "integer", "minimum": 0, "default": 5},
        "slow_ms": {"type": "number", "minimum": 0, "default": 10_000,
                    "description": "Spans slower than this are logged at WARNING."},
        "kinds": {"type": "array", "items": {"type": "string"}, "default": [],
                  "description": "Span kinds to log (llm, chain, tool...); all when empty."},
        "include_content": {"type": "boolean", "default": False},
    },
}

_SPAN_FIELDS: Final = ("parent_id", "name", "kind", "status", "model", "provider", "input_tokens",
                       "output_tokens", "cached_tokens", "cost_usd", "error_type", "error",
                       "user_id", "session_id")


def _time(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def span_line(span: Span, level: str, *, include_content: bool = False) -> dict[str, Any]:
    line: dict[str, Any] = {"time": _time(span.end_ns or span.start_ns), "level": level, "event": "span",
                            "trace_id": span.trace_id, "span_id": span.span_id}
    for name in _SPAN_FIELDS:
        value = getattr(span, name)
        if value is not None:
            line[name] = value
    if span.end_ns is not None:
        line["latency_ms"] = round((span.end_ns - span.start_ns) / 1e6, 3)
    if span.first_token_ns is not None:
        line["ttft_ms"] = round((span.first_token_ns - span.start_ns) / 1e6, 3)
    if span.tags:
        line["tags"] = list(span.tags)
    if include_content:
        line["inputs"], line["outputs"] = span.inputs, span.outputs
    return line


def alert_line(alert: Alert, level: str) -> dict[str, Any]:
    line: dict[str, Any] = {"time": _time(alert.ended_ns or alert.started_ns), "level": level,
                            "event": "alert", "alert_id": alert.alert_id, "rule": alert.rule,
                            "state": alert.state, "severity": alert.severity, "summary": alert.summary}
    for name in ("value", "threshold"):
        if getattr(alert, name) is not None:
            line[name] = getattr(alert, name)
    if alert.labels:
        line["labels"] = dict(alert.labels)
    # Alerts about a trace carry its ids as labels, when the rule gives them.
    for key in ("trace_id", "span_id"):
        if key in alert.labels:
            line[key] = alert.labels[key]
    return line


class _Lines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(record.msg, default=str, ensure_ascii=False)


class JsonLog:
    """The plugin: its own logger and handlers, one per observer."""

    CONFIG_SCHEMA: Final = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.logger: logging.Logger | None = None
        self.slow_ns = 10_000 * 1_000_000
        self.kinds: frozenset[str] = frozenset()
        self.include_content = False

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        handlers: list[logging.Handler] = []
        if config.get("path"):
            path = Path(str(config["path"])).expanduser()
            try:
                os.close(open_private(path, os.O_WRONLY | os.O_APPEND))  # owner-only from the start
                handlers.append(logging.handlers.RotatingFileHandler(
                    path, maxBytes=int(config.get("max_bytes", 0)),
                    backupCount=int(config.get("backup_count", 5)), encoding="utf-8"))
            except OSError as exc:
                raise RuntimeError(f"[plugins.jsonlog] path: cannot open {str(path)!r}: "
                                   f"{exc.strerror or exc}") from None
        if config.get("stderr"):
            handlers.append(logging.StreamHandler(sys.stderr))
        if not handlers:
            return
        self.logger = logging.getLogger(f"chainsight.jsonlog.{id(self):x}")
        self.logger.propagate = False  # the lines go to these handlers only
        self.logger.setLevel(logging.INFO)
        for handler in handlers:
            handler.setFormatter(_Lines())
            self.logger.addHandler(handler)
        self.slow_ns = int(float(config.get("slow_ms", 10_000)) * 1_000_000)
        self.kinds = frozenset(config.get("kinds") or ())
        self.include_content = bool(config.get("include_content", False))

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        logger = self.logger
        if logger is None:
            return
        for span in spans:
            if self.kinds and span.kind not in self.kinds:
                continue
            if span.status == "error":
                level = logging.ERROR
            elif span.end_ns is not None and span.end_ns - span.start_ns > self.slow_ns:
                level = logging.WARNING
            else:
                level = logging.INFO
            logger.log(level, span_line(span, logging.getLevelName(level),
                                        include_content=self.include_content))

    @hookimpl
    def alert_changed(self, alert: Alert) -> None:
        if self.logger is None:
            return
        if alert.state == "firing":
            level = logging.ERROR if alert.severity == "critical" else logging.WARNING
        else:
            level = logging.INFO
        self.logger.log(level, alert_line(alert, logging.getLevelName(level)))

    @hookimpl
    def shutdown(self, timeout: float) -> None:
        if self.logger is not None:
            for handler in list(self.logger.handlers):
                handler.close()
                self.logger.removeHandler(handler)
            self.logger = None


def create_plugin() -> JsonLog:
    """A fresh instance per observer (called by the plugin loader)."""
    return JsonLog()
