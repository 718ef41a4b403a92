"""Safe JSON for stored content: anything in, capped JSON out, never an exception.

Span inputs and outputs are whatever a chain passed around: pydantic messages,
dataclasses, bytes, exceptions, self-referencing dicts. :func:`encode_capped`
turns any of them into JSON text of at most ``max_bytes`` UTF-8 bytes (a
truncation marker replaces what does not fit); :func:`to_jsonable` is the same
as a Python value. The common case (plain dicts, lists and strings) goes
through the C encoder once; only awkward objects take the slow walk.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any, Final

try:  # ~15x faster than the stdlib encoder on the write path; optional
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]

MAX_DEPTH: Final = 64
REPR_LIMIT: Final = 1000
BYTES_PREVIEW: Final = 64

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
# PostgreSQL jsonb rejects the NUL escape; an escaped backslash before "u0000" is text.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _leaf(obj: Any) -> Any:
    """A JSON-friendly stand-in for one object json cannot encode (may still nest)."""
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        return {"__bytes__": len(raw), "base64": base64.b64encode(raw[:BYTES_PREVIEW]).decode()}
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
        try:
            return dump(mode="json")
        except Exception:
            try:
                return dump()
            except Exception:
                pass
    if isinstance(obj, Mapping):
        return dict(obj)
    return _safe_repr(obj)


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


_fast_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_leaf
)


def _walk(obj: Any, depth: int, path: set[int]) -> Any:
    """The careful conversion: cycles, depth, non-string keys, NaN."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if depth >= MAX_DEPTH:
        return "<max depth>"
    oid = id(obj)
    if oid in path:
        return "<cycle>"
    path.add(oid)
    try:
        if isinstance(obj, dict):
            return {
                (k if isinstance(k, str) else _key(k)): _walk(v, depth + 1, path)
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [_walk(v, depth + 1, path) for v in obj]
        try:
            replacement = _leaf(obj)
        except Exception:
            replacement = _safe_repr(obj)
        if isinstance(replacement, str):
            return replacement
        return _walk(replacement, depth + 1, path)
    finally:
        path.discard(oid)


def _key(key: Any) -> str:
    if isinstance(key, bool | int | float) or key is None:
        return json.dumps(key)
    return key.value if isinstance(key, enum.Enum) and isinstance(key.value, str) else _safe_str(key)


def _encode(obj: Any) -> tuple[str, int]:
    """JSON text for anything, made storable everywhere, and its size in bytes."""
    if _orjson is not None:
        try:
            raw = _orjson.dumps(obj, default=_leaf, option=_orjson.OPT_NON_STR_KEYS)
        except Exception:  # cycles, surrogates, huge ints...: the careful walk below
            pass
        else:
            text = raw.decode("utf-8")
            if "\\u0000" in text:  # same length after the substitution
                text = _NUL_ESCAPE.sub(lambda m: m.group(1) + "\\ufffd", text)
            return text, len(raw)
    try:
        text = _fast_encoder.encode(obj)
    except Exception:  # cycles, NaN, odd keys, recursion, a raising __repr__...
        text = _encoder.encode(_walk(obj, 0, set()))
    return _clean(text)


def _clean(text: str) -> tuple[str, int]:
    """Drop lone surrogates and NUL escapes (PostgreSQL rejects both); count bytes."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
        size = len(text.encode("utf-8"))
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(lambda m: m.group(1) + "\\ufffd", text)
    return text, size


def _marker(text: str, size: int, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    keep = max(0, max_bytes - 80)
    while True:
        preview = raw[:keep].decode("utf-8", "ignore")
        out = _encoder.encode(
            {"__truncated__": True, "original_bytes": size, "preview": preview}
        )
        overflow = len(out.encode("utf-8")) - max_bytes
        if overflow <= 0 or keep == 0:
            return out
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
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except Exception:
        return dumps({str(k): v for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))})
