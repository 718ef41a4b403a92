"""``chainsight db prune`` and the ``retention`` plugin ([storage] retention)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from chainsight.framework.cli import main
from chainsight.framework.config import Settings, load_settings
from chainsight.framework.model import Score
from chainsight.framework.observer import Observer
from chainsight.storage.query import Store
from chainsight.storage.writer import StoreWriter, WriteBatch

sys.path.insert(0, str(Path(__file__).parents[1] / "storage"))
from storage_builders import three_level_trace

DAY = 86_400 * 1_000_000_000


def _seed(url: str) -> tuple[set[str], set[str]]:
    """Ten traces 40 days old and five of today, each with a feedback score."""
    now = time.time_ns()
    old, new, spans, scores = set(), set(), [], []
    for i in range(15):
        trace = three_level_trace(now - (40 * DAY if i < 10 else 0) + i * 1_000_000)
        spans += trace
        scores.append(Score("thumbs", "feedback", trace[0].trace_id, value=1.0))
        (old if i < 10 else new).add(trace[0].trace_id)
    writer = StoreWriter(url)
    writer.write(WriteBatch(spans=spans, scores=scores))
    writer.close()
    return old, new


def _traces(url: str) -> set[str]:
    with Store(url, create=False) as store:
        return {t.trace_id for t in store.list_traces(limit=100).items}


def test_db_prune_dry_run_then_prune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    old, new = _seed(url)
    assert main(["db", "prune", "--older-than", "30d", "--dry-run", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "would delete 10 traces" in out and "40 spans, 10 scores" in out
    assert _traces(url) == old | new
    assert main(["db", "prune", "--older-than", "30d", "--db", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["traces"], data["spans"], data["scores"], data["dry_run"]) == (10, 40, 10, False)
    assert _traces(url) == new
    with Store(url, create=False) as store:
        assert {s.trace_id for s in store.list_scores()} == new
    assert main(["db", "prune", "--older-than", "30d", "--db", url, "--vacuum"]) == 0
    assert "deleted 0 traces" in capsys.readouterr().out


def test_db_prune_refuses_a_bad_age(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert main(["db", "prune", "--older-than", "soon", "--db", url]) == 1
    assert "soon" in capsys.readouterr().err
    assert main(["db", "prune", "--older-than", "30d", "--db", url]) == 1
    assert "no Chainsight store" in capsys.readouterr().err  # never creates one


def test_the_observer_prunes_on_a_schedule(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    old, new = _seed(url)
    settings = Settings(storage={"url": url, "retention": "30d", "prune_interval_s": 0.05})
    obs = Observer(settings=settings, strict=True, entry_points=False,
                   builtins=[("retention", "chainsight.plugins.retention")],
                   spill_path=tmp_path / "spill")
    try:
        with obs.span("during"):
            pass
        assert obs.flush(5)
        deadline = time.monotonic() + 10
        while _traces(url) & old and time.monotonic() < deadline:
            time.sleep(0.05)
        plugin = obs.plugins.pm.get_plugin("retention")
        assert plugin.thread is not None and plugin.thread.name == "chainsight-retention"
    finally:
        obs.shutdown()
    left = _traces(url)
    assert not left & old and new <= left and len(left) == len(new) + 1
    assert not plugin.thread.is_alive()


def test_without_retention_nothing_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    old, new = _seed(url)
    obs = Observer(url, strict=True, entry_points=False,
                   builtins=[("retention", "chainsight.plugins.retention")],
                   spill_path=tmp_path / "spill")
    try:
        assert obs.plugins.pm.get_plugin("retention").thread is None
    finally:
        obs.shutdown()
    assert _traces(url) == old | new


def test_retention_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "plugins.toml"
    path.write_text('[storage]\nretention = "a month"\n')
    with pytest.raises(Exception, match=r"storage\.retention"):
        load_settings(path)


def test_serve_prunes_on_a_schedule(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    from chainsight.plugins.serve import Serve

    url = f"sqlite:///{tmp_path / 's.db'}"
    _old, new = _seed(url)
    settings = Settings(storage={"url": url, "retention": "30d", "prune_interval_s": 0.05})
    serve = Serve(url, {}, settings=settings)
    task = next(t for t in serve.tasks if t.name == "prune store")
    serve.start(port=0)
    try:
        deadline = time.monotonic() + 10
        while task.runs < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert task.runs >= 1 and task.last_error is None
    finally:
        serve.stop()
    assert _traces(url) == new
    assert not any(t.name == "prune store" for t in Serve(url, {}).tasks)  # only when configured
