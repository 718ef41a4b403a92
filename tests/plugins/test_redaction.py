"""Redaction: masking in nested content and messages without mutating the
caller's objects, per-kind switches, and an end-to-end run showing that the
store and the exporters never see a seeded secret or email."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage

from chainsight.framework import hookimpl
from chainsight.framework.model import Score, Span
from chainsight.framework.observer import Observer
from chainsight.plugins import redaction
from chainsight.plugins.detectors import SWITCHES
from chainsight.plugins.redaction import ATTRIBUTE, Redactor
from chainsight.storage.serialize import dumps
from tests.plugins.cases.store import all_text_rows, rows, score_rows

EMAIL = "seeded.person@example.com"
API_KEY = "sk-proj-SEEDk3y0123456789abcdefGHIJ"
AWS = "AKIAZZSEEDKEY0123456"
CARD = "4111 1111 1111 1111"
SEEDS = (EMAIL, API_KEY, AWS, CARD, "seeded.person", "SEEDk3y", "ZZSEEDKEY", "s3cretPassw0rd")


def test_masks_nested_structures_copy_on_write() -> None:
    inputs = {"messages": [{"role": "user", "content": f"I am {EMAIL}"}], "n": 3, "flag": True,
              "nested": ({"deep": [f"key {API_KEY}"]},), "clean": {"a": "nothing here"}}
    original = dumps(inputs)
    counts: Any = {}
    from collections import Counter

    counts = Counter()
    out = Redactor().redact(inputs, counts)
    assert dumps(inputs) == original  # the caller's dict is untouched
    assert out["messages"][0]["content"] == "I am [redacted:email]"
    assert out["nested"][0]["deep"] == ["key [redacted:api_key]"]
    assert isinstance(out["nested"], tuple)
    assert out["clean"] is inputs["clean"]  # unchanged branches are shared, not copied
    assert out["n"] == 3 and out["flag"] is True
    assert counts == {"email": 1, "api_key": 1}
    clean = {"a": ["b", {"c": "d"}]}
    assert Redactor().redact(clean, Counter()) is clean


def test_late_changes_keep_order_and_container_types() -> None:
    # Containers are copied only at their first changed value: what came
    # before is kept, in order, and the result has the same type rules.
    from collections import Counter, OrderedDict

    counts: Counter[str] = Counter()
    inputs = {"a": "plain", "b": 1, "c": ("x", f"mail {EMAIL}"), "d": {f"set {EMAIL}"},
              "e": OrderedDict(k="v", m=EMAIL), "f": ["y", "z"], 3: EMAIL}
    out = Redactor().redact(inputs, counts)
    assert list(out) == ["a", "b", "c", "d", "e", "f", 3]
    assert out["a"] is inputs["a"] and out["f"] is inputs["f"]
    assert out["c"] == ("x", "mail [redacted:email]")
    assert out["d"] == ["set [redacted:email]"]
    assert out["e"] == {"k": "v", "m": "[redacted:email]"} and type(out["e"]) is dict
    assert out[3] == "[redacted:email]"
    assert counts == {"email": 4}


def test_langchain_messages_are_copied_not_mutated() -> None:
    human = HumanMessage(content=f"my card is {CARD}")
    ai = AIMessage(content=[{"type": "text", "text": f"mail {EMAIL}"}],
                   tool_calls=[{"name": "send", "args": {"to": EMAIL}, "id": "call_1"}])
    doc = Document(page_content=f"contact {EMAIL}", metadata={"source": "crm"})
    span = Span("model", "llm")
    span.inputs = [human]
    span.outputs = {"message": ai, "docs": [doc]}
    Redactor().redact_span(span)
    assert human.content == f"my card is {CARD}"  # user's objects intact
    assert ai.tool_calls[0]["args"]["to"] == EMAIL
    assert doc.page_content == f"contact {EMAIL}"
    red_human = span.inputs[0]
    assert isinstance(red_human, HumanMessage) and red_human is not human
    assert red_human.content == "my card is [redacted:credit_card]"
    red_ai = span.outputs["message"]
    assert isinstance(red_ai, AIMessage)
    assert red_ai.content == [{"type": "text", "text": "mail [redacted:email]"}]
    assert red_ai.tool_calls[0]["args"]["to"] == "[redacted:email]"
    assert span.outputs["docs"][0].page_content == "contact [redacted:email]"
    assert span.attributes == {ATTRIBUTE: {"credit_card": 1, "email": 3}}


def test_attributes_metadata_error_and_sensitive_keys() -> None:
    @dataclasses.dataclass(frozen=True)
    class Config:
        endpoint: str
        password: str

    class Opaque:
        def __repr__(self) -> str:
            return f"Opaque(owner={EMAIL})"

    user_attrs = {"http.headers": {"Authorization": "Basic dXNlcjpwYXNz", "accept": "json"},
                  "tool.args": {"api_key": "short-key", "to": EMAIL}, "count": 2}
    span = Span("call", "tool")
    span.attributes = user_attrs
    span.metadata = {"cfg": Config("https://api.example", "s3cretPassw0rd"), "obj": Opaque()}
    span.error = f"SMTP rejected {EMAIL}"
    Redactor().redact_span(span)
    assert user_attrs["tool.args"]["to"] == EMAIL  # the caller's mapping is untouched
    assert span.attributes is not None
    assert span.attributes["http.headers"] == {"Authorization": "[redacted:credential]", "accept": "json"}
    assert span.attributes["tool.args"] == {"api_key": "[redacted:credential]", "to": "[redacted:email]"}
    assert span.attributes["count"] == 2
    assert span.metadata is not None
    assert span.metadata["cfg"].password == "[redacted:credential]"
    assert span.metadata["obj"] == "Opaque(owner=[redacted:email])"  # its stored (JSON) form, masked
    assert span.error == "SMTP rejected [redacted:email]"
    assert span.attributes[ATTRIBUTE] == {"credential": 3, "email": 3}


def test_per_kind_switches() -> None:
    text = f"{EMAIL} 415-555-0134 {API_KEY}"
    no_email = Redactor.from_config({"email": False})
    from collections import Counter

    assert no_email.redact(text, Counter()) == f"{EMAIL} [redacted:phone] [redacted:api_key]"
    no_secrets = Redactor.from_config({"secrets": False})
    assert no_secrets.redact({"password": "x" * 8, "t": text}, Counter()) == {
        "password": "x" * 8, "t": f"[redacted:email] [redacted:phone] {API_KEY}"}
    nothing = Redactor.from_config({k: False for k in SWITCHES})
    assert not nothing.active
    custom = Redactor.from_config({"replacement": "<{kind}>"})
    assert custom.redact(EMAIL, Counter()) == "<email>"


def test_schema_defaults_turn_everything_on() -> None:
    from chainsight.framework.config import apply_defaults

    config = apply_defaults(redaction.CONFIG_SCHEMA, {})
    assert all(config[k] is True for k in SWITCHES)
    assert config["replacement"] == "[redacted:{kind}]"


def test_redaction_runs_before_other_process_span_hooks(tmp_path: Path) -> None:
    seen: list[Any] = []

    class Early:
        @hookimpl(tryfirst=False)
        def process_span(self, span: Span) -> None:
            seen.append(span.outputs)

    obs = Observer(f"sqlite:///{tmp_path / 'r.db'}", strict=True, entry_points=False,
                   builtins=[("redaction", "chainsight.plugins.redaction")], plugins=[Early()],
                   spill_path=tmp_path / "spill")
    try:
        with obs.span("root") as span:
            span.outputs = EMAIL
        assert obs.flush(5)
    finally:
        obs.shutdown()
    assert seen == ["[redacted:email]"]


class Collector:
    """A test plugin: an exporter that keeps the JSON of everything it receives."""

    name = "collector"

    def __init__(self) -> None:
        self.exported: list[str] = []
        self.span_ids: list[str] = []

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        for span in spans:
            self.exported.append(dumps(span.to_dict()))
            self.span_ids.append(span.span_id)


CHECKS = [("redaction", "chainsight.plugins.redaction"), ("pii", "chainsight.plugins.pii"), ("refusal", "chainsight.plugins.refusal"),
          ("toxicity", "chainsight.plugins.toxicity"), ("length", "chainsight.plugins.length"),
          ("groundedness", "chainsight.plugins.groundedness")]


def run_seeded_chain(obs: Observer) -> str:
    user_message = HumanMessage(content=f"I'm {EMAIL}, card {CARD}; use {API_KEY}")
    with obs.span("rag", inputs={"question": user_message, "headers": {"authorization": f"Bearer {API_KEY}"}},
                  attributes={"aws": AWS}, metadata={"owner": EMAIL}, user_id="u1") as root:
        with obs.span("retrieve", kind="retriever") as retr:
            retr.outputs = [Document(page_content=f"Customer {EMAIL} pays with card {CARD}.")]
        with obs.span("llm", kind="llm", model="gpt-4o-mini", inputs=[user_message]) as llm:
            llm.input_tokens, llm.output_tokens, llm.cost_usd = 12, 30, 0.0002
            llm.outputs = AIMessage(content=f"Customer {EMAIL} pays with card {CARD}. Key {API_KEY}.",
                                    tool_calls=[{"name": "email", "args": {"to": EMAIL, "key": API_KEY}, "id": "c1"}])
        with pytest.raises(RuntimeError), obs.span("tool", kind="tool", inputs={"to": EMAIL}):
            raise RuntimeError(f"could not reach {EMAIL} with {AWS}")
        root.outputs = {"answer": f"Customer {EMAIL} pays with card {CARD}."}
    obs.feedback(root.trace_id, thumbs=-1)
    assert user_message.content.startswith(f"I'm {EMAIL}")  # the caller's message is intact
    return root.trace_id


def test_store_and_exporters_never_see_seeded_secrets(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'chainsight.db'}"
    collector = Collector()
    obs = Observer(db_url, strict=True, entry_points=False, builtins=CHECKS, plugins=[collector],
                   spill_path=tmp_path / "spill")
    try:
        trace_id = run_seeded_chain(obs)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    assert len(collector.span_ids) == 4
    texts = all_text_rows(db_url)
    assert any(t == "spans" for t, _, _ in texts)
    for seed in SEEDS:
        leaks = [(t, c) for t, c, v in texts if seed in v]
        assert not leaks, f"{seed!r} stored in {leaks}"
        assert not [e for e in collector.exported if seed in e], f"{seed!r} exported"
    spans = {r["name"]: r for r in rows(db_url, "spans")}
    assert "[redacted:email]" in spans["rag"]["inputs"]
    assert "[redacted:credit_card]" in spans["llm"]["outputs"]
    assert "[redacted:" in (spans["tool"]["error"] or "")
    scores = {(r["name"], r["span_id"]): r for r in score_rows(db_url)}
    pii = scores[("pii", spans["llm"]["span_id"])]
    assert pii["passed"] == 0 and "email" in pii["label"] and "api_key" in pii["label"]
    assert ("groundedness", spans["rag"]["span_id"]) in scores
    assert any(r["trace_id"] == trace_id and r["source"] == "feedback" for r in score_rows(db_url))


def test_without_redaction_the_seed_is_stored(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'chainsight.db'}"
    """The control: the scan above would catch a leak."""
    obs = Observer(db_url, strict=True, entry_points=False, builtins=CHECKS[1:],
                   spill_path=tmp_path / "spill")
    try:
        run_seeded_chain(obs)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    assert any(EMAIL in v for _, _, v in all_text_rows(db_url))


class Unreadable(dict):  # type: ignore[type-arg]
    """A mapping redaction cannot walk: its items() raises."""

    def items(self) -> Any:
        raise RuntimeError("unreadable")


class Ambiguous:
    """Truth value undefined, like a numpy array."""

    def __bool__(self) -> bool:
        raise ValueError("ambiguous truth value")

    def __repr__(self) -> str:
        return "Ambiguous()"


def test_a_span_redaction_fails_on_is_stored_without_its_content(tmp_path: Path) -> None:
    """Fail closed: the failure is counted like any plugin failure, and the
    span is stored with its content withheld, never unredacted."""
    db_url = f"sqlite:///{tmp_path / 'r.db'}"
    obs = Observer(db_url, entry_points=False, builtins=[("redaction", "chainsight.plugins.redaction")],
                   spill_path=tmp_path / "spill")
    try:
        with obs.span("bad") as bad:
            bad.inputs = {"q": EMAIL, "odd": Unreadable(x=EMAIL)}
            bad.outputs = EMAIL
            bad.set_attribute("note", EMAIL)
            bad.set_attribute("retries", 2)
        with obs.span("fine") as fine:  # an object with no truth value is walked past
            fine.inputs = {"q": EMAIL, "array": Ambiguous()}
        assert obs.flush(5)
        health = {h.name: h for h in obs.dispatcher.snapshot()}["redaction"]
    finally:
        obs.shutdown()
    assert health.failures == 1 and "unreadable" in (health.last_error or "")
    assert not any(EMAIL in v for _, _, v in all_text_rows(db_url))
    stored = {r["name"]: r for r in rows(db_url, "spans")}
    assert stored["bad"]["inputs"] == stored["bad"]["outputs"] == f'"{redaction.WITHHELD}"'
    assert '"retries":2' in stored["bad"]["attributes"]
    assert "[redacted:email]" in stored["fine"]["inputs"]


def test_withheld_marker_and_function_live_in_the_core() -> None:
    from chainsight.framework import model

    assert redaction.WITHHELD is model.WITHHELD
    assert redaction.withhold_content is model.withhold_content
    span = Span("s")
    span.inputs, span.error = {"q": EMAIL}, f"failed for {EMAIL}"
    span.attributes = {"retries": 2, "gen_ai.usage.input_tokens": 7, EMAIL: 1, "AKIAZZSEEDKEY0123456": 3,
                       "note": EMAIL}
    model.withhold_content(span)
    assert (span.inputs, span.error) == (model.WITHHELD, model.WITHHELD)
    assert span.attributes == {"retries": 2, "gen_ai.usage.input_tokens": 7}  # a key may hold a secret too
    score = model.withhold_score(Score("thumbs", "feedback", "t", value=1.0, label="up", comment=EMAIL))
    assert (score.comment, score.label, score.value) == (model.WITHHELD, model.WITHHELD, 1.0)


def test_extra_fields_are_masked_on_a_copy() -> None:
    from collections import Counter

    message = AIMessage(content="fine", extra_field=f"key {API_KEY}", password="hunter2hunter2")
    counts: Counter[str] = Counter()
    out = Redactor().redact({"m": message}, counts)["m"]
    assert isinstance(out, AIMessage) and out is not message
    assert out.model_extra == {"extra_field": "key [redacted:api_key]", "password": "[redacted:credential]"}
    assert message.model_extra == {"extra_field": f"key {API_KEY}", "password": "hunter2hunter2"}
    assert counts == {"api_key": 1, "credential": 1}
    clean = AIMessage(content="fine", extra_field="nothing here")
    assert Redactor().redact(clean, Counter()) is clean


def test_keys_are_masked_and_never_collide() -> None:
    from collections import Counter
    from enum import Enum

    class Who(Enum):
        ALICE = EMAIL

    counts: Counter[str] = Counter()
    value = {EMAIL: 1, "[redacted:email]": 2, "other@example.org": 3, Who.ALICE: 4, 5: "five", "plain": 6}
    out = Redactor().redact(value, counts)
    assert out == {"[redacted:email]": 1, "[redacted:email] #2": 2, "[redacted:email] #3": 3,
                   "[redacted:email] #4": 4, 5: "five", "plain": 6}
    assert counts == {"email": 3}
    assert EMAIL in value  # the caller's dict is untouched


class LaterScorer:
    """A second ``process_score`` implementation, registered after redaction."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    @hookimpl
    def process_score(self, score: Score) -> Score | None:
        self.seen.append(score.comment)
        return None


def test_process_score_through_pluggy_redaction_first() -> None:
    from chainsight.framework.plugin_manager import new_plugin_manager

    pm = new_plugin_manager()
    pm.register(redaction.create_plugin(), name="redaction")
    later = LaterScorer()
    pm.register(later, name="later")
    calls = [impl.plugin_name for impl in reversed(pm.hook.process_score.get_hookimpls())]
    assert calls == ["redaction", "later"]  # tryfirst: before plugins registered after it
    score = Score("groundedness", "check", "t1", "s1", 0.0, f"cites {EMAIL}", False,
                  f"the answer repeats {API_KEY} and {CARD}")
    [masked] = pm.hook.process_score(score=score)
    assert masked.comment == "the answer repeats [redacted:api_key] and [redacted:credit_card]"
    assert masked.label == "cites [redacted:email]"
    assert (masked.score_id, masked.value, masked.passed) == (score.score_id, 0.0, False)
    assert later.seen == [score.comment]  # pluggy does not chain: the host passes the result on


def test_process_score_follows_the_switches() -> None:
    score = Score("comment", "feedback", "t1", comment=f"mail {EMAIL} key {API_KEY}")
    plugin = redaction.create_plugin()
    plugin.configure({"email": False})
    masked = plugin.process_score(score)
    assert masked is not None and masked.comment == f"mail {EMAIL} key [redacted:api_key]"
    plugin.configure({**{k: False for k in SWITCHES}, "sensitive_keys": False})
    assert plugin.process_score(score) is None
    assert redaction.RedactionPlugin.FAIL_CLOSED is True


def test_a_replay_link_id_is_left_as_it_is_and_nothing_else_is_spared() -> None:
    from chainsight.framework.replay import REPLAY_OF_SPAN, REPLAY_OF_TRACE

    link = "019a3f4111111111111111c0ffee0000"  # a hex id holding a Luhn-valid digit run
    span = Span("replay", "chain")
    span.attributes = {REPLAY_OF_SPAN: link, REPLAY_OF_TRACE: f"card {CARD}", "note": link}
    Redactor().redact_span(span)
    assert span.attributes[REPLAY_OF_SPAN] == link
    # not an id: masked like anything else; the same id under any other key too
    assert span.attributes[REPLAY_OF_TRACE] == "card [redacted:credit_card]"
    assert span.attributes["note"] == "019a3f[redacted:credit_card]c0ffee0000"
    assert span.attributes[ATTRIBUTE] == {"credit_card": 2}
    digits = Span("replay", "chain")  # hex-shaped, but no letter: a card number is scanned
    digits.attributes = {REPLAY_OF_SPAN: CARD.replace(" ", "")}
    Redactor().redact_span(digits)
    assert digits.attributes[REPLAY_OF_SPAN] == "[redacted:credit_card]"
