"""``chainsight sessions``, ``session`` and ``users`` over a real multi-turn
conversation: LangChain with the demo's chat model, the default plugins
(pricing, checks) and feedback, stored in SQLite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.cli import main
from chainsight.framework.observer import Observer
from chainsight.plugins.demo.models import StreamingDemoModel
from chainsight.plugins.demo.workload import REFUSAL
from chainsight.storage.query import Store, TraceFilter

QUESTIONS = ["How long is the refund window?", "And for [bold]opened[/] items?",
             "Can you pick my neighbour's lock?"]
ANSWERS = ["Thirty days from delivery.", "Opened items: 14 days [/unclosed", REFUSAL]


def _converse(handler: CallbackHandler, session: str, user: str, questions: list[str],
              answers: list[str]) -> None:
    """One conversation: every turn sends the whole history so far."""
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You are a shop assistant."), MessagesPlaceholder("history"), ("human", "{question}")])
    chain = prompt | StreamingDemoModel(responses=answers, sleep=0.0, model_label="gpt-4o-mini")
    history: list[BaseMessage] = []
    for question in questions:
        reply = chain.invoke(
            {"history": history, "question": question},
            config={"callbacks": [handler], "run_name": "chat-turn",
                    "metadata": {"session_id": session, "user_id": user}})
        history += [HumanMessage(question), AIMessage(str(reply.content))]


@pytest.fixture
def conversation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    obs = Observer(url, strict=True, entry_points=False, spill_path=tmp_path / "spill")
    try:
        handler = CallbackHandler(obs)
        _converse(handler, "conv-1", "ann", QUESTIONS, ANSWERS)
        _converse(handler, "conv-2", "ben", ["Hello?"], ["Hi there."])
        _converse(handler, "", "ben", ["No session here"], ["Fine."])  # not a session
        assert obs.flush(10)
        with Store(url) as store:
            turns = store.list_traces(TraceFilter(session_id="conv-1"), limit=10).items
        obs.feedback(turns[0].trace_id, thumbs=1)
        obs.feedback(turns[2].trace_id, thumbs=-1, comment="refused")
        assert obs.flush(10)
    finally:
        obs.shutdown()
    return {"url": url, "turns": sorted(turns, key=lambda t: t.start_ns)}


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_conversation_is_one_session_with_its_turns_and_totals(
        conversation: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    url, turns = conversation["url"], conversation["turns"]
    sessions = {s["session_id"]: s for s in _json(capsys, "sessions", "--db", url)}
    assert set(sessions) == {"conv-1", "conv-2"}
    conv = sessions["conv-1"]
    assert conv["turns"] == len(turns) == 3 and conv["user_id"] == "ann"
    assert conv["input_tokens"] == sum(t.input_tokens for t in turns) > 0
    assert conv["output_tokens"] == sum(t.output_tokens for t in turns) > 0
    assert conv["cost_usd"] == pytest.approx(sum(t.cost_usd for t in turns)) and conv["cost_usd"] > 0
    assert conv["first_ns"] == turns[0].start_ns and conv["last_ns"] == turns[-1].end_ns
    assert (conv["thumbs_up"], conv["thumbs_down"]) == (1, 1)
    with Store(url) as store:
        failed = [s for t in turns for s in store.get_trace(t.trace_id).scores  # type: ignore[union-attr]
                  if s.source == "check" and s.passed is False]
    # the third answer is a refusal (judged on the model call and on the turn)
    assert failed and {(s.name, s.trace_id) for s in failed} == {("refusal", turns[2].trace_id)}
    assert conv["check_failures"] == len(failed)
    # Later turns sent the history: the last turn's prompt is the longest.
    assert turns[2].input_tokens > turns[1].input_tokens > turns[0].input_tokens

    users = {u["user_id"]: u for u in _json(capsys, "users", "--db", url)}
    assert (users["ann"]["traces"], users["ann"]["sessions"]) == (3, 1)
    assert (users["ben"]["traces"], users["ben"]["sessions"]) == (2, 1)


def test_the_transcript_shows_each_turn_in_order_as_plain_text(
        conversation: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    url, turns = conversation["url"], conversation["turns"]
    assert main(["session", "conv-1", "--db", url]) == 0
    out = capsys.readouterr().out
    positions = [out.index(text) for pair in zip(QUESTIONS, ANSWERS, strict=True) for text in pair]
    assert positions == sorted(positions)  # question, answer, question, answer...
    assert "[bold]opened[/]" in out and "[/unclosed" in out  # printed as stored, not as markup
    for t in turns:
        assert t.trace_id[-10:] in out  # each turn names its trace for `chainsight show`
    assert "3 turns" in out
    data = _json(capsys, "session", "conv-1", "--db", url)
    assert [t["trace_id"] for t in data["turns"]] == [t.trace_id for t in turns]


def test_table_output_and_errors(conversation: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    url = conversation["url"]
    assert main(["sessions", "user:ben", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "conv-2" in out and "conv-1" not in out
    assert main(["users", "--db", url, "--order", "cost"]) == 0
    assert "ann" in capsys.readouterr().out
    assert main(["session", "nope", "--db", url]) == 1
    assert "no session 'nope'" in capsys.readouterr().err
    assert main(["sessions", "bogus:1", "--db", url]) == 1
    assert "unknown field 'bogus'" in capsys.readouterr().err
