"""The built-in plugins, loaded by dotted path (``framework`` never imports
``plugins`` by name). Each entry is ``(name, module)``; the name is the
``[plugins.NAME]`` table in plugins.toml and what ``chainsight plugins`` shows.

pluggy calls implementations last-registered first; plugins that must run in a
given place (redaction before everything else) say so with ``tryfirst`` /
``trylast`` rather than relying on this order.
"""

from __future__ import annotations

DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("redaction", "chainsight.plugins.redaction"),
    ("token_estimate", "chainsight.plugins.token_estimate"),
    ("pricing", "chainsight.plugins.pricing"),
    ("length", "chainsight.plugins.length"),
    ("refusal", "chainsight.plugins.refusal"),
    ("pii", "chainsight.plugins.pii"),
    ("toxicity", "chainsight.plugins.toxicity"),
    ("groundedness", "chainsight.plugins.groundedness"),
    ("json_schema", "chainsight.plugins.json_schema"),
    ("reference", "chainsight.plugins.reference"),
    ("judge", "chainsight.plugins.judge"),
    ("eval", "chainsight.plugins.eval_command"),
    ("feedback", "chainsight.plugins.feedback"),
    ("gpu", "chainsight.plugins.gpu"),
    ("prometheus", "chainsight.plugins.prometheus"),
    ("otlp", "chainsight.plugins.otlp"),
    ("jsonlog", "chainsight.plugins.jsonlog"),
    ("stats", "chainsight.plugins.stats"),
    ("export", "chainsight.plugins.export_command"),
    ("sessions", "chainsight.plugins.sessions_command"),
    ("replay", "chainsight.plugins.replay_command"),
    ("retention", "chainsight.plugins.retention"),
    ("serve", "chainsight.plugins.serve"),
    ("alerts", "chainsight.plugins.alerts"),
    ("alert_log", "chainsight.plugins.alert_log"),
    ("alert_stderr", "chainsight.plugins.alert_stderr"),
    ("alert_webhook", "chainsight.plugins.alert_webhook"),
    ("alert_command", "chainsight.plugins.alert_command"),
    ("demo", "chainsight.plugins.demo"),
    ("tui", "chainsight.plugins.tui_command"),
)

# The store the observer hands its pipeline, by dotted path (``module:attribute``)
# like the plugins above, so the core never imports ``storage``: a callable
# ``(url, *, max_content_bytes) -> Store`` (``chainsight.framework.store_api``).
# ``Observer(store_factory=...)`` hands in another one.
DEFAULT_STORE_FACTORY: str = "chainsight.storage.writer:StoreWriter"

# Built-ins that must never be skipped: if one of these (not disabled by the
# user) cannot be loaded or configured, span content is withheld rather than
# stored unredacted.
FAIL_CLOSED_BUILTINS: tuple[str, ...] = ("redaction",)
