"""The data model: spans, traces, scores, samples and alerts.

A :class:`Span` is built and finished on the caller's thread and then handed to
the pipeline worker; from the moment it is enqueued the worker owns it (the
recorder never touches it again), which is why it is a plain mutable object and
not a frozen dataclass. Everything else that crosses threads is frozen.

Times are integer nanoseconds since the Unix epoch (``time.time_ns()``).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import uuid_utils


def new_ordered_id() -> str:
    """A new RFC 9562 UUIDv7 as 32 hex digits (``uuid_utils.uuid7``, the
    generator LangChain makes its run ids with): the millisecond clock in
    the first 48 bits, then 74 random bits (and the version and variant).

    Used for span, trace and score ids. Time-ordered, so the stores' indexes
    on these ids grow at their right edge instead of touching a random page
    per row (random span and trace ids made SQLite span inserts 2-3x slower
    at 100k spans). The time is given, not left to uuid_utils, whose own
    clock puts a counter after it: ids of one millisecond would then share
    their first 24 digits, and the start of an id would no longer tell
    traces apart (``chainsight show`` and ``feedback`` resolve a start or an
    end). The end is the random part, which is why short ids show it.
    uuid_utils reseeds its generator in a forked child.
    """
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    return uuid_utils.uuid7(timestamp=seconds, nanos=nanos).hex


new_span_id = new_ordered_id
new_trace_id = new_ordered_id


class Span:
    """One unit of work: a chain step, a model call, a tool call, a retrieval.

    Only the identity fields are set in ``__init__``; every optional field reads
    its class-level default until assigned, which keeps span creation on the
    caller's thread cheap. Mutable containers (``tags``, ``metadata``,
    ``attributes``) default to ``None`` and are created when first needed.
    """

    span_id: str
    trace_id: str
    parent_id: str | None
    kind: str  # chain, llm, tool, retriever, agent, embedding, parser, prompt, other
    name: str
    start_ns: int
    end_ns: int | None = None
    status: str = "unset"  # unset, ok, error
    error: str | None = None
    error_type: str | None = None
    inputs: Any = None
    outputs: Any = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    tokens_estimated: bool = False
    cost_usd: float | None = None  # None means unpriced, never a fake 0
    first_token_ns: int | None = None
    chunk_count: int = 0
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    user_id: str | None = None
    session_id: str | None = None
    attributes: dict[str, Any] | None = None

    def __init__(
        self,
        name: str,
        kind: str = "chain",
        *,
        span_id: str | None = None,
        trace_id: str | None = None,
        parent_id: str | None = None,
        start_ns: int | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.span_id = span_id or new_span_id()
        self.trace_id = trace_id or new_trace_id()
        self.parent_id = parent_id
        self.start_ns = start_ns if start_ns is not None else time.time_ns()

    # ---- derived timings -------------------------------------------------
    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def latency_s(self) -> float | None:
        if self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def ttft_s(self) -> float | None:
        """Time to first token: first streamed chunk minus start."""
        if self.first_token_ns is None:
            return None
        return (self.first_token_ns - self.start_ns) / 1e9

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: (end - first) / (output - 1)."""
        return tpot_seconds(self.first_token_ns, self.end_ns, self.output_tokens)

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    # ---- mutation helpers (worker side or the owning caller) -------------
    def set_attribute(self, key: str, value: Any) -> None:
        if self.attributes is None:
            self.attributes = {}
        self.attributes[key] = value

    def add_tags(self, tags: list[str] | tuple[str, ...]) -> None:
        if not tags:
            return
        if self.tags is None:
            self.tags = []
        for t in tags:
            if t not in self.tags:
                self.tags.append(t)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name (the storage column names), for sinks and tests."""
        return {name: getattr(self, name) for name in SPAN_FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        span = cls(
            data["name"],
            data.get("kind", "chain"),
            span_id=data["span_id"],
            trace_id=data["trace_id"],
            parent_id=data.get("parent_id"),
            start_ns=data["start_ns"],
        )
        for name in SPAN_FIELDS:
            if name in data and name not in _IDENTITY:
                setattr(span, name, data[name])
        return span

    def __repr__(self) -> str:
        return (
            f"Span({self.name!r}, kind={self.kind!r}, span_id={self.span_id!r}, "
            f"parent_id={self.parent_id!r}, status={self.status!r})"
        )


SPAN_FIELDS: Final[tuple[str, ...]] = (
    "span_id", "trace_id", "parent_id", "kind", "name", "start_ns", "end_ns", "status",
    "error", "error_type", "inputs", "outputs", "model", "provider", "input_tokens",
    "output_tokens", "cached_tokens", "reasoning_tokens", "tokens_estimated", "cost_usd",
    "first_token_ns", "chunk_count", "tags", "metadata", "user_id", "session_id",
    "attributes",
)
_IDENTITY: Final = frozenset({"span_id", "trace_id", "parent_id", "name", "kind", "start_ns"})


def children_by_parent(spans: Sequence[Span]) -> dict[str | None, list[Span]]:
    """Each span's children in start order, keyed by parent id; a span whose
    parent is not among ``spans`` is listed under None, as a root."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_ns, s.span_id))
    return children


def tpot_seconds(first_token_ns: int | None, end_ns: int | None, output_tokens: int | None) -> float | None:
    """TPOT = (end - first token) / (output tokens - 1); None when undefined."""
    if first_token_ns is None or end_ns is None or not output_tokens or output_tokens < 2:
        return None
    return (end_ns - first_token_ns) / 1e9 / (output_tokens - 1)


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace's summary row, denormalised from its spans for fast listing."""

    trace_id: str
    name: str
    status: str
    start_ns: int
    end_ns: int | None = None
    span_count: int = 0
    llm_count: int = 0
    error_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    ttft_s: float | None = None
    model: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    tags: tuple[str, ...] = ()
    score_summary: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True, slots=True)
class Score:
    """A judgement on a span or a trace: a check result, feedback, an eval metric.

    ``value`` is numeric where that makes sense (0..1 for most checks, 1..5 for a
    rating, -1/+1 for thumbs), ``label`` a short category, ``passed`` the
    verdict when the score has one, ``comment`` the explanation (never the
    sensitive values a check found).
    """

    name: str
    source: str  # check, feedback, eval, judge
    trace_id: str
    span_id: str | None = None
    value: float | None = None
    label: str | None = None
    passed: bool | None = None
    comment: str | None = None
    experiment_id: str | None = None
    score_id: str = field(default_factory=new_ordered_id)
    created_ns: int = field(default_factory=time.time_ns)


WITHHELD: Final = "[withheld: redaction failed]"
"""What stands in for content that a fail-closed plugin (redaction) could not process."""

REDACTED: Final = "chainsight.redacted"
"""The span attribute where redaction records what it masked, by kind
(``{"email": 2}``): read by the pii check, replay and the readers."""
REDACTION_PLACEHOLDER: Final = "[redacted:{kind}]"
"""What redaction puts in place of what it found (``{kind}``: what was
found), unless ``[plugins.redaction] replacement`` says otherwise."""


def withhold_content(span: Span) -> None:
    """Replace everything redaction would have read after it failed on
    ``span``: inputs, outputs, metadata and error become :data:`WITHHELD`;
    of the attributes only numbers under plain lowercase dotted names
    (``retries``, ``gen_ai.usage.input_tokens``) are kept, since a key may
    hold a secret too."""
    for name in ("inputs", "outputs", "metadata"):
        if getattr(span, name) is not None:
            setattr(span, name, WITHHELD)
    if span.error:
        span.error = WITHHELD
    if span.attributes:
        span.attributes = {k: v for k, v in span.attributes.items()
                           if isinstance(v, int | float | bool) and isinstance(k, str)
                           and _PLAIN_NAME.fullmatch(k) is not None}


_PLAIN_NAME: Final = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def withhold_score(score: Score) -> Score:
    """``score`` without its free text (comment and label), after redaction failed on it."""
    return dataclasses.replace(
        score,
        comment=WITHHELD if score.comment else score.comment,
        label=WITHHELD if score.label else score.label,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """A point measurement: GPU utilisation of one device, a queue depth."""

    name: str
    value: float
    source: str = "sampler"
    time_ns: int = field(default_factory=time.time_ns)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Alert:
    """One state of an alert rule; a new object is emitted on every transition.

    The states of one alert (one series of a rule: the rule and its labels)
    share its ``alert_id``: pending (the condition holds, not yet for the
    rule's ``for``), firing, resolved (after firing), or inactive (it was
    pending and the condition stopped holding before it fired).
    ``started_ns`` is when it became pending, ``ended_ns`` when it resolved;
    ``trace_ids`` are traces behind the value (the slow, failed or costly
    ones), at most a few dozen. ``source`` says what recorded it: ``"rules"``
    for the alert evaluator (which moves only its own alerts on), empty for
    an alert a plugin or the application recorded.
    """

    rule: str
    state: str  # pending, firing, resolved, inactive
    severity: str = "warning"
    value: float | None = None
    threshold: float | None = None
    started_ns: int = field(default_factory=time.time_ns)
    ended_ns: int | None = None
    summary: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    alert_id: str = field(default_factory=new_span_id)
    description: str = ""
    trace_ids: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """Counters of the recorder pipeline, shown in the TUI and exported.

    Every span recorded ends in exactly one of: written, dropped (queue
    overflow), failed (could not be processed or spilled), dead_lettered
    (the store rejected it; kept in the dead-letter file), lost (not stored
    by the exit deadline), or still spilled, queued or in flight.
    """

    queued: int
    dropped: int
    written: int
    failed: int
    spilled: int
    replayed: int
    queue_depth: int
    plugin_errors: int
    dead_lettered: int = 0
    lost: int = 0
    skipped_checks: int = 0  # stored without quality checks because exit was near

    @property
    def not_stored(self) -> int:
        """Spans recorded in this process that will never reach the store on their own."""
        return self.dropped + self.failed + self.dead_lettered + self.lost


def feedback_scores(
    trace_id: str,
    *,
    thumbs: int | None = None,
    rating: int | None = None,
    comment: str | None = None,
    span_id: str | None = None,
    user_id: str | None = None,
) -> list[Score]:
    """The Score rows (``source = "feedback"``) for one piece of user feedback.

    ``thumbs`` is +1 or -1, ``rating`` 1..5; a comment alone is a score too.
    Raises ValueError for anything else. Shared by ``Observer.feedback`` and
    the TUI, which stores feedback without an Observer.
    """
    if thumbs is None and rating is None and not comment:
        raise ValueError("feedback needs thumbs, rating or comment")
    if thumbs is not None and thumbs not in (1, -1):
        raise ValueError(f"thumbs must be +1 or -1, got {thumbs!r}")
    if rating is not None and (isinstance(rating, bool) or rating not in range(1, 6)):
        raise ValueError(f"rating must be an integer from 1 to 5, got {rating!r}")
    if not trace_id:
        raise ValueError("feedback needs a trace_id")
    label = f"user:{user_id}" if user_id else None
    scores: list[Score] = []
    if thumbs is not None:
        scores.append(Score("thumbs", "feedback", trace_id, span_id, float(thumbs),
                            "up" if thumbs > 0 else "down", thumbs > 0, comment))
    if rating is not None:
        scores.append(Score("rating", "feedback", trace_id, span_id, float(rating),
                            label, rating >= 4, comment))
    if not scores:
        scores.append(Score("comment", "feedback", trace_id, span_id, None, label, None, comment))
    return scores


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One dataset item after the target ran on it: what an evaluator judges
    (the ``evaluate`` hook). Frozen: evaluators run on several threads at once.

    ``output`` is what the target returned, as returned (a string, a message,
    a dict...); :meth:`output_text` is its text. ``error`` is set (and
    ``output`` None) when the target failed after its retries. ``root`` and
    ``spans`` are the item's trace as the pipeline stored it (redacted,
    priced), empty when it was not stored in time; ``trace_id`` is None then.
    """

    item_id: str
    input: Any
    expected: Any
    output: Any
    experiment_id: str
    trace_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    root: Span | None = None
    spans: tuple[Span, ...] = ()

    def output_text(self) -> str:
        """The output as text: a string as it is, a chat message's content,
        the one value (or ``output``/``answer``/``text``) of a dict, else JSON."""
        return as_text(self.output)


_TEXT_KEYS: Final = ("output", "answer", "text", "content", "result")


def as_text(value: Any) -> str:
    """A target's output or an expected answer as text (see :meth:`EvalCase.output_text`)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    if isinstance(value, dict):
        if len(value) == 1:
            return as_text(next(iter(value.values())))
        for key in _TEXT_KEYS:
            if key in value:
                return as_text(value[key])
    import json

    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)
