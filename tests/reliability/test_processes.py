"""Issue "Trust", item 3: an observer survives fork(), and children of
multiprocessing (fork and spawn; Process and Pool) store every span
without calling flush()."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_helpers import run_script, span_names

CHILD_SPANS = 4000


def test_an_observer_built_before_fork_records_in_the_child(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    proc, _ = run_script(f"""
        import os
        from chainsight.framework.observer import Observer
        obs = Observer("{url}", builtins=(), entry_points=False, spill_path="{tmp_path / 's.jsonl'}")
        with obs.span("parent-before"):
            pass
        assert obs.flush(20)
        pid = os.fork()
        if pid == 0:
            for i in range({CHILD_SPANS}):
                with obs.span(f"child-{{i}}"):
                    pass
            ok = obs.flush(30)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        with obs.span("parent-after"):
            pass
        assert obs.flush(20)
        print("child exit", os.waitstatus_to_exitcode(status))
    """)
    assert proc.returncode == 0, proc.stderr
    assert "child exit 0" in proc.stdout  # flush() in the child told the truth
    names = span_names(url)
    assert len([n for n in names if n.startswith("child-")]) == CHILD_SPANS
    assert {"parent-before", "parent-after"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("how", ["process", "pool"])
def test_multiprocessing_children_store_without_flush(method: str, how: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mp.db'}"
    module = tmp_path / "mp_work.py"
    # Spawned children import the target by module: it must live in a file.
    module.write_text("""
from chainsight.framework.observer import Observer, get_observer

def work(n):
    obs = get_observer()
    for i in range(50):
        with obs.span(f"child-{n}-{i}"):
            pass
    return n
""")
    body = {
        "process": """
    procs = [ctx.Process(target=mp_work.work, args=(n,)) for n in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
""",
        "pool": """
    with ctx.Pool(2) as pool:
        assert sorted(pool.map(mp_work.work, range(3))) == [0, 1, 2]
        pool.close()
        pool.join()
""",
    }[how]
    proc, _ = run_script(f"""
import multiprocessing as mp
import mp_work
from chainsight.framework.observer import get_observer

if __name__ == "__main__":
    obs = get_observer()  # the parent has one too (a fork child inherits it)
    with obs.span("parent"):
        pass
    ctx = mp.get_context("{method}")
{body}
    assert obs.flush(20)
""", env={"CHAINSIGHT_STORAGE_URL": url, "PYTHONPATH": str(tmp_path) + ":" + str(Path.cwd())},
        cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = span_names(url)
    assert len([n for n in names if n.startswith("child-")]) == 150, proc.stderr
    assert "parent" in names
