"""The plugin around a built-in span check (length, refusal, pii, toxicity,
json_schema): one per observer, built from its ``[plugins.NAME]`` table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from chainsight.framework import hookimpl
from chainsight.framework.model import Score, Span


class SpanCheck(Protocol):
    def check_span(self, span: Span) -> list[Score] | None: ...


C = TypeVar("C", bound=SpanCheck)


class SpanCheckPlugin(Generic[C]):
    """Holds one check, rebuilt by ``configure`` from the validated table (so
    a bad option fails at start-up), and hands it every finished span. Each
    observer gets its own through the module's ``create_plugin()``, so two
    observers in one process can check with different settings."""

    def __init__(self, build: Callable[[Mapping[str, Any]], C], schema: Mapping[str, Any]) -> None:
        self.CONFIG_SCHEMA = schema
        self._build = build
        self.check = build({})

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        self.check = self._build(config)

    @hookimpl
    def check_span(self, span: Span) -> list[Score] | None:
        return self.check.check_span(span)
