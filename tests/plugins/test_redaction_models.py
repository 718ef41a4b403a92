"""Redaction's per-class shortcut for pydantic models gives what the generic
walk gives: the same masked values and counts, the same objects kept as they
were (no copy) and the same ones copied, on LangChain objects and odd models."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr, RootModel, create_model
from pydantic.dataclasses import dataclass as pydantic_dataclass

from chainsight.framework.model_classes import MAX_CLASSES
from chainsight.plugins import redaction
from chainsight.plugins.redaction import Redactor
from chainsight.storage.serialize import dumps

EMAIL = "seeded.person@example.com"
API_KEY = "sk-proj-SEEDk3y0123456789abcdefGHIJ"
T = TypeVar("T")


class Plain(BaseModel):
    text: str = ""
    n: int = 0
    flag: bool = False
    items: tuple[str, ...] = ()
    tags: set[str] = set()
    child: Any = None


class Login(BaseModel):
    user: str
    password: str
    api_key: str | None = None


class Frozen(Plain):
    model_config = ConfigDict(frozen=True)


class Extra(Plain):
    model_config = ConfigDict(extra="allow")
    _secret: str = PrivateAttr(default=EMAIL)


class Box(BaseModel, Generic[T]):
    value: T


class MappingModel(BaseModel, Mapping[str, str]):  # type: ignore[misc]
    text: str = EMAIL

    def __getitem__(self, key: str) -> str:
        return self.text

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(["text"])

    def __len__(self) -> int:
        return 1


class Disguised(BaseModel):
    """isinstance sees ``__class__`` (a dict): the generic walk treats it as a mapping."""

    text: str = EMAIL

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return dict

    def items(self) -> Any:
        return [("text", self.text)]


@pydantic_dataclass
class PydanticDataclass:
    text: str


def _langchain_values() -> list[Any]:
    from langchain_core.documents import Document
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.outputs import ChatGeneration, LLMResult
    from langchain_core.prompt_values import ChatPromptValue

    clean = [SystemMessage("You answer questions about numbers."), HumanMessage("What is it?")]
    ai = AIMessage(
        content="", id="run-1",
        tool_calls=[{"name": "login", "args": {"user": EMAIL, "password": "hunter22"}, "id": "c1"}],
        additional_kwargs={"note": f"key {API_KEY}"},
        usage_metadata={"input_tokens": 4, "output_tokens": 3, "total_tokens": 7},
    )
    history = [*clean, HumanMessage(f"Mail me at {EMAIL}", name="ana"), ai,
               ToolMessage("done", tool_call_id="c1", artifact={"raw": EMAIL})]
    return [
        ChatPromptValue(messages=clean),
        ChatPromptValue(messages=history),
        clean, history, ai,
        AIMessage("The answer is forty-two, as usual.", id="x"),
        AIMessageChunk(content=[{"type": "text", "text": f"write {EMAIL}"}]),
        Document(page_content="doc", metadata={"source": "a.txt", "owner": EMAIL}),
        LLMResult(generations=[[ChatGeneration(message=ai)]], llm_output={"k": API_KEY}),
        {"messages": history, "again": clean},
    ]


def _tricky_values() -> list[Any]:
    loop: dict[str, Any] = {"text": EMAIL}
    loop["self"] = loop
    holder = Plain(child=loop)
    nested = Plain(child=Plain(child=Plain(text=EMAIL)))
    dynamic = create_model("Dynamic", text=(str, ""))(text=EMAIL)
    return [
        Plain(), Plain(text="nothing here", items=("a", "b")),
        Plain(text=EMAIL, n=3, flag=True, items=("x", EMAIL), tags={EMAIL}),
        Frozen(text=EMAIL), Frozen(text="clean"),
        Extra(text="clean", other=EMAIL), Extra(text=EMAIL),
        Box[str](value=EMAIL), Box[list[Plain]](value=[Plain(text=EMAIL), Plain()]),
        RootModel[str](EMAIL), RootModel[list[str]](["a", API_KEY]),
        MappingModel(), Disguised(), PydanticDataclass(text=EMAIL),
        holder, nested, dynamic, [nested, nested],
        Login(user="ana", password="hunter22"), Login(user=EMAIL, password="", api_key="k"),
    ]


def _objects(value: Any, seen: dict[int, Any], depth: int = 0) -> None:
    """Every object reachable from ``value`` (kept alive in ``seen``)."""
    if id(value) in seen or depth > 12:
        return
    seen[id(value)] = value
    for child in _children(value):
        _objects(child, seen, depth + 1)


def _children(value: Any) -> list[Any]:
    if isinstance(value, BaseModel):
        return [getattr(value, name, None) for name in type(value).model_fields]
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    return []


def _shape(value: Any, originals: Mapping[int, Any], depth: int = 0) -> Any:
    """Types, and for each object whether it is the caller's own or a copy."""
    own = id(value) if originals.get(id(value)) is value else "copy"
    if depth > 12:
        return (type(value).__name__, own)
    return (type(value).__name__, own, [_shape(c, originals, depth + 1) for c in _children(value)])


def _redact(value: Any, redactor: Redactor) -> tuple[Any, Counter[str], str]:
    counts: Counter[str] = Counter()
    out = redactor.redact(value, counts)
    return out, counts, dumps(out)


@pytest.mark.filterwarnings("ignore::UserWarning")  # a masked set field becomes a list
@pytest.mark.parametrize("source", [_langchain_values, _tricky_values])
@pytest.mark.parametrize("secrets", [True, False])
def test_model_shortcut_matches_the_generic_walk(
    source: Any, secrets: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    enabled = redaction.SWITCHES if secrets else ("email",)
    redactor = Redactor(enabled)
    for value in source():
        originals: dict[int, Any] = {}
        _objects(value, originals)
        before = dumps(value)
        fast, fast_counts, fast_text = _redact(value, redactor)
        with monkeypatch.context() as m:
            m.setattr(redaction, "_model_fields", lambda cls: None)
            slow, slow_counts, slow_text = _redact(value, redactor)
        assert (fast_counts, fast_text) == (slow_counts, slow_text), value
        assert _shape(fast, originals) == _shape(slow, originals), value
        assert dumps(value) == before  # the caller's objects are untouched


def test_shortcut_is_taken_for_langchain_messages_only_where_safe() -> None:
    from langchain_core.messages import AIMessage

    assert redaction._model_fields(AIMessage) == tuple(AIMessage.model_fields)
    for cls in (MappingModel, Disguised, PydanticDataclass, dict, str, int):
        assert redaction._model_fields(cls) is None, cls


def test_masked_model_is_a_copy_with_the_findings_counted() -> None:
    value = Plain(text=f"mail {EMAIL}", child=Plain(text="clean"))
    counts: Counter[str] = Counter()
    out = Redactor().redact(value, counts)
    assert out is not value and value.text == f"mail {EMAIL}"
    assert out.text == "mail [redacted:email]" and out.child is value.child
    assert counts == {"email": 1}


def test_model_class_cache_is_bounded() -> None:
    redactor = Redactor()
    for i in range(MAX_CLASSES + 10):
        redactor.redact(create_model(f"Dyn{i}", text=(str, ""))(text="x"), Counter())
    assert redaction._model_fields.cache_info().currsize <= MAX_CLASSES
