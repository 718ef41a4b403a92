from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, RootModel, create_model
from pydantic.dataclasses import dataclass as pydantic_dataclass

from chainsight.framework.model_classes import MAX_CLASSES
from chainsight.storage import serialize
from chainsight.storage.serialize import dumps, encode_capped, to_jsonable


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
    # bytes: their length and hash, never their content
    assert out["bytes"] == {"__bytes__": 8, "sha256": hashlib.sha256(b"\x00\x01binary").hexdigest()}
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


class Ratio(float):
    pass


def test_what_orjson_refuses_is_made_plain_by_the_walk() -> None:
    loop: list[Any] = []
    loop.append(loop)
    text = dumps({"loop": loop, "big": 2**70, "small": -(2**63), "ratio": Ratio(0.5),
                  "k\ud800": "v\udfff", 2**65: "big key", (1, 2): "tuple key"})
    text.encode("utf-8")  # no lone surrogate left
    out = json.loads(text)
    assert out["loop"] == ["<cycle>"]
    assert out["big"] == str(2**70) and out["small"] == -(2**63)  # beyond 64 bits: its digits
    assert out["ratio"] == 0.5 and out["k?"] == "v?"
    assert out[str(2**65)] == "big key" and out["(1, 2)"] == "tuple key"


# ---- the pydantic fast path gives the generic path's text ----

class Colour(enum.Enum):
    RED = "red"


class Inner(BaseModel):
    when: dt.datetime
    blob: bytes
    colour: Colour
    ratio: float


class Outer(BaseModel):
    inner: Inner
    items: list[Inner]
    extra: dict[Any, Any]


class Opaque:
    """Not serialisable by pydantic: mode="json" raises, python mode keeps it."""

    def __repr__(self) -> str:
        return "<opaque>"


class HoldsOpaque(BaseModel):
    model_config = {"arbitrary_types_allowed": True}
    thing: Opaque


class DumpFails(BaseModel):
    x: int = 1

    def model_dump(self, **kwargs: Any) -> Any:  # type: ignore[override]
        raise RuntimeError("no dump")


class MappingModel(BaseModel, Mapping[str, int]):  # type: ignore[misc]
    x: int = 1

    def __getitem__(self, key: str) -> int:
        return self.x

    def __iter__(self) -> Any:
        return iter(["x"])

    def __len__(self) -> int:
        return 1


class Disguised(BaseModel):
    """Claims to be a datetime: isinstance sees ``__class__``, type() does not."""

    x: int = 1

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return dt.datetime

    def isoformat(self) -> str:
        return "disguised"


class Cyclic(BaseModel):
    child: Any = None


@pydantic_dataclass
class PydanticDataclass:
    name: str


def _langchain_values() -> list[Any]:
    from langchain_core.documents import Document
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.outputs import ChatGeneration, ChatResult, LLMResult
    from langchain_core.prompt_values import ChatPromptValue, StringPromptValue

    ai = AIMessage(
        content="It is sunny.", id="run-1",
        tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "c1"}],
        usage_metadata={"input_tokens": 4, "output_tokens": 3, "total_tokens": 7},
        response_metadata={"model": "fake", "finish_reason": "stop"},
    )
    history = [SystemMessage("Be brief."), HumanMessage("Weather?", name="ana"), ai,
               ToolMessage("Sunny", tool_call_id="c1", artifact={"raw": b"\x00\x01"})]
    return [
        ChatPromptValue(messages=history),
        history,
        ai,
        AIMessageChunk(content=[{"type": "text", "text": "par"}], id="c"),
        StringPromptValue(text="plain prompt"),
        Document(page_content="doc", metadata={"source": "a.txt", "page": 3}),
        ChatResult(generations=[ChatGeneration(message=ai)]),
        LLMResult(generations=[[ChatGeneration(message=ai)]], llm_output={"n": 1}),
        {"messages": history, "again": history, "last": ai},
    ]


def _tricky_values() -> list[Any]:
    inner = Inner(when=dt.datetime(2024, 5, 1), blob=b"\x00raw", colour=Colour.RED,
                  ratio=float("nan"))
    broken = HoldsOpaque(thing=Opaque())
    loop = Cyclic()
    loop.child = loop
    swapped = Message(role="user", content="hi")
    object.__setattr__(swapped, "model_dump", "not callable")
    return [
        Outer(inner=inner, items=[inner, inner], extra={"k": inner, 2: {3}}),
        broken, DumpFails(), MappingModel(), Disguised(), loop, swapped,
        PydanticDataclass(name="pd"),
        Message(role="a\x00b", content="\ud800 lone surrogate"),
        [Message(role="big", content="x" * 50_000)],
        RootModel[list[int]]([1, 2]),
    ]


def _reference(value: Any, cap: int, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The text from the generic leaf walk alone (no per-class shortcut, no memo)."""
    with monkeypatch.context() as m:
        m.setattr(serialize, "_is_model", lambda cls: False)
        return encode_capped(value, cap)


@pytest.mark.parametrize("source", [_langchain_values, _tricky_values])
def test_model_fast_path_matches_the_generic_leaf(
    source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = source()
    expected = [_reference(v, 10_000, monkeypatch) for v in values]
    assert [encode_capped(v, 10_000) for v in values] == expected


def test_model_fast_path_is_taken_only_for_plain_model_classes() -> None:
    from langchain_core.messages import AIMessage

    assert serialize._is_model(AIMessage) and serialize._is_model(Message)
    for cls in (MappingModel, Disguised, PydanticDataclass, Node, dict, bytes):
        assert not serialize._is_model(cls), cls


def test_model_class_cache_is_bounded() -> None:
    for i in range(MAX_CLASSES + 10):
        encode_capped(create_model(f"Dyn{i}", x=(int, i))(), 1000)
    assert serialize._is_model.cache_info().currsize <= MAX_CLASSES


def test_prepared_batch_rows_match_rows_of_single_spans() -> None:
    """A batch whose spans share message objects: the same rows as each span
    alone (once the content a batch stores once per trace is put back)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_core.prompt_values import ChatPromptValue

    from chainsight.framework.model import Span
    from chainsight.storage.shared_content import inline
    from chainsight.storage.writer import StoreWriter, WriteBatch, _span_row, add_root_text

    messages = [SystemMessage("Be brief."), HumanMessage("Weather in Paris? ana@example.com")]
    answer = AIMessage(content="Sunny.", tool_calls=[{"name": "w", "args": {}, "id": "c1"}])
    spans = []
    for _ in range(3):  # three traces; the same objects in each
        prompt = Span("prompt", "prompt", start_ns=1)
        prompt.inputs, prompt.outputs = {"q": "Weather?"}, ChatPromptValue(messages=messages)
        llm = Span("model", "llm", trace_id=prompt.trace_id, start_ns=2)
        llm.inputs, llm.outputs, llm.metadata = messages, answer, {"raw": answer}
        parser = Span("parser", "parser", trace_id=prompt.trace_id, start_ns=3)
        parser.inputs, parser.outputs, parser.tags = answer, answer.content, ["seq:step:3"]
        spans += [prompt, llm, parser]
    writer = StoreWriter("sqlite://", max_content_bytes=200)
    rows = writer.prepare(WriteBatch(spans=spans))["spans"]
    assert sum(bool(row["content_refs"]) for row in rows) == 3  # each parser's input is its model's answer
    inline(rows)
    alone = [_span_row(span, 200) for span in spans]
    for row in alone:
        add_root_text(row)
    assert rows == alone
    assert any("__truncated__" in (row["outputs"] or "") for row in rows)


@pytest.mark.parametrize("raw", [b"password=hunter2-secret", bytearray(b"sk-0123456789abcdef0123"),
                                 memoryview(b"\xffsecret-token-value" * 10)])
def test_bytes_are_stored_as_length_and_hash_never_content(raw: bytes | bytearray | memoryview) -> None:
    content = bytes(raw)
    text = encode_capped({"payload": raw}, 10_000)
    assert text is not None
    for piece in (content[1:12].decode("latin-1"), base64.b64encode(content[:12]).decode()[:12]):
        assert piece not in text
    assert json.loads(text)["payload"] == {"__bytes__": len(content),
                                           "sha256": hashlib.sha256(content).hexdigest()}
