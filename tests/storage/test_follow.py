"""The store follower (chainsight serve's cursor): every row once, late commits included."""

from __future__ import annotations

import sqlalchemy as sa
from storage_builders import three_level_trace

from chainsight.framework.model import Sample, Score, Span
from chainsight.storage import schema
from chainsight.storage.engine import open_engine
from chainsight.storage.follow import StoreFollower, StreamPosition, latest_samples
from chainsight.storage.writer import StoreWriter, WriteBatch

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _ids(found: object) -> list[str]:
    return [s.span_id for s in found.spans]  # type: ignore[attr-defined]


def test_follows_new_rows_once_and_resumes_after_a_restart(store_url: str) -> None:
    writer = StoreWriter(store_url)
    first = three_level_trace(T0)
    check = Score("length", "check", first[0].trace_id, first[3].span_id, 1.0, passed=False)
    writer.write(WriteBatch(spans=first, scores=[check]))

    follower = StoreFollower(store_url, "t", limit=3)
    seen = _ids(follower.poll()) + _ids(follower.poll())
    assert seen == [s.span_id for s in first]  # insertion order, across pages of 3
    assert follower.poll().spans == ()
    follower.save()
    follower.close()

    second = three_level_trace(T0 + 1000 * MS)  # replaying the first batch adds nothing
    writer.write(WriteBatch(spans=first + second))
    again = StoreFollower(store_url, "t")
    found = again.poll()
    assert _ids(found) == [s.span_id for s in second]
    assert found.scores == ()  # the score was read before the restart
    llm = found.spans[3]
    assert (llm.model, llm.input_tokens, llm.cost_usd, llm.first_token_ns) == (
        "gpt-4o", 100, 0.002, second[3].first_token_ns)
    other = StoreFollower(store_url, "another")  # its own position: from the start
    assert len(other.poll().spans) == 8
    for f in (again, other):
        f.close()
    writer.close()


def test_scores_are_followed_too(store_url: str) -> None:
    writer = StoreWriter(store_url)
    spans = three_level_trace(T0)
    follower = StoreFollower(store_url, "t")
    writer.write(WriteBatch(spans=spans))
    assert follower.poll().scores == ()
    thumbs = Score("thumbs", "feedback", spans[0].trace_id, None, 1.0)
    writer.write(WriteBatch(scores=[thumbs]))
    found = follower.poll()
    assert found.spans == () and [s.score_id for s in found.scores] == [thumbs.score_id]
    follower.close()
    writer.close()


def test_a_transaction_that_commits_late_is_not_missed(store_url: str) -> None:
    """PostgreSQL numbers rows when they are inserted, not when they commit:
    A takes the lower number and commits after B. The follower must still
    see A (on SQLite the second writer waits for the first: same result)."""
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=three_level_trace(T0)))  # migrated, with a first row
    follower = StoreFollower(store_url, "t")
    assert len(follower.poll().spans) == 4

    early, late = three_level_trace(T0 + 10 * MS), three_level_trace(T0 + 20 * MS)
    engine = open_engine(store_url)
    rows = writer.prepare(WriteBatch(spans=early[:1]))["spans"]
    conn = engine.connect()
    txn = conn.begin()
    conn.execute(sa.insert(schema.spans), rows)  # takes its number now, commits later
    if engine.dialect.name == "postgresql":
        writer.write(WriteBatch(spans=late))  # commits first, with higher numbers
        assert _ids(follower.poll()) == [s.span_id for s in late]
        txn.commit()
        assert _ids(follower.poll()) == [early[0].span_id]
    else:
        txn.commit()  # SQLite: one writer at a time, so commit order is rowid order
        writer.write(WriteBatch(spans=late))
        assert _ids(follower.poll()) == [early[0].span_id] + [s.span_id for s in late]
    assert follower.poll().spans == ()
    conn.close()
    engine.dispose()
    follower.close()
    writer.close()


def test_gaps_are_filled_or_given_up_after_the_window() -> None:
    p = StreamPosition()
    for seq in (1, 2, 5, 9):
        assert p.take(seq, now_ns=100)
    assert p.high == 9 and p.gaps == [[3, 4, 100], [6, 8, 100]]
    assert p.take(7, now_ns=200) and p.gaps == [[3, 4, 100], [6, 6, 100], [8, 8, 100]]
    assert not p.take(7, now_ns=200) and not p.take(2, now_ns=200)
    assert p.take(3, now_ns=300) and p.gaps == [[4, 4, 100], [6, 6, 100], [8, 8, 100]]
    assert p.expire(now_ns=100 + 10**9, window_s=2.0) == 0
    assert p.expire(now_ns=100 + 3 * 10**9, window_s=2.0) == 3 and p.gaps == []
    assert StreamPosition.from_json(p.to_json()) == p


def test_latest_samples_per_label_set(sqlite_url: str) -> None:
    writer = StoreWriter(sqlite_url)
    writer.write(WriteBatch(samples=[
        Sample("llm_gpu_utilization_percent", 10.0, "nvml", T0, {"gpu_id": "0"}),
        Sample("llm_gpu_utilization_percent", 30.0, "nvml", T0 + MS, {"gpu_id": "0"}),
        Sample("llm_gpu_utilization_percent", 70.0, "nvml", T0, {"gpu_id": "1"}),
        Sample("chainsight_queue_depth", 5.0, "pipeline", T0 + MS, {}),
    ]))
    got = latest_samples(open_engine(sqlite_url), ["llm_gpu_utilization_percent"])
    assert sorted((s.labels["gpu_id"], s.value) for s in got) == [("0", 30.0), ("1", 70.0)]
    assert latest_samples(open_engine(sqlite_url), ["llm_gpu_utilization_percent"], T0 + 2 * MS) == []
    writer.close()


def test_verdicts_and_content_stored_once_are_followed_whole(store_url: str) -> None:
    """A passing check stored on its span comes out of the follower as a
    score; a span's content stored once with another span comes out whole,
    from the same poll or from the store."""
    answer = {"content": "an answer long enough to be stored once per trace, surely"}
    llm = Span("model", "llm", start_ns=T0)
    llm.outputs, llm.end_ns = answer, T0 + 5 * MS
    parser = Span("parser", "parser", trace_id=llm.trace_id, start_ns=T0 + 6 * MS)
    parser.inputs, parser.end_ns = answer, T0 + 7 * MS
    verdict = Score("refusal", "check", llm.trace_id, llm.span_id, 0.0, "answered", True,
                    "no refusal pattern", created_ns=T0 + 8 * MS)
    writer = StoreWriter(store_url)
    writer.write(WriteBatch(spans=[llm, parser], scores=[verdict]))
    writer.close()

    whole = StoreFollower(store_url, "whole")
    found = whole.poll()
    assert [s.inputs for s in found.spans if s.kind == "parser"] == [answer]
    (score,) = found.scores
    assert (score.name, score.passed, score.comment, score.created_ns) == (
        "refusal", True, "no refusal pattern", verdict.created_ns)
    paged = StoreFollower(store_url, "paged", limit=1)  # the parser's source comes from the store
    first, second = paged.poll(), paged.poll()
    assert [s.kind for s in (*first.spans, *second.spans)] == ["llm", "parser"]
    assert second.spans[0].inputs == answer
    for f in (whole, paged):
        f.close()
