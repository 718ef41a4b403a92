"""Datasets, experiments and their results: what evaluation reads and writes.

A dataset is a name and an ordered list of items (input, expected output,
metadata). Its *version* is a content hash of the items, so the same content
is the same version: creating it again changes nothing, and different
content under the same name is a new version beside the old ones (an
experiment names the exact version it ran on). ``NAME`` picks the newest
version, ``NAME@VERSION`` (or a unique start of the version) a given one.

An experiment is one run of a target over a dataset version. Each item it
finished has one ``experiment_results`` row, written only after the item's
trace and scores were stored: a row is what "finished" means when an
interrupted run is resumed. The row keeps the item's input and expected
output, the output as stored (redacted), latency, tokens, cost and the
item's scores (name -> value in 0..1), so comparisons need nothing else.
"""

from __future__ import annotations

import hashlib
import json
import string
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from chainsight.framework.model import new_ordered_id
from chainsight.storage import schema
from chainsight.storage.engine import open_engine, translate_errors

D = schema.datasets
DI = schema.dataset_items
E = schema.experiments
ER = schema.experiment_results
# The fewest hex digits of an experiment id that may stand for it.
MIN_ID_PART = 4


class EvalStoreError(Exception):
    """A dataset or experiment that is not there, or is ambiguous; the message says which."""


@dataclass(frozen=True)
class DatasetItem:
    """One example: what the target gets, what it should answer, and anything else."""

    input: Any
    expected: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    item_id: str = ""
    position: int = 0


@dataclass(frozen=True)
class Dataset:
    dataset_id: str
    name: str
    version: str
    created_ns: int
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    item_count: int = 0

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    dataset_id: str | None
    status: str  # running, done, failed
    created_ns: int
    ended_ns: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentResult:
    result_id: str
    experiment_id: str
    item_id: str | None
    trace_id: str | None
    input: Any
    expected: Any
    output: Any
    error: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    cost_usd: float | None
    scores: dict[str, float | None]
    created_ns: int


def canonical(value: Any) -> str:
    """JSON with sorted keys: the text a content hash is taken of."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def content_version(items: Sequence[DatasetItem]) -> str:
    """The version of a dataset with these items: 12 hex digits of a SHA-256."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(canonical([item.input, item.expected, item.metadata or {}]).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:12]


def _dataset(row: Any, count: int = 0) -> Dataset:
    return Dataset(row.dataset_id, row.name, row.version or "", row.created_ns, row.description,
                   dict(row.metadata or {}), count)


def _experiment(row: Any) -> Experiment:
    return Experiment(row.experiment_id, row.name, row.dataset_id, row.status, row.created_ns,
                      row.ended_ns, dict(row.metadata or {}), dict(row.summary or {}))


def _result(row: Any) -> ExperimentResult:
    return ExperimentResult(row.result_id, row.experiment_id, row.item_id, row.trace_id, row.input,
                            row.expected, row.output, row.error, row.latency_ms, row.input_tokens,
                            row.output_tokens, row.cost_usd, dict(row.scores or {}), row.created_ns)


class EvalStore:
    """Datasets and experiments in one store (SQLite or PostgreSQL).

    ``create=False`` (readers) raises ``StoreNotFound`` where there is no store;
    ``engine`` shares the pool of a ``storage.query.Store`` (closing is then its job).
    """

    def __init__(self, url: str, *, create: bool = True, engine: sa.Engine | None = None) -> None:
        self.url = url
        self.engine = engine if engine is not None else open_engine(url, create=create)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> EvalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, stmt: sa.Executable) -> list[Any]:
        with translate_errors(self.url), self.engine.connect() as conn:
            return list(conn.execute(stmt))

    # ---- datasets ------------------------------------------------------------
    def create_dataset(self, name: str, items: Sequence[DatasetItem], *,
                       description: str | None = None,
                       metadata: dict[str, Any] | None = None) -> tuple[Dataset, bool]:
        """Store ``items`` as a version of dataset ``name``; returns it and
        whether it is new (False: that content was already stored under the name)."""
        if not name or "@" in name:
            raise EvalStoreError(f"invalid dataset name {name!r}: it must be non-empty and have no '@'")
        if not items:
            raise EvalStoreError(f"dataset {name!r}: no items to store")
        version = content_version(items)
        existing = self._rows(sa.select(D).where(D.c.name == name, D.c.version == version))
        if existing:
            return self._with_count(existing[0]), False
        now = time.time_ns()
        dataset_id = new_ordered_id()
        with translate_errors(self.url), self.engine.begin() as conn:
            conn.execute(sa.insert(D).values(dataset_id=dataset_id, name=name, version=version,
                                             description=description, metadata=metadata or None,
                                             created_ns=now))
            conn.execute(sa.insert(DI), [
                {"item_id": new_ordered_id(), "dataset_id": dataset_id, "position": i,
                 "input": item.input, "expected": item.expected,
                 "metadata": item.metadata or None, "created_ns": now}
                for i, item in enumerate(items)
            ])
        return Dataset(dataset_id, name, version, now, description, dict(metadata or {}), len(items)), True

    def _with_count(self, row: Any) -> Dataset:
        count = self._rows(sa.select(sa.func.count()).select_from(DI)
                           .where(DI.c.dataset_id == row.dataset_id))[0][0]
        return _dataset(row, int(count))

    def list_datasets(self) -> list[Dataset]:
        """Every version of every dataset, by name, newest version first."""
        counts = sa.select(DI.c.dataset_id, sa.func.count().label("n")).group_by(DI.c.dataset_id).subquery()
        stmt = (sa.select(D, counts.c.n).outerjoin(counts, counts.c.dataset_id == D.c.dataset_id)
                .order_by(D.c.name, D.c.created_ns.desc(), D.c.dataset_id.desc()))
        return [_dataset(r, int(r.n or 0)) for r in self._rows(stmt)]

    def get_dataset(self, ref: str) -> Dataset:
        """``NAME`` (its newest version), ``NAME@VERSION`` (a unique start of
        the version is enough), or a dataset id."""
        name, _, version = ref.partition("@")
        clauses = [D.c.name == name]
        if version:
            literal = version.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(D.c.version.like(literal + "%", escape="\\"))
        rows = self._rows(sa.select(D).where(*clauses).order_by(D.c.created_ns.desc(), D.c.dataset_id.desc()))
        if not rows and not version:
            rows = self._rows(sa.select(D).where(D.c.dataset_id == ref))
        if not rows:
            raise EvalStoreError(f"no dataset {ref!r} in {self._where()}")
        if version and len({r.version for r in rows}) > 1:
            raise EvalStoreError(f"{ref!r} matches several versions ("
                                 + ", ".join(sorted(r.version for r in rows)) + "); give more of it")
        return self._with_count(rows[0])

    def dataset_items(self, dataset_id: str) -> list[DatasetItem]:
        stmt = sa.select(DI).where(DI.c.dataset_id == dataset_id).order_by(DI.c.position)
        return [DatasetItem(r.input, r.expected, dict(r.metadata or {}), r.item_id, r.position)
                for r in self._rows(stmt)]

    def _where(self) -> str:
        from chainsight.storage.engine import display_url

        return display_url(self.url)

    # ---- experiments -----------------------------------------------------------
    def create_experiment(self, name: str, dataset_id: str | None,
                          metadata: dict[str, Any] | None = None) -> Experiment:
        experiment = Experiment(new_ordered_id(), name, dataset_id, "running", time.time_ns(),
                                metadata=dict(metadata or {}))
        with translate_errors(self.url), self.engine.begin() as conn:
            conn.execute(sa.insert(E).values(
                experiment_id=experiment.experiment_id, name=name, dataset_id=dataset_id,
                status="running", metadata=metadata or None, summary=None,
                created_ns=experiment.created_ns, ended_ns=None))
        return experiment

    def finish_experiment(self, experiment_id: str, status: str, summary: dict[str, Any]) -> None:
        with translate_errors(self.url), self.engine.begin() as conn:
            conn.execute(sa.update(E).where(E.c.experiment_id == experiment_id)
                         .values(status=status, summary=summary, ended_ns=time.time_ns()))

    def set_experiment_status(self, experiment_id: str, status: str) -> None:
        with translate_errors(self.url), self.engine.begin() as conn:
            conn.execute(sa.update(E).where(E.c.experiment_id == experiment_id)
                         .values(status=status, ended_ns=None))

    def list_experiments(self, dataset_id: str | None = None, limit: int = 200) -> list[Experiment]:
        """Newest first."""
        clauses = [E.c.dataset_id == dataset_id] if dataset_id is not None else []
        stmt = (sa.select(E).where(*clauses)
                .order_by(E.c.created_ns.desc(), E.c.experiment_id.desc()).limit(limit))
        return [_experiment(r) for r in self._rows(stmt)]

    def get_experiment(self, ref: str) -> Experiment:
        """An experiment by id, by name (the newest of that name), or by a
        unique end or start of its id (at least 4 hex digits). Names come
        before partial ids: a run named ``A`` must not be taken for another
        run whose id happens to end in ``a``."""
        rows = self._rows(sa.select(E).where(E.c.experiment_id == ref))
        if not rows:
            rows = self._rows(sa.select(E).where(E.c.name == ref)
                              .order_by(E.c.created_ns.desc(), E.c.experiment_id.desc()).limit(1))
        if not rows and len(ref) >= MIN_ID_PART and all(c in string.hexdigits for c in ref):
            part = ref.lower()  # ids are lowercase hex
            rows = self._rows(sa.select(E).where(sa.or_(
                E.c.experiment_id.startswith(part), E.c.experiment_id.endswith(part))).limit(3))
            if len(rows) > 1:
                raise EvalStoreError(f"{ref!r} matches several experiments; give more of the id")
        if not rows:
            raise EvalStoreError(f"no experiment {ref!r} (an id, a name, or at least "
                                 f"{MIN_ID_PART} hex digits of the end of an id) in {self._where()}")
        return _experiment(rows[0])

    def write_result(self, experiment_id: str, item: DatasetItem, *, trace_id: str | None,
                     output: Any, error: str | None, latency_ms: float | None,
                     input_tokens: int | None, output_tokens: int | None, cost_usd: float | None,
                     scores: dict[str, float | None]) -> None:
        with translate_errors(self.url), self.engine.begin() as conn:
            conn.execute(sa.insert(ER).values(
                result_id=new_ordered_id(), experiment_id=experiment_id, item_id=item.item_id,
                trace_id=trace_id, input=item.input, expected=item.expected, output=output,
                error=error, latency_ms=latency_ms, input_tokens=input_tokens,
                output_tokens=output_tokens, cost_usd=cost_usd, scores=scores or None,
                created_ns=time.time_ns()))

    def results(self, experiment_id: str) -> list[ExperimentResult]:
        """The experiment's results in dataset order (one per finished item;
        should an item have two, the later one counts)."""
        stmt = (sa.select(ER, DI.c.position).outerjoin(DI, DI.c.item_id == ER.c.item_id)
                .where(ER.c.experiment_id == experiment_id)
                .order_by(ER.c.created_ns, ER.c.result_id))
        latest: dict[str, tuple[int, ExperimentResult]] = {}
        for row in self._rows(stmt):
            result = _result(row)
            position = row.position if row.position is not None else 1 << 62
            latest[result.item_id or result.result_id] = (position, result)
        return [result for _, result in sorted(latest.values(), key=lambda p: (p[0], p[1].created_ns))]

    def finished_items(self, experiment_id: str) -> set[str]:
        rows = self._rows(sa.select(ER.c.item_id).where(ER.c.experiment_id == experiment_id))
        return {r.item_id for r in rows if r.item_id is not None}


def item_keys(results: Iterable[ExperimentResult]) -> dict[tuple[str, int], ExperimentResult]:
    """Results keyed by their input (canonical JSON) and its occurrence: how
    two experiments on different versions of a dataset are paired."""
    seen: dict[str, int] = {}
    keyed: dict[tuple[str, int], ExperimentResult] = {}
    for result in results:
        text = canonical(result.input)
        n = seen.get(text, 0)
        seen[text] = n + 1
        keyed[(text, n)] = result
    return keyed
