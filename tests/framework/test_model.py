"""Ids: the shape and order the stores and short ids rely on."""

from __future__ import annotations

import itertools
import os
import re
import time

import pytest

from chainsight.framework.model import Score, Span, new_ordered_id


def test_ids_are_32_hex_digits_in_the_order_they_were_made() -> None:
    ids = [new_ordered_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # In the order they were made, to the millisecond, and random soon after
    # the clock: a start of 20 digits tells two ids made one after the other
    # apart (commands resolve starts).
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    assert all(a[:20] != b[:20] for a, b in itertools.pairwise(ids))
    # The clock leads: the first 12 digits are the milliseconds since the epoch.
    assert abs(int(new_ordered_id()[:12], 16) - time.time_ns() // 1_000_000) < 5_000


def test_spans_and_scores_get_ordered_ids() -> None:
    first = Span("a", "chain")
    second = Span("b", "chain")
    score = Score("s", "check", trace_id=first.trace_id)
    made = [first.span_id, first.trace_id, second.span_id, second.trace_id, score.score_id]
    assert len(set(made)) == 5
    assert [i[:12] for i in made] == sorted(i[:12] for i in made)


def _random_part() -> str:
    """An id's last 15 digits: random, the same from a generator in the same state."""
    return new_ordered_id()[-15:]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_makes_ids_of_its_own() -> None:
    new_ordered_id()  # the generator is in use before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id and leave
        try:
            os.write(write, _random_part().encode())
        finally:
            os._exit(0)
    os.close(write)
    mine = _random_part()
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    assert len(theirs) == 15 and theirs != mine
