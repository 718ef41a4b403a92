"""Make ``store_0002.db.gz`` and ``answers_0002.json.gz``: a store written by the
code of schema revision 0002 (commit 159cc8d, seed 3, before compact check verdicts
and content stored once), and what that code's readers answered about it.

tests/storage/test_old_store.py upgrades a copy of the store with today's code
and checks that today's readers give the same answers. Re-running this script
with today's code would write today's form, so it is kept only to show how the
files were made:

    git worktree add /tmp/old 159cc8d && cd /tmp/old && make venv
    .venv/bin/python tests/storage/data/make_old_store.py tests/storage/data
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.model import Score
from chainsight.framework.observer import Observer
from chainsight.plugins.demo import workload
from chainsight.storage.cost import cost_report
from chainsight.storage.quality import quality_by_model, quality_metrics, quality_over_time
from chainsight.storage.query import Store


def record(url: str, spill: Path) -> None:
    observer = Observer(url, spill_path=spill, entry_points=False)
    handler = CallbackHandler(observer)
    jobs = workload.plan(24, 3, skip=() if workload.langgraph_available() else ("langgraph",))
    asyncio.run(workload.run(jobs, handler, 4))
    assert observer.flush(timeout=60)
    with Store(url) as store:
        traces = store.list_traces(limit=100).items
    # Scores that travel on their own: feedback, a trace-level check, an
    # evaluation, and a passing check recorded after its span was stored.
    first, second, third = traces[0], traces[1], traces[2]
    observer.feedback(first.trace_id, thumbs=1, comment="spot on")
    observer.feedback(second.trace_id, thumbs=-1, rating=2)
    observer.record_score(Score("groundedness", "check", third.trace_id, value=0.8,
                                label="grounded", passed=True, comment="4 of 5 claims"))
    observer.record_score(Score("exact_match", "eval", first.trace_id, value=1.0, passed=True,
                                experiment_id="exp-1"))
    with Store(url) as store:
        detail = store.get_trace(third.trace_id)
        assert detail is not None
        llm = next(s for s in detail.spans if s.kind == "llm")
    observer.record_score(Score("late_check", "check", third.trace_id, llm.span_id, value=0.5,
                                label="ok", passed=True, comment="recorded on its own"))
    assert observer.flush(timeout=30)
    observer.shutdown()


def plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def answers(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with Store(url) as store:
        page = store.list_traces(limit=1000)
        out["traces"] = [plain(t) for t in page.items]
        out["details"] = {}
        for t in page.items:
            detail = store.get_trace(t.trace_id)
            assert detail is not None
            out["details"][t.trace_id] = {
                "trace": plain(detail.trace),
                "spans": [plain(s.to_dict()) for s in detail.spans],
                "scores": [plain(s) for s in detail.scores],
            }
        out["list_scores"] = {t.trace_id: [plain(s) for s in store.list_scores(trace_id=t.trace_id)]
                              for t in page.items[:5]}
        out["aggregates"] = [plain(r) for r in store.aggregates()]
        out["aggregates_by_model"] = [plain(r) for r in store.aggregates(group_by="model")]
        out["cost_by_model"] = cost_report(store.engine, by="model").to_dict()
    out["quality"] = quality_metrics(url).to_dict()
    out["quality_by_model"] = {str(k): m.to_dict() for k, m in quality_by_model(url).items()}
    out["quality_over_time"] = [[start, m.to_dict()] for start, m in quality_over_time(url, 60)]
    return out


def main(folder: str) -> int:
    target = Path(folder)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "old.db"
        url = f"sqlite:///{db}"
        record(url, Path(tmp) / "spill.jsonl")
        result = answers(url)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
        conn.close()
        with open(db, "rb") as src, gzip.open(target / "store_0002.db.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    with gzip.open(target / "answers_0002.json.gz", "wt", encoding="utf-8") as out:
        json.dump(result, out, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent)))
