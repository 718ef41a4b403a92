"""The tables, defined once for SQLite and PostgreSQL (SQLAlchemy Core).

Times are integer nanoseconds since the epoch (BigInteger); derived durations
are float milliseconds, kept only where an index or a sort needs them (a
span's latency is ``end_ns - start_ns``; a trace's is indexed). JSON
columns are JSONB on PostgreSQL. Alembic migrations (storage/migrations) are
generated from this module and are what creates the tables; never call
``metadata.create_all`` on a real store.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# SQLite only autoincrements an INTEGER PRIMARY KEY.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

TAG_SEP: Final = "\n"
"""Tags are also stored as ``"\\nprod\\nrag\\n"`` so ``tag:prod`` is a LIKE."""

spans = Table(
    "spans",
    metadata,
    Column("span_id", Text, primary_key=True),
    Column("trace_id", Text, nullable=False),
    Column("parent_id", Text),
    Column("kind", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("error", Text),
    Column("error_type", Text),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger),
    Column("first_token_ns", BigInteger),
    Column("model", Text),
    Column("provider", Text),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cached_tokens", BigInteger),
    Column("reasoning_tokens", BigInteger),
    Column("tokens_estimated", Boolean, nullable=False),
    Column("cost_usd", Float),
    Column("chunk_count", Integer, nullable=False),
    Column("inputs", Json),
    Column("outputs", Json),
    Column("tags", Json),
    Column("metadata", Json),
    Column("user_id", Text),
    Column("session_id", Text),
    Column("attributes", Json),
    # Passing check verdicts on this span (storage/verdicts.py).
    Column("checks", Json),
    # Content stored once per trace: which fields another span holds (storage/shared_content.py).
    Column("content_refs", Text),
    Index(None, "trace_id", "start_ns"),
    # Spans by time, of any kind: metrics and cost of model calls, alert
    # rules over any kind, check verdicts in a window.
    Index(None, "start_ns"),
)



traces = Table(
    "traces",
    metadata,
    Column("trace_id", Text, primary_key=True),
    Column("root_span_id", Text),
    Column("name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger),
    Column("duration_ms", Float),
    Column("span_count", Integer, nullable=False),
    Column("llm_count", Integer, nullable=False),
    Column("error_count", Integer, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float),
    Column("unpriced_count", Integer, nullable=False),
    Column("ttft_ms", Float),
    Column("tpot_ms", Float),
    Column("model", Text),
    Column("user_id", Text),
    Column("session_id", Text),
    Column("tags", Text),  # TAG_SEP-delimited, from the root span
    # Lower-cased name, error and content preview of the root span.
    Column("search_text", Text),
    Column("updated_ns", BigInteger, nullable=False),
    Index(None, "start_ns", "trace_id"),
    Index(None, "status", "start_ns"),
    Index(None, "user_id", "start_ns"),
    Index(None, "session_id", "start_ns"),
    Index(None, "cost_usd", "trace_id"),
    Index(None, "duration_ms", "trace_id"),
)

# Scores that carry information: failed or flagged checks, feedback, judges,
# evaluations. A passing check is stored on its span (spans.checks).
scores = Table(
    "scores",
    metadata,
    Column("score_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("value", Float),
    Column("label", Text),
    Column("passed", Boolean),
    Column("source", Text, nullable=False),
    Column("comment", Text),
    Column("trace_id", Text, nullable=False),
    Column("span_id", Text),
    Column("experiment_id", Text),
    Column("created_ns", BigInteger, nullable=False),
    Index(None, "trace_id"),
    Index(None, "created_ns"),
)

samples = Table(
    "samples",
    metadata,
    Column("sample_id", AutoId, primary_key=True, autoincrement=True),
    Column("time_ns", BigInteger, nullable=False),
    Column("source", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("value", Float),
    Column("labels", Json),
    # Canonical labels JSON: (name, time_ns, source, labels_key) identifies a sample,
    # so replaying a spilled batch adds nothing.
    Column("labels_key", Text, nullable=False),
    UniqueConstraint("name", "time_ns", "source", "labels_key"),
    Index(None, "time_ns"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", Text, primary_key=True),
    Column("rule", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("value", Float),
    Column("threshold", Float),
    Column("started_ns", BigInteger, nullable=False),
    Column("ended_ns", BigInteger),
    Column("summary", Text, nullable=False),
    Column("labels", Json),
    Column("updated_ns", BigInteger, nullable=False),
    Column("description", Text),
    Column("trace_ids", Json),  # the traces behind the value (a JSON list)
    Column("source", Text),  # "rules": made by the alert evaluator
    Index(None, "state", "started_ns"),
    Index(None, "started_ns"),
)

# A lease per singleton job over one store (the alert evaluator): the holder
# renews it while it runs; another process takes it over once it expired.
leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    Column("acquired_ns", BigInteger, nullable=False),  # when this holder took it
)

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    # Content hash of the items (storage/evaluation.py): a name has one row per version.
    Column("version", Text),
    Column("description", Text),
    Column("metadata", Json),
    Column("created_ns", BigInteger, nullable=False),
    UniqueConstraint("name", "version"),
)

dataset_items = Table(
    "dataset_items",
    metadata,
    Column("item_id", Text, primary_key=True),
    Column("dataset_id", Text, nullable=False),
    Column("position", Integer, nullable=False),
    Column("input", Json),
    Column("expected", Json),
    Column("metadata", Json),
    Column("created_ns", BigInteger, nullable=False),
    Index(None, "dataset_id", "position"),
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("dataset_id", Text),
    Column("status", Text, nullable=False),
    Column("metadata", Json),  # model, prompt version, parameters, git commit...
    Column("summary", Json),  # metric name -> aggregate, written when it ends
    Column("created_ns", BigInteger, nullable=False),
    Column("ended_ns", BigInteger),
    Index(None, "dataset_id", "created_ns"),
    Index(None, "created_ns"),
)

experiment_results = Table(
    "experiment_results",
    metadata,
    Column("result_id", Text, primary_key=True),
    Column("experiment_id", Text, nullable=False),
    Column("item_id", Text),
    Column("trace_id", Text),
    Column("input", Json),
    Column("expected", Json),
    Column("output", Json),
    Column("error", Text),
    Column("latency_ms", Float),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cost_usd", Float),
    Column("scores", Json),  # score name -> value (0..1) of this item, as the run computed it
    Column("created_ns", BigInteger, nullable=False),
    Index(None, "experiment_id", "item_id"),
)

SEQUENCE_COLUMN: Final = "seq"
SEQUENCED_TABLES: Final = ("spans", "scores")
"""On PostgreSQL these tables have one more column, ``seq``, filled from the
sequence ``chainsight_seq`` by a default (migration 0004): the order rows were
inserted in, which a follower pages by (chainsight.storage.follow). It is
left out of the tables above on purpose: the writer inserts every column named
there, and SQLite needs none (its rowid is already in commit order)."""

followers = Table(
    "followers",
    metadata,
    # A reader that follows the store (``chainsight serve``): where it is, so a
    # restart resumes there (chainsight.storage.follow); see SEQUENCE_COLUMN.
    Column("name", Text, primary_key=True),
    Column("position", Json),
    Column("updated_ns", BigInteger, nullable=False),
)

plugin_health = Table(
    "plugin_health",
    metadata,
    Column("name", Text, primary_key=True),
    Column("calls", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("consecutive", Integer, nullable=False),
    Column("slow", BigInteger, nullable=False),
    Column("degraded", Boolean, nullable=False),
    Column("last_error", Text),
    Column("updated_ns", BigInteger, nullable=False),
)


span_rollups = Table(
    "span_rollups",
    metadata,
    # Per-minute, per-hour and per-day sums of the spans stored (chainsight.storage.rollups),
    # kept by the writer in the transaction that stores them; the metric
    # queries read these instead of every span. '' stands for a missing model
    # or provider.
    Column("period_s", Integer, primary_key=True),  # 60, 3600 or 86400
    Column("start_ns", BigInteger, primary_key=True),  # start of the minute, hour or day (UTC)
    Column("kind", Text, primary_key=True),
    Column("root", Integer, primary_key=True),  # 1: spans without a parent (a trace's first)
    Column("model", Text, primary_key=True),
    Column("provider", Text, primary_key=True),
    Column("status", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float),  # None: no span of the key was priced
    Column("unpriced", BigInteger, nullable=False),
    # Histograms in milliseconds, JSON {"bucket": count} (rollups.bucket_of).
    Column("latency", Text, nullable=False),
    Column("ttft", Text, nullable=False),
    Column("tpot", Text, nullable=False),
    # Passing verdicts on the spans, JSON {"check": [verdicts, with a value, value sum]}.
    Column("checks", Text, nullable=False),
    sqlite_with_rowid=False,  # the key is stored once, not again in an index
)
