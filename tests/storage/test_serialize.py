from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from storage import serialize
from storage.serialize import dumps, encode_capped, to_jsonable


@pytest.fixture(autouse=True, params=["orjson", "stdlib"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with orjson (the fast path) and without it (the fallback)."""
    if request.param == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(serialize, "_orjson", None)
    return str(request.param)


@dataclasses.dataclass
class Node:
    name: str
    child: Any = None


class Message(BaseModel):
    role: str
    content: str


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no")


def roundtrip(value: Any, cap: int = 10_000) -> Any:
    out = to_jsonable(value, cap)
    assert json.loads(json.dumps(out)) == out
    return out


def test_plain_values_pass_through() -> None:
    value = {"a": [1, 2.5, None, True, "é"], "b": {"c": "d"}}
    assert roundtrip(value) == value


def test_awkward_objects() -> None:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    node = Node("a")
    node.child = node
    out = roundtrip({
        "bytes": b"\x00\x01binary",
        "dataclass": Node("x", Node("y")),
        "model": Message(role="user", content="hi"),
        "exc": ValueError("bad input"),
        "cycle": cyclic,
        "dc_cycle": node,
        "set": {3},
        "tuple": (1, 2),
        "when": dt.datetime(2024, 5, 1, 12, 0),
        "id": uuid.UUID(int=1),
        "int_keys": {1: "one"},
        "obj": object(),
        "bad_repr": BadRepr(),
        "nan": float("nan"),
    })
    assert out["bytes"]["__bytes__"] == 8
    assert out["dataclass"] == {"name": "x", "child": {"name": "y", "child": None}}
    assert out["model"] == {"role": "user", "content": "hi"}
    assert out["exc"] == {"type": "ValueError", "message": "bad input"}
    assert out["cycle"]["self"] == "<cycle>"
    assert out["dc_cycle"]["child"] == "<cycle>"
    assert out["set"] == [3] and out["tuple"] == [1, 2]
    assert out["when"] == "2024-05-01T12:00:00"
    assert out["id"] == str(uuid.UUID(int=1))
    assert out["int_keys"] == {"1": "one"}
    assert out["obj"].startswith("<object object")
    assert out["bad_repr"] == "<unrepresentable BadRepr>"
    assert out["nan"] in (None, "nan")


def test_langchain_message() -> None:
    from langchain_core.messages import AIMessage

    out = roundtrip([AIMessage(content="hello")])
    assert out[0]["content"] == "hello" and out[0]["type"] == "ai"


def test_deep_nesting_is_cut() -> None:
    deep: list[Any] = []
    cur = deep
    for _ in range(5000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    text = json.dumps(roundtrip(deep, 1_000_000))
    assert "<max depth>" in text


@pytest.mark.parametrize("cap", [100, 1000, 32_768])
def test_huge_string_is_truncated_with_marker(cap: int) -> None:
    out = roundtrip("x" * 100_000, cap)
    assert out["__truncated__"] is True
    assert out["original_bytes"] == 100_002
    assert out["preview"].startswith('"xxx')
    assert len(json.dumps(out, separators=(",", ":")).encode()) <= cap


def test_truncation_counts_utf8_bytes() -> None:
    text = encode_capped("é" * 600, 1000)  # 1200 bytes, 600 characters
    assert text is not None and json.loads(text)["__truncated__"] is True
    assert len(text.encode()) <= 1000


def test_strings_postgres_cannot_store_are_cleaned() -> None:
    text = encode_capped(["a\x00b", "\ud800x"], 1000)
    assert text is not None and "\\u0000" not in text
    text.encode("utf-8")  # no lone surrogate left


def test_dumps_never_raises() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert json.loads(dumps(loop)) == ["<cycle>"]
    assert encode_capped(None, 10) is None
