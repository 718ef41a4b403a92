"""Feedback from the TUI, written straight to the store (no Observer, no pipeline threads).

The scores are built as ``Observer.feedback`` builds them, masked by the
``redaction`` plugin's ``process_score`` (configured from ``plugins.toml``, as
an Observer would configure it), and written through the store's writer, so
row checks apply. Entry-point plugins are not loaded, so ``feedback_recorded``
is not fired from here (the TUI never loaded them).
"""

from __future__ import annotations

from typing import Any

from chainsight.framework.config import (
    ConfigError,
    Settings,
    read_settings,
    resolve_plugin_configs_leniently,
)
from chainsight.framework.model import Score, feedback_scores
from chainsight.plugins.redaction import CONFIG_SCHEMA, redact_scores
from chainsight.storage.engine import display_url
from chainsight.storage.writer import StoreWriter


class FeedbackNotStored(Exception):
    """The store refused a feedback row."""


def _redaction_config() -> dict[str, Any] | None:
    """The ``[plugins.redaction]`` table with its defaults applied; None when
    the plugin is turned off (``enabled = false``)."""
    try:
        settings, _problems = read_settings()
    except ConfigError:  # a named file that does not exist: the defaults, as an Observer does
        settings = Settings()
    if not settings.plugin_enabled("redaction"):
        return None
    configs, _plugin_problems = resolve_plugin_configs_leniently(settings, {"redaction": CONFIG_SCHEMA})
    return configs.get("redaction", {})


def record_feedback(url: str, trace_id: str, span_id: str | None = None, **feedback: Any) -> list[Score]:
    """Store one piece of feedback (``thumbs``, ``rating``, ``comment``) on a
    trace or span; returns the scores as stored. Raises ValueError for bad
    input, StoreUnavailable when the store cannot be reached, and
    FeedbackNotStored when it refused a row."""
    scores = feedback_scores(trace_id, span_id=span_id, **feedback)
    config = _redaction_config()
    if config is not None:
        scores = redact_scores(scores, config)
    writer = StoreWriter(url)
    try:
        rejected = writer.write_scores(scores)
    finally:
        writer.close()
    if rejected:
        reasons = "; ".join(f"{r.row.get('name')}: {r.error}" for r in rejected)
        raise FeedbackNotStored(f"feedback not stored in {display_url(url)}: {reasons}")
    return scores
