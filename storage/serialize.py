"""Safe JSON for stored content: anything in, capped JSON out, never an exception.

Span inputs and outputs are whatever a chain passed around: pydantic messages,
dataclasses, bytes, exceptions, self-referencing dicts. :func:`encode_capped`
turns any of them into JSON text of at most ``max_bytes`` UTF-8 bytes (a
truncation marker replaces what does not fit); :func:`to_jsonable` is the same
as a Python value. One encoder, orjson, writes every text: the common case
(plain dicts, lists, strings, and what :func:`_leaf` makes of other objects)
in one call; what it refuses (cycles, lone surrogates, integers beyond 64
bits) is first made plain by a careful walk. Pydantic models (LangChain
messages) are recognised by class, once per class.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

import orjson

from chainsight.framework.model_classes import MAX_CLASSES, plain_pydantic_class

MAX_DEPTH: Final = 64
"""How deep the careful walk below goes, and redaction too (plugins.redaction
imports it): what redaction replaced with a marker is never written deeper."""
REPR_LIMIT: Final = 1000

# PostgreSQL jsonb rejects the NUL escape; an escaped backslash before "u0000" is text.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _leaf(obj: Any) -> Any:
    """A JSON-friendly stand-in for one object json cannot encode (may still nest)."""
    kind: type = type(obj)
    if _is_model(kind):  # most leaves: LangChain messages; skips the checks below
        return _model_leaf(obj)
    return _leaf_any(obj)


def _model_leaf(obj: Any) -> Any:
    """:func:`_leaf` of an instance of an :func:`_is_model` class."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        dumped, value = _dumped(dump)
        return value if dumped else _safe_repr(obj)  # such a class is no Mapping
    return _leaf_any(obj)


def _dumped(dump: Any) -> tuple[bool, Any]:
    """``(True, model_dump(mode="json") or else model_dump())``, or ``(False, None)``."""
    try:
        return True, dump(mode="json")
    except Exception:
        try:
            return True, dump()
        except Exception:
            return False, None


def _leaf_any(obj: Any) -> Any:
    if isinstance(obj, bytes | bytearray | memoryview):
        # Never the content: bytes are opaque to redaction.
        raw = bytes(obj)
        return {"__bytes__": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, uuid.UUID | Decimal | PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, BaseException):
        return {"type": type(obj).__name__, "message": _safe_str(obj)}
    if isinstance(obj, set | frozenset):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
    dump = getattr(obj, "model_dump", None)  # pydantic v2 (LangChain messages)
    if callable(dump):
        dumped, value = _dumped(dump)
        if dumped:
            return value
    if isinstance(obj, Mapping):
        return dict(obj)
    return _safe_repr(obj)


# Classes _leaf_any matches before it tries model_dump (its Mapping check too).
_EARLIER_LEAVES: Final = (
    bytes, bytearray, memoryview, _dt.datetime, _dt.date, _dt.time, _dt.timedelta,
    uuid.UUID, Decimal, PurePath, enum.Enum, BaseException, set, frozenset, Mapping,
)


@functools.lru_cache(maxsize=MAX_CLASSES)
def _is_model(cls: type) -> bool:
    """Every instance of ``cls`` is one _leaf_any sends straight to model_dump."""
    return plain_pydantic_class(cls, _EARLIER_LEAVES) and not dataclasses.is_dataclass(cls)


def _safe_str(obj: Any) -> str:
    try:
        return str(obj)[:REPR_LIMIT]
    except Exception:
        return _safe_repr(obj)


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"
    return text if len(text) <= REPR_LIMIT else text[:REPR_LIMIT] + "..."


def _walk(obj: Any, depth: int, path: set[int]) -> Any:
    """The careful conversion into what orjson takes: cycles, depth, keys that
    are not strings, NaN, lone surrogates, integers beyond 64 bits."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        return _storable(obj)
    if isinstance(obj, int):
        return obj if _INT_MIN <= obj <= _UINT_MAX else str(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else repr(obj)
    if depth >= MAX_DEPTH:
        return "<max depth>"
    oid = id(obj)
    if oid in path:
        return "<cycle>"
    path.add(oid)
    try:
        if isinstance(obj, dict):
            return {
                _storable(k if isinstance(k, str) else key_to_text(k)): _walk(v, depth + 1, path)
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [_walk(v, depth + 1, path) for v in obj]
        try:
            replacement = _leaf(obj)
        except Exception:
            replacement = _safe_repr(obj)
        if isinstance(replacement, str):
            return _storable(replacement)
        return _walk(replacement, depth + 1, path)
    finally:
        path.discard(oid)


_INT_MIN: Final = -(2**63)
_UINT_MAX: Final = 2**64 - 1


def _storable(text: str) -> str:
    """``text`` with lone surrogates replaced (no UTF-8 encoder takes them)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def key_to_text(key: Any) -> str:
    """The text a mapping key that is not a string is stored as."""
    if isinstance(key, bool | int | float) or key is None:
        return json.dumps(key)
    return key.value if isinstance(key, enum.Enum) and isinstance(key.value, str) else _safe_str(key)


def _encode(obj: Any) -> tuple[str, int]:
    """JSON text for anything, made storable everywhere, and its size in bytes."""
    try:
        raw = orjson.dumps(obj, default=_leaf, option=orjson.OPT_NON_STR_KEYS)
    except Exception:  # cycles, surrogates, huge ints, a raising __repr__...: the careful walk
        raw = orjson.dumps(_walk(obj, 0, set()))
    text = raw.decode("utf-8")
    if "\\u0000" in text:  # PostgreSQL rejects it; same length after the substitution
        text = _NUL_ESCAPE.sub(lambda m: m.group(1) + "\\ufffd", text)
    return text, len(raw)


def _marker(text: str, size: int, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    keep = max(0, max_bytes - 80)
    while True:
        preview = raw[:keep].decode("utf-8", "ignore")
        out = orjson.dumps({"__truncated__": True, "original_bytes": size, "preview": preview})
        overflow = len(out) - max_bytes
        if overflow <= 0 or keep == 0:
            return out.decode("utf-8")
        keep = max(0, keep - overflow)


def encode_capped(obj: Any, max_bytes: int) -> str | None:
    """JSON text of ``obj`` of at most ``max_bytes`` bytes (None stays None)."""
    if obj is None:
        return None
    text, size = _encode(obj)
    if size <= max_bytes:
        return text
    return _marker(text, size, max_bytes)


def to_jsonable(obj: Any, max_bytes: int) -> Any:
    """A JSON-serialisable version of ``obj`` whose encoding fits in ``max_bytes``.

    When it does not fit, the result is ``{"__truncated__": true,
    "original_bytes": N, "preview": "<first bytes of the JSON text>"}``.
    Never raises.
    """
    text = encode_capped(obj, max_bytes)
    return None if text is None else json.loads(text)


def dumps(obj: Any) -> str:
    """JSON text for a JSON column (the engines' ``json_serializer``); never raises."""
    return _encode(obj)[0]


def key_text(obj: Mapping[str, Any]) -> str:
    """Canonical JSON of a small mapping (sorted keys), used as a uniqueness key."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except Exception:
        return dumps({str(k): v for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))})
