"""Built-in plugin ``redaction``: mask PII and secrets before anything sees them.

``process_span`` is ``tryfirst``, so it runs before every other
``process_span`` implementation, and the pipeline runs checks, storage and
sinks after ``process_span``: no check, table row, exporter or log line ever
sees the original values (patterns: :mod:`plugins.detectors`).

What is masked: strings anywhere in ``inputs``, ``outputs``, ``attributes``
and ``metadata`` (nested dicts, lists, tuples, LangChain messages and
documents and other pydantic models, dataclasses) and ``error``. A finding
becomes ``[redacted:KIND]`` (``replacement``). String values under keys that
name a secret (``password``, ``api_key``, ``authorization``, ``cookie``...)
are masked whole as ``credential`` when ``secrets`` is on. Identity fields
(``name``, ``user_id``, ``session_id``, ``tags``) are left alone: they are
keys the store groups by.

The user's objects are never mutated: the span holds references to what the
chain passed around (its message objects, its dicts), so the walk is
copy-on-write. An unchanged value is kept as is (no copy); a changed one is
rebuilt (a new dict or list, ``model_copy(update=...)`` for pydantic models,
``dataclasses.replace`` for dataclasses); any other object with a finding is
replaced by its JSON form (what storage would have stored) with the findings
masked.

What was found is recorded, by kind and count, in
``span.attributes["chainsight.redacted"]`` (``{"email": 2, "api_key": 1}``):
the ``pii`` check adds these counts to what it finds in the text that is
left, so PII is still reported even though the check sees masked text.

Configuration (``[plugins.redaction]``): one switch per PII kind and one for
all secrets, all on by default; ``replacement``; ``sensitive_keys``.

The configuration is process-wide (the module is the plugin): the last
observer configured wins.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from framework import hookimpl
from framework.model import Span
from framework.model_classes import ClassMemo, plain_pydantic_class
from plugins import detectors
from plugins.detectors import SECRETS, SENSITIVE_KEY, SWITCHES, Detector

ATTRIBUTE: Final = "chainsight.redacted"
MAX_DEPTH: Final = 64

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{
            kind: {
                "type": "boolean",
                "default": True,
                "description": f"Mask {'API keys, tokens and private keys' if kind == SECRETS else kind.replace('_', ' ') + 's'}.",
            }
            for kind in SWITCHES
        },
        "replacement": {
            "type": "string",
            "default": detectors.DEFAULT_REPLACEMENT,
            "description": "What a finding becomes; {kind} is replaced by its kind.",
        },
        "sensitive_keys": {
            "type": "boolean",
            "default": True,
            "description": "Mask whole string values under keys such as password, api_key, authorization (needs secrets).",
        },
    },
}


class Redactor:
    """Copy-on-write masking of one span's content."""

    def __init__(
        self,
        enabled: tuple[str, ...] = SWITCHES,
        replacement: str = detectors.DEFAULT_REPLACEMENT,
        sensitive_keys: bool = True,
    ) -> None:
        self.detectors: tuple[Detector, ...] = detectors.detectors_for(enabled)
        self.scanner = detectors.Scanner(self.detectors)
        self.replacement = replacement
        self.mask_keys = sensitive_keys and SECRETS in enabled

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Redactor:
        enabled = tuple(kind for kind in SWITCHES if config.get(kind, True))
        return cls(
            enabled,
            str(config.get("replacement", detectors.DEFAULT_REPLACEMENT)),
            bool(config.get("sensitive_keys", True)),
        )

    @property
    def active(self) -> bool:
        return bool(self.detectors) or self.mask_keys

    def redact_span(self, span: Span) -> Counter[str]:
        counts: Counter[str] = Counter()
        walk = self._walk
        path: set[int] = set()  # empty again after each walk
        for field in ("inputs", "outputs", "metadata"):
            value = getattr(span, field)
            if value is not None:
                new = walk(value, counts, None, 0, path)
                if new is not value:
                    setattr(span, field, new)
        if span.error:
            span.error = walk(span.error, counts, None, 0, path)
        if span.attributes:
            previous = span.attributes.get(ATTRIBUTE)
            rest = span.attributes
            if ATTRIBUTE in rest:
                rest = {k: v for k, v in rest.items() if k != ATTRIBUTE}
            new_rest = walk(rest, counts, None, 0, path)
            if new_rest is not rest:
                span.attributes = dict(new_rest)
                if previous is not None:
                    span.attributes[ATTRIBUTE] = previous
        if counts:
            merged = Counter(span.attributes.get(ATTRIBUTE) or {}) if span.attributes else Counter()
            merged.update(counts)
            # a new dict: the attributes mapping may be shared with the caller
            span.attributes = {**(span.attributes or {}), ATTRIBUTE: dict(sorted(merged.items()))}
        return counts

    def redact(self, value: Any, counts: Counter[str]) -> Any:
        """``value`` with findings masked; the same object when nothing was found."""
        return self._walk(value, counts, None, 0, set())

    def _text(self, text: str, counts: Counter[str], key: str | None) -> str:
        if key is not None and self.mask_keys and text and _sensitive_key(key):
            if text == self.replacement.replace("{kind}", "credential"):
                return text
            counts["credential"] += 1
            return self.replacement.replace("{kind}", "credential")
        findings = self.scanner.find(text)
        if not findings:
            return text
        new, found = detectors.mask(text, findings, self.replacement)
        counts.update(found)
        return new

    def _walk(self, value: Any, counts: Counter[str], key: str | None, depth: int, path: set[int]) -> Any:
        kind = type(value)
        if kind is str:
            return self._text(value, counts, key)
        if kind not in _CONTAINERS:  # exact dicts, lists and tuples skip these checks
            if isinstance(value, str):
                return self._text(value, counts, key)
            if value is None or isinstance(value, _SCALARS):
                return value
        if kind in _PLAIN and not value:  # never ask other objects (numpy arrays raise)
            return value
        ident = id(value)
        if depth >= MAX_DEPTH or ident in path:
            return value
        path.add(ident)
        try:
            return self._walk_container(value, counts, depth + 1, path)
        finally:
            path.discard(ident)

    def _walk_container(self, value: Any, counts: Counter[str], depth: int, path: set[int]) -> Any:
        """``depth``: that of the values inside ``value``."""
        kind = type(value)
        if kind is dict:  # exact types first: an ABC isinstance check costs more
            return self._walk_mapping(value, counts, depth, path)
        if kind is list or kind is tuple:
            return self._walk_items(value, counts, depth, path)
        fields = _model_fields(kind)
        if fields is not None:
            return self._walk_model(value, fields, counts, depth, path)
        if isinstance(value, Mapping):
            return self._walk_mapping(value, counts, depth, path)
        if isinstance(value, list | tuple | set | frozenset):
            return self._walk_items(value, counts, depth, path)
        return self._walk_object(value, counts, depth, path)

    # Copy-on-write: nothing is copied until a value changes. Plain string
    # values (most of them) skip the _walk call.

    def _walk_mapping(self, value: Mapping[Any, Any], counts: Counter[str], depth: int, path: set[int]) -> Any:
        walk, text = self._walk, self._text
        out: dict[Any, Any] | None = None
        for i, (k, v) in enumerate(value.items()):
            key = k if isinstance(k, str) else None
            new = text(v, counts, key) if type(v) is str else walk(v, counts, key, depth, path)
            if out is not None:
                out[k] = new
            elif new is not v:
                out = dict(itertools.islice(value.items(), i))
                out[k] = new
        return value if out is None else out

    def _walk_items(self, value: Any, counts: Counter[str], depth: int, path: set[int]) -> Any:
        """A list, tuple, set or frozenset: a changed one becomes a tuple if it was one, else a list."""
        walk, text = self._walk, self._text
        items = value if isinstance(value, list | tuple) else list(value)
        new_items: list[Any] | None = None
        for i, v in enumerate(items):
            new = text(v, counts, None) if type(v) is str else walk(v, counts, None, depth, path)
            if new is not v:
                if new_items is None:
                    new_items = list(items)
                new_items[i] = new
        if new_items is None:
            return value
        return tuple(new_items) if isinstance(value, tuple) else new_items

    def _walk_model(
        self, value: Any, fields: tuple[str, ...], counts: Counter[str], depth: int, path: set[int]
    ) -> Any:
        """What :meth:`_walk_object` does with a pydantic model, for a class
        :func:`_model_fields` vouches for; string fields skip the _walk call."""
        walk, text = self._walk, self._text
        updates: dict[str, Any] | None = None
        for name in fields:
            old = getattr(value, name, None)
            if type(old) is str:
                if not old:
                    continue
                new = text(old, counts, name)
            elif old is None or (not old and type(old) in _PLAIN):
                continue
            else:
                new = walk(old, counts, name, depth, path)
            if new is not old:
                if updates is None:
                    updates = {}
                updates[name] = new
        return value.model_copy(update=updates) if updates else value

    def _walk_object(self, value: Any, counts: Counter[str], depth: int, path: set[int]) -> Any:
        walk = self._walk
        fields = getattr(type(value), "model_fields", None)
        if isinstance(fields, Mapping) and hasattr(value, "model_copy"):  # pydantic v2
            updates = {}
            for name in fields:
                old = getattr(value, name, None)
                if old is None or (not old and type(old) in _PLAIN):
                    continue
                new = walk(old, counts, name, depth, path)
                if new is not old:
                    updates[name] = new
            return value.model_copy(update=updates) if updates else value
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            dc_updates = {}
            for f in dataclasses.fields(value):
                old = getattr(value, f.name, None)
                new = walk(old, counts, f.name, depth, path)
                if new is not old:
                    dc_updates[f.name] = new
            if not dc_updates:
                return value
            try:
                return dataclasses.replace(value, **dc_updates)
            except Exception:
                return walk(_jsonable(value), counts, None, depth, path)
        # Anything else is stored as its JSON form; mask that if it holds anything.
        form = _jsonable(value)
        local: Counter[str] = Counter()
        new = walk(form, local, None, depth, path)
        if new is form:
            return value
        counts.update(local)
        return new


# Types whose empty values hold nothing to mask: skipped before any walk call
# (most fields of a LangChain message are None, "", {} or []).
_PLAIN: Final = frozenset({str, dict, list, tuple, bool, int, float})
_SCALARS: Final = (bool, int, float, bytes, bytearray)  # a tuple: faster than a union
_CONTAINERS: Final = frozenset({dict, list, tuple})


_NOT_MODELS: Final = (str, *_SCALARS, Mapping, list, tuple, set, frozenset)


def _plain_model_fields(cls: type) -> tuple[str, ...] | None:
    """The field names, when _walk_object would take the pydantic branch for
    every instance of ``cls`` (one no earlier check of the walk matches)."""
    if not plain_pydantic_class(cls, _NOT_MODELS):
        return None
    fields = getattr(cls, "model_fields", None)
    if not isinstance(fields, Mapping) or not hasattr(cls, "model_copy"):
        return None
    return tuple(fields)


_model_fields = ClassMemo(_plain_model_fields)


@functools.lru_cache(maxsize=4096)
def _sensitive_key(key: str) -> bool:
    # The same few keys recur on every span.
    return SENSITIVE_KEY.match(key) is not None


def _jsonable(value: Any) -> Any:
    from storage.serialize import dumps

    return json.loads(dumps(value))


class RedactionPlugin:
    """One per observer (see ``create_plugin``), so two observers in one
    process can redact differently."""

    CONFIG_SCHEMA = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.redactor = Redactor()

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        self.redactor = Redactor.from_config(config)

    @hookimpl(tryfirst=True)
    def process_span(self, span: Span) -> None:
        redactor = self.redactor
        if redactor.active:
            try:
                redactor.redact_span(span)
            except Exception:
                withhold_content(span)  # fail closed: nothing unredacted is stored
                raise  # counted and logged by the host like any plugin failure


WITHHELD: Final = "[withheld: redaction failed]"


def withhold_content(span: Span) -> None:
    """Replace everything redaction would have read, after it failed on ``span``."""
    for field in ("inputs", "outputs", "metadata"):
        if getattr(span, field) is not None:
            setattr(span, field, WITHHELD)
    if span.error:
        span.error = WITHHELD
    if span.attributes:
        span.attributes = {k: v for k, v in span.attributes.items()
                           if isinstance(v, int | float | bool)}


def create_plugin() -> RedactionPlugin:
    return RedactionPlugin()
