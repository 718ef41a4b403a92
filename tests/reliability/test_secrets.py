"""Issue 10, items 7 and 8: redaction fails closed, and no path stores a secret.

Each bypass is checked on what storage would hold (``encode_capped`` of the
redacted span's content fields) and, all together, in the raw bytes of a
real SQLite store and the files beside it. Each has a control: without
redaction the same secret does reach storage, so the search would see it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from chainsight.framework.cli import main
from chainsight.framework.dispatch import GuardedDispatcher
from chainsight.framework.model import WITHHELD, Score, Span
from chainsight.framework.observer import Observer
from chainsight.plugins import redaction
from chainsight.plugins.redaction import Redactor
from chainsight.storage.serialize import MAX_DEPTH, encode_capped
from tests.plugins.cases.store import rows

SECRET = "sk-test-0123456789abcdef0123456789abcdef"
EMAIL = "alice@example.com"
URL_TOKEN = "abc123secret"
URL_PASSWORD = "pa55word"
URL_SIGNATURE = "0f3a9c2b7d1e"
API_BASE = f"https://user:{URL_PASSWORD}@10.1.2.3:8443/v1?api_key={URL_TOKEN}&x=1"
SIGNED_URL = f"https://bucket.example/o?X-Amz-Signature={URL_SIGNATURE}&X-Amz-Expires=60"
CONTENT_FIELDS = ("inputs", "outputs", "metadata", "attributes", "error")


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = {"level": value} if i % 2 else [value]
    return value


class Opaque:
    """An object the walk knows nothing about: stored as its repr."""

    def __repr__(self) -> str:
        return f"Opaque(token={SECRET})"


def _cyclic() -> dict[str, Any]:
    inner: dict[str, Any] = {"note": f"key {SECRET}"}
    inner["self"] = inner
    return {"wrapper": inner}


# name -> (builder of a span holding the secret, the texts that must not be stored)
BYPASSES: dict[str, tuple[Callable[[], Span], tuple[str, ...]]] = {}


def bypass(name: str, *secrets: str) -> Callable[[Callable[[Span], None]], Callable[[Span], None]]:
    def register(fill: Callable[[Span], None]) -> Callable[[Span], None]:
        def build() -> Span:
            span = Span(f"bypass-{name}", "llm")
            fill(span)
            return span

        BYPASSES[name] = (build, secrets or (SECRET,))
        return fill

    return register


@bypass("pydantic extra field")
def _extra(span: Span) -> None:
    span.outputs = AIMessage(content="ok", extra_field=SECRET)


@bypass("extra field under a secret name", "hunter2")
def _extra_password(span: Span) -> None:
    span.inputs = [AIMessage(content="ok", password="hunter2")]


@bypass("extra field whose name is PII", EMAIL)
def _extra_key(span: Span) -> None:
    span.outputs = AIMessage(content="ok", **{EMAIL: "x"})


@bypass("dict keys", EMAIL, SECRET)
def _keys(span: Span) -> None:
    span.inputs = {EMAIL: 1, "nested": {SECRET: "value"}}
    span.attributes = {f"seen.{EMAIL}": True}


@bypass("non-string dict key", EMAIL)
def _tuple_key(span: Span) -> None:
    span.metadata = {(EMAIL, 1): "x"}


@bypass("nested just below the walk's depth")
def _just_too_deep(span: Span) -> None:
    span.inputs = _nested(MAX_DEPTH + 1, SECRET)


@bypass("nested far below the walk's depth")
def _far_too_deep(span: Span) -> None:
    span.outputs = {"deep": _nested(150, {"token": SECRET})}


@bypass("bytes", SECRET, base64.b64encode(SECRET.encode()[:30]).decode()[:20])
def _bytes(span: Span) -> None:
    span.inputs = {"blob": SECRET.encode(), "buffer": bytearray(SECRET.encode())}


@bypass("token, signature and password in URLs", URL_TOKEN, URL_PASSWORD, URL_SIGNATURE)
def _url(span: Span) -> None:
    span.attributes = {"litellm.api_base": API_BASE}
    span.metadata = {"download": SIGNED_URL}


@bypass("an object known only by its repr")
def _opaque(span: Span) -> None:
    span.metadata = {"client": Opaque()}


@bypass("a container inside itself")
def _cycle(span: Span) -> None:
    span.inputs = _cyclic()


def stored_form(span: Span) -> str:
    """The JSON text storage would hold for the span's content fields."""
    return "\n".join(encode_capped(getattr(span, f), 1_000_000) or "" for f in CONTENT_FIELDS)


def redacted(span: Span) -> Span:
    plugin = redaction.create_plugin()
    plugin.configure({})
    plugin.process_span(span)
    return span


@pytest.mark.parametrize("name", list(BYPASSES))
def test_bypass_is_closed_in_the_stored_form(name: str) -> None:
    build, secrets = BYPASSES[name]
    stored = stored_form(redacted(build()))
    for secret in secrets:
        assert secret not in stored, f"{name}: {secret!r} would be stored"
    assert "[redacted:" in stored or '"sha256"' in stored
    # the control: without redaction it is stored (bytes never are: length and hash only)
    unredacted = stored_form(build())
    if name != "bytes":
        assert any(secret in unredacted for secret in secrets), f"{name}: the control stores no secret"


def test_masked_content_keeps_its_shape() -> None:
    span = redacted(BYPASSES["pydantic extra field"][0]())
    assert isinstance(span.outputs, AIMessage)
    assert span.outputs.model_extra == {"extra_field": "[redacted:api_key]"}
    span = redacted(BYPASSES["dict keys"][0]())
    assert span.inputs == {"[redacted:email]": 1, "nested": {"[redacted:api_key]": "value"}}
    span = redacted(BYPASSES["nested just below the walk's depth"][0]())
    assert "[redacted:too_deep]" in stored_form(span)
    assert span.attributes is not None and span.attributes[redaction.ATTRIBUTE] == {"too_deep": 1}
    span = redacted(BYPASSES["bytes"][0]())
    assert json.loads(encode_capped(span.inputs, 10_000) or "")["blob"] == {
        "__bytes__": len(SECRET), "sha256": hashlib.sha256(SECRET.encode()).hexdigest()}


def test_keys_that_mask_alike_are_all_kept() -> None:
    span = Span("keys")
    span.inputs = {EMAIL: 1, "bob@example.com": 2, "carol@example.com": 3}
    redacted(span)
    assert span.inputs == {"[redacted:email]": 1, "[redacted:email] #2": 2, "[redacted:email] #3": 3}


def test_redaction_walks_as_deep_as_the_store_keeps() -> None:
    # the deepest value redaction leaves in place is masked, and stored as it is
    span = Span("edge")
    span.inputs = _nested(MAX_DEPTH - 1, f"mail {EMAIL}")
    redacted(span)
    assert "mail [redacted:email]" in stored_form(span) and "too_deep" not in stored_form(span)


# ---- scores ------------------------------------------------------------------


def test_process_score_masks_comments_and_labels() -> None:
    plugin = redaction.create_plugin()
    plugin.configure({})
    score = Score("comment", "feedback", "t1", comment=f"call me at {EMAIL}, key {SECRET}",
                  label=f"user:{EMAIL}")
    masked = plugin.process_score(score)
    assert masked is not None and masked.score_id == score.score_id
    assert masked.comment == "call me at [redacted:email], key [redacted:api_key]"
    assert masked.label == "user:[redacted:email]"
    assert plugin.process_score(Score("thumbs", "feedback", "t1", value=1.0, label="up")) is None


# ---- redaction that fails every time ------------------------------------------


def _files_bytes(folder: Path) -> bytes:
    """Every file Chainsight left in ``folder``: the store, its -wal and -shm, the spill file."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_redaction_failing_on_every_span_is_never_degraded_and_stores_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken(self: Redactor, span: Span) -> Any:
        raise RuntimeError("redactor broken")

    monkeypatch.setattr(Redactor, "redact_span", broken)
    store = tmp_path / "store"
    store.mkdir()
    url = f"sqlite:///{store / 'secrets.db'}"
    obs = Observer(url, strict=False, entry_points=False, spill_path=store / "spill.jsonl")
    try:
        with caplog.at_level(logging.WARNING, logger="chainsight"):
            for i in range(50):
                if i == 7:  # an error message holding the secret
                    with pytest.raises(ValueError), obs.span("step", kind="llm", inputs={"q": SECRET}):
                        raise ValueError(f"provider rejected {SECRET}")
                    continue
                with obs.span("step", kind="llm", inputs={"q": f"use {SECRET}"},
                              metadata={"key": SECRET}, attributes={"auth": SECRET, "retries": i}) as span:
                    span.outputs = AIMessage(content=SECRET, extra_field=SECRET)
            assert obs.flush(10)
        health = {h.name: h for h in obs.dispatcher.snapshot()}["redaction"]
        assert obs.dispatcher.fail_closed("redaction")
    finally:
        obs.shutdown()

    assert (health.failures, health.degraded) == (50, False)
    stored = rows(url, "spans")
    assert len(stored) == 50
    assert all(r["inputs"] == f'"{WITHHELD}"' for r in stored)
    assert SECRET.encode() not in _files_bytes(store)
    # reported at the 1st and the 10th failure, naming the plugin
    reports = [r.getMessage() for r in caplog.records if "'redaction'" in r.getMessage()]
    assert len(reports) == 2 and "1 failure " in reports[0] and "10 failures" in reports[1]
    # `chainsight plugins` shows the failures, and the plugin as active
    assert main(["plugins", "--db", url, "--json"]) == 0
    info = {p["name"]: p for p in json.loads(capsys.readouterr().out)}["redaction"]
    assert info["status"] == "active"
    assert info["runtime"]["failures"] == 50 and info["runtime"]["degraded"] is False


def test_the_redaction_plugin_is_fail_closed() -> None:
    from chainsight.framework.plugin_manager import new_plugin_manager

    pm = new_plugin_manager()
    pm.register(redaction.create_plugin(), name="redaction")
    assert GuardedDispatcher(pm).fail_closed("redaction")


# ---- every bypass, end to end, in the raw store -------------------------------


def _record_every_bypass(obs: Observer) -> None:
    for build, _ in BYPASSES.values():
        span = build()
        with obs.span(span.name, kind="llm") as live:
            for field in CONTENT_FIELDS:
                value = getattr(span, field)
                if value is not None:
                    setattr(live, field, value)


@pytest.mark.parametrize("with_redaction", [True, False], ids=["redacted", "control"])
def test_no_bypass_reaches_the_raw_store(tmp_path: Path, with_redaction: bool) -> None:
    url = f"sqlite:///{tmp_path / 'bypass.db'}"
    builtins = [("redaction", "chainsight.plugins.redaction")] if with_redaction else []
    obs = Observer(url, strict=True, entry_points=False, builtins=builtins,
                   spill_path=tmp_path / "spill.jsonl")
    try:
        _record_every_bypass(obs)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    assert len(rows(url, "spans")) == len(BYPASSES)
    raw = _files_bytes(tmp_path)
    for name, (_, secrets) in BYPASSES.items():
        for secret in secrets:
            if with_redaction:
                assert secret.encode() not in raw, f"{name}: {secret!r} in the raw store"
            elif name != "bytes":
                assert secret.encode() in raw, f"{name}: control: {secret!r} not stored"


# ---- litellm's api_base --------------------------------------------------------


@pytest.fixture
def litellm_module() -> Iterator[Any]:
    litellm = pytest.importorskip("litellm")
    names = ("callbacks", "success_callback", "failure_callback", "_async_success_callback",
             "_async_failure_callback")
    saved = {n: list(getattr(litellm, n)) for n in names if hasattr(litellm, n)}
    suppress = litellm.suppress_debug_info
    litellm.suppress_debug_info = True
    try:
        yield litellm
    finally:
        for n, v in saved.items():
            setattr(litellm, n, v)
        litellm.suppress_debug_info = suppress


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("with_redaction", [True, False], ids=["redacted", "control"])
def test_litellm_api_base_credentials_are_not_stored(
    tmp_path: Path, litellm_module: Any, with_redaction: bool
) -> None:
    """A real call (refused by a closed local port) lands its api_base in the
    span's attributes; its token and password are masked there."""
    from chainsight.framework.adapters.litellm import LitellmCallback

    url = f"sqlite:///{tmp_path / 'litellm.db'}"
    builtins = [("redaction", "chainsight.plugins.redaction")] if with_redaction else []
    obs = Observer(url, strict=True, entry_points=False, builtins=builtins,
                   spill_path=tmp_path / "spill.jsonl")
    api_base = f"http://user:{URL_PASSWORD}@127.0.0.1:{_closed_port()}/v1?api_key={URL_TOKEN}&x=1"
    try:
        callback = LitellmCallback(obs)
        litellm_module.callbacks = [callback]
        with pytest.raises(Exception, match="Connection error"):
            litellm_module.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                      api_key="sk-not-a-real-key-000", api_base=api_base, max_retries=0, timeout=5)
        assert callback.flush(10)
    finally:
        obs.shutdown()
    [span] = rows(url, "spans")
    attributes = json.loads(span["attributes"])
    raw = _files_bytes(tmp_path)
    if not with_redaction:  # the control: it lands in the attributes as given
        assert URL_TOKEN in attributes["litellm.api_base"] and URL_TOKEN.encode() in raw
        return
    assert attributes["litellm.api_base"].startswith("http://user:[redacted:credential]@")  # (the IP is masked too)
    assert attributes["litellm.api_base"].endswith("/v1/?api_key=[redacted:credential]&x=1")
    assert URL_TOKEN.encode() not in raw and URL_PASSWORD.encode() not in raw


# ---- feedback comments ----------------------------------------------------------


def test_feedback_comment_is_stored_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill.jsonl")
    try:
        with obs.span("answer") as root:
            root.outputs = "42"
        obs.feedback(root.trace_id, thumbs=-1, comment=f"wrong; mail me at {EMAIL}", user_id=EMAIL)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    # and through `chainsight feedback`, whose observer loads redaction too
    assert main(["feedback", root.trace_id, "--rating", "2", "--comment", f"key {SECRET}", "--db", url]) == 0
    capsys.readouterr()
    comments = [r["comment"] for r in rows(url, "scores") if r["source"] == "feedback"]
    assert len(comments) == 2
    raw = _files_bytes(tmp_path)
    assert EMAIL.encode() not in raw and SECRET.encode() not in raw
