"""Sessions and users: the totals computed by the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from storage_builders import three_level_trace

from chainsight.framework.model import Score
from chainsight.storage.query import Store, TraceFilter
from chainsight.storage.sessions import (
    get_session,
    list_sessions,
    list_users,
    message_text,
    session_turns,
)
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


@pytest.fixture
def store(store_url: str) -> Store:
    """alice: session a1 (3 turns, one failed), a2 (1 turn); bob: b1 (2 turns,
    one unpriced); one trace without a session; feedback and check verdicts."""
    plan = [  # (seconds from T0, user, session, cost, error)
        (0, "alice", "a1", 0.001, False), (10, "alice", "a1", 0.002, True),
        (20, "alice", "a1", 0.004, False), (30, "alice", "a2", 0.008, False),
        (5, "bob", "b1", None, False), (15, "bob", "b1", 0.016, False),
        (40, "bob", None, 0.032, False),
    ]
    spans, ids = [], []
    for seconds, user, session, cost, error in plan:
        trace = three_level_trace(T0 + seconds * S, user_id=user, session_id=session, cost=cost,
                                  error=error, duration_ms=100)
        trace[0].inputs = {"question": f"question at {seconds}"}
        trace[0].outputs = {"answer": f"answer at {seconds}"}
        spans += trace
        ids.append(trace[0].trace_id)
    llm_of_first = spans[3].span_id
    scores = [
        Score("thumbs", "feedback", ids[0], value=1.0),
        Score("thumbs", "feedback", ids[1], value=-1.0),
        Score("rating", "feedback", ids[2], value=4.0),
        Score("rating", "feedback", ids[2], value=2.0),
        Score("thumbs", "feedback", ids[4], value=1.0),
        Score("refusal", "check", ids[0], span_id=llm_of_first, value=1.0, passed=False),
        Score("pii", "check", ids[0], span_id=llm_of_first, value=0.0, passed=True),
        Score("toxicity", "check", ids[2], value=0.9, passed=False),
        Score("refusal", "check", ids[6], value=1.0, passed=False),  # no session
        Score("answer_match", "eval", ids[1], value=0.0, passed=False),  # not a check
    ]
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=spans, scores=scores))
    writer.close()
    s = Store(store_url)
    s.ids = ids  # type: ignore[attr-defined]
    return s


def test_sessions_have_their_turns_and_totals(store: Store) -> None:
    found = {s.session_id: s for s in list_sessions(store)}
    assert set(found) == {"a1", "a2", "b1"}
    a1 = found["a1"]
    assert (a1.turns, a1.user_id, a1.user_count) == (3, "alice", 1)
    assert a1.first_ns == T0 and a1.last_ns == T0 + 20 * S + 100_000_000
    assert a1.duration_s == pytest.approx(20.1)
    assert a1.errors == 1
    assert (a1.input_tokens, a1.output_tokens) == (300, 33)
    assert a1.cost_usd == pytest.approx(0.007)
    assert (a1.thumbs_up, a1.thumbs_down, a1.ratings, a1.mean_rating) == (1, 1, 2, 3.0)
    assert a1.check_failures == 2
    b1 = found["b1"]
    assert (b1.turns, b1.cost_usd, b1.unpriced_count) == (2, pytest.approx(0.016), 1)
    assert (b1.thumbs_up, b1.check_failures, b1.mean_rating) == (1, 0, None)
    # most recently active first
    assert [s.session_id for s in list_sessions(store)] == ["a2", "a1", "b1"]
    assert [s.session_id for s in list_sessions(store, order="cost")] == ["b1", "a2", "a1"]
    assert [s.session_id for s in list_sessions(store, limit=1)] == ["a2"]


def test_filters_pick_traces_and_totals_follow(store: Store) -> None:
    later = {s.session_id: s for s in list_sessions(store, TraceFilter(since_ns=T0 + 10 * S))}
    assert set(later) == {"a1", "a2", "b1"}
    assert later["a1"].turns == 2 and later["a1"].cost_usd == pytest.approx(0.006)
    assert (later["a1"].thumbs_up, later["a1"].thumbs_down, later["a1"].check_failures) == (0, 1, 1)
    assert [s.session_id for s in list_sessions(store, TraceFilter(user_id="bob"))] == ["b1"]
    assert list_sessions(store, TraceFilter(status="error"))[0].session_id == "a1"


def test_users_have_their_activity(store: Store) -> None:
    users = {u.user_id: u for u in list_users(store)}
    alice, bob = users["alice"], users["bob"]
    assert (alice.traces, alice.sessions, alice.errors) == (4, 2, 1)
    assert alice.cost_usd == pytest.approx(0.015)
    assert (alice.thumbs_up, alice.thumbs_down, alice.check_failures) == (1, 1, 2)
    assert (bob.traces, bob.sessions) == (3, 1)  # the trace without a session counts for its user
    assert bob.cost_usd == pytest.approx(0.048) and bob.check_failures == 1
    assert [u.user_id for u in list_users(store, order="cost")] == ["bob", "alice"]


def test_transcript_is_the_turns_in_order(store: Store) -> None:
    turns = session_turns(store, "a1")
    assert [t.index for t in turns] == [1, 2, 3]
    assert [message_text(t.input) for t in turns] == ["question at 0", "question at 10",
                                                     "question at 20"]
    assert [message_text(t.output) for t in turns] == ["answer at 0", "answer at 10", "answer at 20"]
    assert turns[1].status == "error" and turns[1].error == "boom"
    assert [t.trace_id for t in turns] == store.ids[:3]  # type: ignore[attr-defined]
    summary = get_session(store, "a1")
    assert summary is not None and summary.turns == 3
    assert get_session(store, "nope") is None and session_turns(store, "nope") == []


def test_message_text_finds_the_words() -> None:
    assert message_text("hi") == "hi"
    assert message_text({"messages": [{"role": "user", "content": "a"},
                                      {"role": "user", "content": "b"}]}) == "b"
    assert message_text({"input": "q", "history": []}) == "q"
    assert message_text({"only": "one"}) == "one"
    assert message_text([{"content": "x"}]) == "x"
    assert message_text({"n": 1}) == '{"n":1}'
    assert message_text(None) == ""


def test_an_unknown_order_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="cannot order by 'size'"):
        list_sessions(store, order="size")
