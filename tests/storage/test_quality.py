"""Quality metrics from the store, written through a real Observer on SQLite."""

from __future__ import annotations

from pathlib import Path

from chainsight.framework.model import Score
from chainsight.framework.observer import Observer
from chainsight.storage.quality import quality_by_model, quality_metrics, quality_over_time

CHECKS = [("refusal", "chainsight.plugins.refusal"), ("pii", "chainsight.plugins.pii"), ("toxicity", "chainsight.plugins.toxicity")]
HOUR = 3600 * 10**9
T0 = 1_700_000_000 * 10**9 // HOUR * HOUR


def record(obs: Observer, *, model: str, start_ns: int, answer: str, error: bool = False) -> str:
    root = obs.start_span("chat", start_ns=start_ns)
    llm = obs.start_span("llm", "llm", parent=root, model=model, start_ns=start_ns + 1)
    obs.end_span(llm, outputs=answer, end_ns=start_ns + 2)
    obs.end_span(root, outputs=None, error="boom" if error else None, end_ns=start_ns + 3)
    return root.trace_id


def build(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    obs = Observer(url, strict=True, entry_points=False, builtins=CHECKS, spill_path=tmp_path / "spill")
    try:
        a1 = record(obs, model="gpt-a", start_ns=T0, answer="Paris is the capital.")
        a2 = record(obs, model="gpt-a", start_ns=T0 + 10, answer="I can't help with that.")
        b1 = record(obs, model="gpt-b", start_ns=T0 + HOUR, answer="Mail bob@example.com, you idiot moron.")
        record(obs, model="gpt-b", start_ns=T0 + HOUR + 5, answer="Fine.", error=True)
        obs.feedback(a1, thumbs=1)
        obs.feedback(a2, thumbs=-1, rating=2)
        obs.feedback(b1, thumbs=1, rating=5)
        obs.record_score(Score("groundedness", "check", a1, value=0.25))
        obs.record_score(Score("groundedness", "check", b1, value=1.0))
        assert obs.flush(10)
    finally:
        obs.shutdown()
    return url


def test_overall_metrics(tmp_path: Path) -> None:
    m = quality_metrics(build(tmp_path))
    assert (m.traces, m.errors, m.error_rate) == (4, 1, 0.25)
    assert (m.thumbs, m.thumbs_up) == (3, 2) and abs((m.thumbs_up_rate or 0) - 2 / 3) < 1e-9
    assert (m.ratings, m.mean_rating) == (2, 3.5)
    assert (m.refusal_checked, m.refusals, m.refusal_rate) == (4, 1, 0.25)
    assert (m.pii_checked, m.pii_found, m.pii_rate) == (4, 1, 0.25)
    g = m.groundedness
    assert (g.count, g.mean, g.min, g.max) == (2, 0.625, 0.25, 1.0)
    assert g.histogram[2] == 1 and g.histogram[9] == 1 and sum(g.histogram) == 2
    t = m.toxicity
    assert t.count == 4 and sum(t.histogram) == 4 and t.histogram[0] == 3 and (t.max or 0) > 0.5
    doc = m.to_dict()
    assert doc["refusal_rate"] == 0.25 and doc["groundedness"]["histogram"][9] == 1


def test_by_model_and_over_time(tmp_path: Path) -> None:
    url = build(tmp_path)
    by_model = quality_by_model(url)
    assert set(by_model) == {"gpt-a", "gpt-b"}
    a, b = by_model["gpt-a"], by_model["gpt-b"]
    assert (a.traces, a.refusals, a.pii_found, a.errors) == (2, 1, 0, 0)
    assert (b.traces, b.refusals, b.pii_found, b.errors) == (2, 0, 1, 1)
    assert (a.thumbs_up, a.thumbs, b.mean_rating) == (1, 2, 5.0)
    buckets = quality_over_time(url, 3600)
    assert [start for start, _ in buckets] == [T0, T0 + HOUR]
    assert [m.traces for _, m in buckets] == [2, 2]
    assert buckets[0][1].refusal_rate == 0.5 and buckets[1][1].pii_rate == 0.5
    # window
    later = quality_metrics(url, since_ns=T0 + HOUR)
    assert (later.traces, later.refusals, later.thumbs) == (2, 0, 1)
    assert quality_metrics(url, until_ns=T0).traces == 0
