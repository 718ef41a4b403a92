"""What the LLM metrics count: the one place that says what a check failure,
a feedback value and a cache hit are. Used by the Prometheus metrics
(``chainsight serve``, the ``prometheus`` plugin) and by ``chainsight stats``,
so both give the same figures. No dependencies beyond the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from chainsight.framework.model import Score

CACHE_HIT_ATTRIBUTES: Final = ("litellm.cache_hit", "langchain.cache_hit", "cache_hit")
"""Span attributes an adapter sets to True when a response cache answered the call."""


def failed_checks(scores: Iterable[Score]) -> Iterator[str]:
    """The names of the checks that failed among ``scores``
    (``llm_check_failures_total{check}``; ``refusal`` also counts as
    ``llm_refusals_total``)."""
    for score in scores:
        if score.source == "check" and score.passed is False:
            yield score.name


def check_failures(stats: Iterable[Any]) -> dict[str, int]:
    """:func:`failed_checks` counted from the store's sums
    (``Store.score_stats``: per source and name, verdicts and passes), by
    check name: the same rule, without reading every verdict."""
    return {st.name: st.verdicts - st.passed for st in stats
            if st.source == "check" and st.verdicts > st.passed}


def feedback_value(score: Score) -> str | None:
    """The ``value`` label of ``llm_feedback_total`` for a feedback score:
    ``up``/``down`` for thumbs, ``1``..``5`` for a rating; None for a bare comment."""
    if score.source != "feedback" or score.value is None:
        return None
    if score.name == "thumbs":
        return "up" if score.value > 0 else "down"
    if score.name == "rating":
        return str(int(score.value))
    return None


def cache_hit(attributes: Mapping[str, Any] | None) -> bool:
    """Whether a response cache answered this LLM call (an LLM call that was
    not answered from a cache counts as a miss: the hit rate is the share of
    calls a cache answered)."""
    if not attributes:
        return False
    return any(attributes.get(key) is True for key in CACHE_HIT_ATTRIBUTES)
