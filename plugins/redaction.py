"""Built-in plugin ``redaction``: mask PII and secrets before anything sees them.

``process_span`` is ``tryfirst``, so it runs before every other
``process_span`` implementation, and the pipeline runs checks, storage and
sinks after ``process_span``: no check, table row, exporter or log line ever
sees the original values (patterns: :mod:`chainsight.plugins.detectors`).

What is masked: strings anywhere in ``inputs``, ``outputs``, ``attributes``
and ``metadata`` (nested dicts, lists, tuples, LangChain messages and
documents and other pydantic models with their extra fields, dataclasses),
mapping keys, and ``error``; and the ``comment`` and ``label`` of every score
(``process_score``). A finding becomes ``[redacted:KIND]``
(``replacement``). String values under keys that name a secret
(``password``, ``api_key``, ``authorization``, ``cookie``...) are masked whole
as ``credential`` when ``secrets`` is on. Identity fields (``name``,
``user_id``, ``session_id``, ``tags``) are left alone: they are keys the store
groups by.

When in doubt, redact: a container deeper than ``MAX_DEPTH`` (the
serialiser's own limit) becomes ``[redacted:too_deep]`` and one met again
inside itself ``[redacted:cycle]``; bytes are stored as their length and
hash only (:mod:`chainsight.storage.serialize`). A span the walk fails on is stored
without its content (:func:`chainsight.framework.model.withhold_content`), and the
plugin is ``FAIL_CLOSED``: the host counts and reports its failures but never
degrades it into being skipped.

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
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.model import REDACTED, Score, Span, withhold_content
from chainsight.framework.model import WITHHELD as WITHHELD  # re-exported: it used to live here
from chainsight.framework.model_classes import MAX_CLASSES, plain_pydantic_class
from chainsight.framework.replay import REPLAY_OF_SPAN, REPLAY_OF_TRACE
from chainsight.plugins import detectors
from chainsight.plugins.detectors import SECRETS, SENSITIVE_KEY, SWITCHES, Detector
from chainsight.storage.serialize import MAX_DEPTH, dumps, key_to_text

ATTRIBUTE: Final = REDACTED  # the model's name for it; re-exported: it used to live here
LINK_IDS: Final = frozenset({REPLAY_OF_SPAN, REPLAY_OF_TRACE})
# An id has a letter: 16 digits alone may be a card number, and are scanned.
HEX_ID: Final = re.compile(r"(?=[0-9]*[a-f])[0-9a-f]{16,32}")
TOO_DEEP: Final = "too_deep"
"""The kind of what lies deeper than ``MAX_DEPTH`` (the serialiser's limit): replaced, never stored."""
CYCLE: Final = "cycle"
"""The kind of a container met again inside itself: replaced, so only the walked copy is stored."""
_CLEAN_KEYS_MAX: Final = 4096

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
        # Mapping keys with no finding: the same few recur on every span, and
        # a set lookup costs less than a scanner call.
        self._clean_keys: set[str] = set()

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
            # What Chainsight itself put there: its record of findings, and the
            # ids a replay links by (hex ids hold Luhn-valid digit runs).
            own = {k: v for k, v in span.attributes.items()
                   if k == ATTRIBUTE or (k in LINK_IDS and isinstance(v, str) and HEX_ID.fullmatch(v))}
            rest = span.attributes
            if own:
                rest = {k: v for k, v in rest.items() if k not in own}
            new_rest = walk(rest, counts, None, 0, path)
            if new_rest is not rest:
                span.attributes = {**new_rest, **own}
        if counts:
            merged = Counter(span.attributes.get(ATTRIBUTE) or {}) if span.attributes else Counter()
            merged.update(counts)
            # a new dict: the attributes mapping may be shared with the caller
            span.attributes = {**(span.attributes or {}), ATTRIBUTE: dict(sorted(merged.items()))}
        return counts

    def redact(self, value: Any, counts: Counter[str]) -> Any:
        """``value`` with findings masked; the same object when nothing was found."""
        return self._walk(value, counts, None, 0, set())

    def redact_score(self, score: Score) -> Score | None:
        """``score`` with its ``comment`` and ``label`` masked, or None when
        neither holds anything to mask."""
        counts: Counter[str] = Counter()
        comment, label = score.comment, score.label
        if comment:
            comment = self._text(comment, counts, None) if type(comment) is str else self.redact(comment, counts)
        if label:
            label = self._text(label, counts, None) if type(label) is str else self.redact(label, counts)
        if comment is score.comment and label is score.label:
            return None
        return dataclasses.replace(score, comment=comment, label=label)

    def _marker(self, kind: str, counts: Counter[str]) -> str:
        counts[kind] += 1
        return self.replacement.replace("{kind}", kind)

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
        # When in doubt, redact: what lies deeper than the walk goes, and a
        # container met again inside itself, become markers; the original
        # would otherwise be stored as it is.
        if depth >= MAX_DEPTH:
            return self._marker(TOO_DEEP, counts)
        ident = id(value)
        if ident in path:
            return self._marker(CYCLE, counts)
        path.add(ident)
        try:
            return self._walk_container(value, counts, depth + 1, path)
        finally:
            path.discard(ident)

    def _walk_container(self, value: Any, counts: Counter[str], depth: int, path: set[int]) -> Any:
        """``depth``: that of the values inside ``value``."""
        kind: type = type(value)
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
        """Values and keys: a key is stored too, so one holding a finding is masked."""
        walk, text, clean = self._walk, self._text, self._clean_keys
        out: dict[Any, Any] | None = None
        if type(value) is not dict or not value.keys() <= clean:
            return self._walk_mapping_keys(value, counts, depth, path)
        # The common case, in one C-level check: every key was seen before
        # and held nothing, so only values may change.
        for i, (k, v) in enumerate(value.items()):
            new = text(v, counts, k) if type(v) is str else walk(v, counts, k, depth, path)
            if out is not None:
                out[k] = new
            elif new is not v:
                out = dict(itertools.islice(value.items(), i))
                out[k] = new
        return value if out is None else out

    def _walk_mapping_keys(self, value: Mapping[Any, Any], counts: Counter[str], depth: int, path: set[int]) -> Any:
        """:meth:`_walk_mapping` where some key is new or not a string."""
        walk, text, clean = self._walk, self._text, self._clean_keys
        new_keys = [k if type(k) is str and k in clean else self._key(k, counts) for k in value]
        out: dict[Any, Any] | None = None
        for i, (k, v) in enumerate(value.items()):
            key = k if isinstance(k, str) else None
            new = text(v, counts, key) if type(v) is str else walk(v, counts, key, depth, path)
            new_key = new_keys[i]
            if out is not None:
                _put(out, new_key, new)
            elif new is not v or new_key is not k:
                out = dict(itertools.islice(value.items(), i))
                _put(out, new_key, new)
        return value if out is None else out

    def _key(self, key: Any, counts: Counter[str]) -> Any:
        """``key`` masked (a string), or ``key`` itself when it holds nothing."""
        if isinstance(key, str):
            findings = self.scanner.find(key)
            if not findings:
                if type(key) is str:
                    if len(self._clean_keys) >= _CLEAN_KEYS_MAX:
                        self._clean_keys.clear()
                    self._clean_keys.add(key)
                return key
            new, found = detectors.mask(key, findings, self.replacement)
            counts.update(found)
            return new
        if key is None or isinstance(key, bool | int | float):
            return key
        text = key_to_text(key)  # what the serialiser would store (an enum's value, a tuple's str...)
        new = self._text(text, counts, None)
        return key if new is text else new

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
        self, value: Any, fields: Iterable[str], counts: Counter[str], depth: int, path: set[int]
    ) -> Any:
        """A pydantic model: its fields and its extra fields (``model_extra``,
        which the serialiser stores too); string fields skip the _walk call."""
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
        extra = getattr(value, "model_extra", None)  # None unless the class allows extras
        if extra:
            new_extra = self._walk_mapping(extra, counts, depth, path)
            if new_extra is not extra:
                if new_extra.keys() != extra.keys():
                    # An extra's name held a finding: model_copy cannot rename
                    # one, so the model becomes its stored (JSON) form, masked.
                    return walk(_jsonable(value), Counter(), None, depth, path)
                if updates is None:
                    updates = {}
                updates.update((k, v) for k, v in new_extra.items() if v is not extra[k])
        return value.model_copy(update=updates) if updates else value

    def _walk_object(self, value: Any, counts: Counter[str], depth: int, path: set[int]) -> Any:
        walk = self._walk
        fields = getattr(type(value), "model_fields", None)
        if isinstance(fields, Mapping) and hasattr(value, "model_copy"):  # pydantic v2
            return self._walk_model(value, fields, counts, depth, path)
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


@functools.lru_cache(maxsize=MAX_CLASSES)
def _model_fields(cls: type) -> tuple[str, ...] | None:
    """The field names, when _walk_object would take the pydantic branch for
    every instance of ``cls`` (one no earlier check of the walk matches)."""
    if not plain_pydantic_class(cls, _NOT_MODELS):
        return None
    fields = getattr(cls, "model_fields", None)
    if not isinstance(fields, Mapping) or not hasattr(cls, "model_copy"):
        return None
    return tuple(fields)


@functools.lru_cache(maxsize=4096)
def _sensitive_key(key: str) -> bool:
    # The same few keys recur on every span.
    return SENSITIVE_KEY.match(key) is not None


def _put(out: dict[Any, Any], key: Any, value: Any) -> None:
    """``out[key] = value``, where two keys that mask to the same text (two
    emails) are kept apart by a suffix (``"[redacted:email] #2"``), so
    neither value is lost."""
    if key in out:
        n = 2
        while f"{key} #{n}" in out:
            n += 1
        key = f"{key} #{n}"
    out[key] = value


def _jsonable(value: Any) -> Any:
    return json.loads(dumps(value))


class RedactionPlugin:
    """One per observer (see ``create_plugin``), so two observers in one
    process can redact differently."""

    CONFIG_SCHEMA = CONFIG_SCHEMA
    # Never degraded into being skipped (framework.dispatch): the span or
    # score it fails on is stored without its content instead.
    FAIL_CLOSED: Final = True

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
                raise  # counted and reported by the host; never degraded (FAIL_CLOSED)

    @hookimpl(tryfirst=True)
    def process_score(self, score: Score) -> Score | None:
        redactor = self.redactor
        if not redactor.active or not (score.comment or score.label):
            return None
        return redactor.redact_score(score)


def create_plugin() -> RedactionPlugin:
    return RedactionPlugin()


def redact_scores(scores: Iterable[Score], config: Mapping[str, Any] | None = None) -> list[Score]:
    """``scores`` as this plugin's ``process_score`` leaves them, for code that
    stores scores without an Observer (the TUI's feedback). ``config``: the
    resolved ``[plugins.redaction]`` table; None: the defaults."""
    plugin = create_plugin()
    if config is not None:
        plugin.configure(config)
    return [plugin.process_score(score) or score for score in scores]
