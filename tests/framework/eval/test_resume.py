"""Issue 16: a run killed half way resumes without re-running finished items."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from eval_targets import N_ITEMS, dataset_records, question

from chainsight.framework.eval.runner import RunOptions, evaluate
from chainsight.storage.evaluation import DatasetItem, EvalStore

HERE = Path(__file__).parent


def test_a_killed_run_resumes_without_rerunning_finished_items(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'eval.db'}"
    with EvalStore(url) as store:
        store.create_dataset("qa", [DatasetItem(r["input"], r["expected"], r["metadata"])
                                    for r in dataset_records()])
    calls = tmp_path / "calls.log"
    env = {**os.environ, "EVAL_CALLS_LOG": str(calls), "EVAL_SLEEP_S": "0.15",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "chainsight.framework.cli", "eval", "run", "qa", "--db", url,
               "--target", "eval_targets:counted_slow", "--name", "slow", "--concurrency", "2",
               "--no-progress"]
    child = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        finished: set[str] = set()
        with EvalStore(url) as store:
            while time.monotonic() < deadline and child.poll() is None:
                experiments = store.list_experiments()
                if experiments:
                    finished = store.finished_items(experiments[0].experiment_id)
                    if len(finished) >= N_ITEMS // 3:
                        break
                time.sleep(0.05)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            experiment = store.list_experiments()[0]
            finished = store.finished_items(experiment.experiment_id)
            assert experiment.status == "running"  # killed: nothing marked it finished
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert N_ITEMS // 3 <= len(finished) < N_ITEMS, child.stderr.read() if child.stderr else ""
    with EvalStore(url) as store:
        by_item = {i.item_id: i.input for i in store.dataset_items(experiment.dataset_id or "")}
    done_inputs = {by_item[i] for i in finished}
    before = Counter(calls.read_text(encoding="utf-8").splitlines())

    os.environ["EVAL_CALLS_LOG"] = str(calls)
    try:
        result = evaluate("qa", "eval_targets:counted_slow", db=url, resume="slow",
                          options=RunOptions(concurrency=4))
    finally:
        del os.environ["EVAL_CALLS_LOG"]
    after = Counter(calls.read_text(encoding="utf-8").splitlines())

    assert (result.ran, result.skipped) == (N_ITEMS - len(finished), len(finished))
    assert result.experiment.status == "done"
    rerun = after - before
    assert not set(rerun) & done_inputs, "a finished item ran again"
    assert set(rerun) == {question(i) for i in range(N_ITEMS)} - done_inputs
    assert all(n == 1 for n in rerun.values())
    assert len(result.results) == N_ITEMS and result.summary["items"] == N_ITEMS
    assert result.scores["exact_match"] == 1.0
    assert json.dumps(result.summary)  # stored as JSON
