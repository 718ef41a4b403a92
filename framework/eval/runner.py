"""Run a target over a dataset: every item an ordinary trace, judged by the
``evaluate`` hooks, linked to one experiment.

Per item, on an asyncio loop with ``concurrency`` items at a time:

1. call the target: a LangChain runnable with Chainsight's
   :class:`~chainsight.framework.adapters.langchain.CallbackHandler` and a
   known root ``run_id``; a callable inside ``observer.span(...)`` (sync ones
   in a thread). The root span carries ``experiment_id`` and ``item_id`` in
   its metadata and the tag ``eval``. Transient errors (timeouts, rate limits,
   dropped connections) are retried with backoff; each attempt is its own trace.
2. wait until the pipeline has stored the item's trace (a small collector
   plugin on the run's observer sees it in ``spans_finished``, and the
   online checks' scores in ``process_score``);
3. call every ``evaluate`` implementation (guarded: one failing evaluator is
   counted and reported, the others still run) and record their scores
   through the observer (so redaction and exporters see them);
4. flush, then write the item's ``experiment_results`` row. The row is
   written last, so a run killed at any point resumes (``resume=``) by
   running exactly the items without a row.

The run gets its own :class:`~chainsight.framework.observer.Observer` on the
store, which is also the process default while it runs (a target that calls
``get_observer()`` or builds a ``CallbackHandler()`` records into it).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chainsight.framework.dispatch import GuardedDispatcher
from chainsight.framework.eval import stats
from chainsight.framework.eval.targets import Target, as_target, is_transient, load_target
from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import EvalCase, Score, Span, new_span_id, new_trace_id
from chainsight.framework.observer import Observer, set_observer
from chainsight.framework.plugin_manager import plugin_name
from chainsight.storage.evaluation import (
    Dataset,
    DatasetItem,
    EvalStore,
    Experiment,
    ExperimentResult,
)
from chainsight.storage.serialize import to_jsonable

log = logging.getLogger("chainsight.eval")

EVAL_SOURCES = ("eval", "judge")
OUTPUT_CAP_BYTES = 32_768
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 4
    retries: int = 2  # extra attempts after a transient error
    timeout_s: float | None = 60.0  # per attempt
    backoff_s: float = 0.5  # doubled after each retry
    trace_wait_s: float = 30.0  # how long to wait for an item's trace to be stored
    flush_timeout_s: float = 30.0


@dataclass
class EvalResult:
    """What :func:`evaluate` returns: the experiment and the figures the CLI prints."""

    experiment: Experiment
    dataset: Dataset
    results: list[ExperimentResult]
    summary: dict[str, Any]
    ran: int = 0  # items run by this call (a resumed run skips the finished ones)
    skipped: int = 0
    evaluator_failures: dict[str, str] = field(default_factory=dict)

    @property
    def experiment_id(self) -> str:
        return self.experiment.experiment_id

    def mean(self, metric: str) -> float | None:
        entry = self.summary.get("scores", {}).get(metric)
        return None if entry is None else entry["mean"]

    @property
    def scores(self) -> dict[str, float]:
        """Each score's mean over the items."""
        return {name: entry["mean"] for name, entry in self.summary.get("scores", {}).items()}


# --------------------------------------------------------------------------
# The collector: the run's view of the pipeline
# --------------------------------------------------------------------------


class _Waiter:
    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.root: Span | None = None
        self.spans: list[Span] = []
        self.checks: list[Score] = []


class TraceCollector:
    """A plugin of the run's observer: hands each awaited root span, the
    spans of its trace and their check scores to the run, once stored."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiter] = {}
        self._spans: dict[str, list[Span]] = {}
        self._checks: dict[str, list[Score]] = {}

    def expect(self, root_span_id: str) -> _Waiter:
        waiter = self._waiting[root_span_id] = _Waiter()
        return waiter

    def forget(self, root_span_id: str) -> None:
        self._waiting.pop(root_span_id, None)

    @hookimpl
    def process_score(self, score: Score) -> None:
        if score.source == "check":
            self._checks.setdefault(score.trace_id, []).append(score)

    @hookimpl
    def spans_finished(self, spans: Sequence[Span]) -> None:
        for span in spans:
            self._spans.setdefault(span.trace_id, []).append(span)
            if span.parent_id is not None:
                continue
            trace_spans = self._spans.pop(span.trace_id, [])
            checks = self._checks.pop(span.trace_id, [])
            waiter = self._waiting.pop(span.span_id, None)
            if waiter is not None:
                waiter.root, waiter.spans, waiter.checks = span, trace_spans, checks
                waiter.loop.call_soon_threadsafe(waiter.done.set)


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


@dataclass
class _Attempt:
    output: Any = None
    error: BaseException | None = None
    root_span_id: str | None = None
    trace_id: str | None = None
    latency_ms: float | None = None
    waiter: _Waiter | None = None


class _Run:
    def __init__(self, observer: Observer, store: EvalStore, target: Target, experiment: Experiment,
                 options: RunOptions, collector: TraceCollector, keep: set[str] | None,
                 progress: Progress | None) -> None:
        self.observer = observer
        self.store = store
        self.target = target
        self.experiment = experiment
        self.options = options
        self.collector = collector
        self.keep = keep
        self.progress = progress
        self.dispatcher = GuardedDispatcher(observer.plugins.pm, strict=observer.strict,
                                            degrade_after=1 << 30)
        self.failures: dict[str, str] = {}
        self.not_stored = 0  # items whose trace or scores may not all be in the store
        self.done = 0
        self.total = 0
        self.handler: Any = None
        if target.kind == "langchain":
            from chainsight.framework.adapters.langchain import CallbackHandler

            self.handler = CallbackHandler(observer)

    async def run(self, items: Sequence[DatasetItem]) -> None:
        self.total = len(items)
        limit = asyncio.Semaphore(max(1, self.options.concurrency))

        async def one(item: DatasetItem) -> None:
            async with limit:
                await self.item(item)
                self.done += 1
                if self.progress is not None:
                    self.progress(self.done, self.total)

        await asyncio.gather(*(one(item) for item in items))

    # ---- one item ------------------------------------------------------------
    def _metadata(self, item: DatasetItem) -> dict[str, Any]:
        return {"experiment_id": self.experiment.experiment_id, "experiment": self.experiment.name,
                "item_id": item.item_id}

    async def _call(self, item: DatasetItem) -> _Attempt:
        """One attempt. The root span's id is chosen before the call and awaited
        from the collector, so a fast pipeline cannot store it unnoticed."""
        attempt = _Attempt()
        timeout = self.options.timeout_s
        start = time.perf_counter()
        try:
            if self.target.kind == "langchain":
                run_id = uuid.uuid4()
                attempt.root_span_id = f"{run_id.int:032x}"
                attempt.waiter = self.collector.expect(attempt.root_span_id)
                config = {"callbacks": [self.handler], "run_id": run_id, "tags": ["eval"],
                          "metadata": self._metadata(item)}
                attempt.output = await asyncio.wait_for(
                    in_daemon_thread(self.target.obj.invoke, item.input, config), timeout)
            else:
                attempt.root_span_id, attempt.trace_id = new_span_id(), new_trace_id()
                attempt.waiter = self.collector.expect(attempt.root_span_id)
                with self.observer.span(self.target.name, "chain", span_id=attempt.root_span_id,
                                        trace_id=attempt.trace_id, inputs=item.input, tags=["eval"],
                                        metadata=self._metadata(item)) as span:
                    if self.target.kind == "async":
                        output = await asyncio.wait_for(self.target.obj(item.input), timeout)
                    else:
                        output = await asyncio.wait_for(in_daemon_thread(self.target.obj, item.input),
                                                        timeout)
                    span.outputs = attempt.output = output
        except Exception as exc:
            attempt.error = exc
        attempt.latency_ms = (time.perf_counter() - start) * 1000
        return attempt

    async def _attempts(self, item: DatasetItem) -> _Attempt:
        """Call until success, a permanent error, or the retries are used up;
        each attempt is its own trace, and only the last one is awaited."""
        for n in range(self.options.retries + 1):
            attempt = await self._call(item)
            if attempt.error is None or not is_transient(attempt.error) or n == self.options.retries:
                return attempt
            if attempt.root_span_id is not None:
                self.collector.forget(attempt.root_span_id)
            log.info("item %s: %s; retrying", item.item_id, _describe(attempt.error))
            await asyncio.sleep(self.options.backoff_s * 2 ** n)
        raise AssertionError("unreachable")

    async def item(self, item: DatasetItem) -> None:
        attempt = await self._attempts(item)
        root: Span | None = None
        spans: list[Span] = []
        checks: list[Score] = []
        if attempt.waiter is not None:
            try:
                await asyncio.wait_for(attempt.waiter.done.wait(), self.options.trace_wait_s)
                root, spans, checks = attempt.waiter.root, attempt.waiter.spans, attempt.waiter.checks
            except TimeoutError:
                self.collector.forget(attempt.root_span_id or "")
                self.not_stored += 1
                log.warning("item %s: its trace was not stored within %.0f s; scored without it",
                            item.item_id, self.options.trace_wait_s)
        trace_id = root.trace_id if root is not None else attempt.trace_id
        error = _describe(attempt.error) if attempt.error is not None else None
        case = EvalCase(item.item_id, item.input, item.expected, attempt.output,
                        self.experiment.experiment_id, trace_id, dict(item.metadata), error,
                        root, tuple(spans))
        scores = await asyncio.to_thread(self.evaluate, case)
        if trace_id is not None:
            for score in scores:
                self.observer.record_score(score)
        if not await asyncio.to_thread(self.observer.flush, self.options.flush_timeout_s):
            self.not_stored += 1
        values = _check_values([c for c in checks if self.keep is None or c.name in self.keep])
        values.update(_eval_values(scores))
        llm = [s for s in spans if s.kind == "llm"]
        costs = [s.cost_usd for s in llm if s.cost_usd is not None]
        output = to_jsonable(root.outputs, OUTPUT_CAP_BYTES) if root is not None else None
        await asyncio.to_thread(
            self.store.write_result, self.experiment.experiment_id, item,
            trace_id=trace_id, output=output, error=error, latency_ms=attempt.latency_ms,
            input_tokens=sum(s.input_tokens or 0 for s in llm) if llm else None,
            output_tokens=sum(s.output_tokens or 0 for s in llm) if llm else None,
            cost_usd=sum(costs) if costs else None, scores=values)

    # ---- evaluators -----------------------------------------------------------
    def evaluate(self, case: EvalCase) -> list[Score]:
        """Every ``evaluate`` implementation on ``case`` (worker thread)."""
        found: list[Score] = []
        for name, function, argnames in self.dispatcher.implementations_with_args("evaluate"):
            args = {"case": case}
            ok, scores = self.dispatcher.guard(name, function, *[args[a] for a in argnames],
                                               what="evaluate")
            if not ok:
                health = self.dispatcher.health.get(name)
                self.failures[name] = (f"failed on {health.failures} item(s); last: {health.last_error}"
                                       if health is not None else "failed")
                continue
            for score in scores or ():
                if not isinstance(score, Score):
                    self.failures[name] = f"returned {type(score).__name__}, not a Score"
                    continue
                if self.keep is not None and score.name not in self.keep and name not in self.keep:
                    continue
                found.append(dataclasses.replace(
                    score, trace_id=case.trace_id or score.trace_id,
                    experiment_id=case.experiment_id,
                    source=score.source if score.source in EVAL_SOURCES else "eval"))
        return found


def in_daemon_thread(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """``function(*args)`` on a daemon thread of its own, with the caller's
    context (so spans nest): a target that hangs past its timeout is left
    running there, and neither the event loop's end nor the process's exit
    waits for it (``asyncio.to_thread``'s executor would be joined)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = context.run(function, *args)
        except BaseException as exc:
            deliver = functools.partial(settle, functools.partial(future.set_exception, exc))
        else:
            deliver = functools.partial(settle, functools.partial(future.set_result, result))
        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the loop is closed: the run gave up on this call
            pass

    threading.Thread(target=run, name="chainsight-eval-target", daemon=True).start()
    return future


def _describe(error: BaseException | None) -> str:
    if error is None:
        return ""
    if isinstance(error, TimeoutError) and not str(error):
        return "TimeoutError: timed out"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _value(score: Score) -> float | None:
    if score.value is not None:
        return float(score.value)
    if score.passed is not None:
        return 1.0 if score.passed else 0.0
    return None


def _eval_values(scores: Sequence[Score]) -> dict[str, float | None]:
    return {score.name: _value(score) for score in scores}


def _check_values(scores: Sequence[Score]) -> dict[str, float | None]:
    """An online check's verdict on the item: 1 when every span it judged passed."""
    values: dict[str, float | None] = {}
    for score in scores:
        if score.passed is None:
            continue
        verdict = 1.0 if score.passed else 0.0
        values[score.name] = min(values.get(score.name, 1.0) or 0.0, verdict)
    return values


# --------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------


def summarize(results: Sequence[ExperimentResult], failures: dict[str, str] | None = None) -> dict[str, Any]:
    """Each score's mean with a 95% bootstrap interval; latency, tokens, cost."""
    by_name: dict[str, list[float]] = {}
    for result in results:
        for name, value in result.scores.items():
            if value is not None:
                by_name.setdefault(name, []).append(float(value))
    scores: dict[str, Any] = {}
    for name in sorted(by_name):
        interval = stats.mean_ci(by_name[name])
        if interval is not None:
            scores[name] = {"mean": interval.mean, "low": interval.low, "high": interval.high,
                            "n": interval.n}
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    costs = [r.cost_usd for r in results if r.cost_usd is not None]
    return {
        "items": len(results),
        "errors": sum(1 for r in results if r.error),
        "scores": scores,
        "latency_p50_ms": stats.percentile(latencies, 0.5),
        "latency_p95_ms": stats.percentile(latencies, 0.95),
        "input_tokens": sum(r.input_tokens or 0 for r in results),
        "output_tokens": sum(r.output_tokens or 0 for r in results),
        "cost_usd": sum(costs) if costs else None,
        "evaluator_failures": dict(failures or {}),
    }


# --------------------------------------------------------------------------
# The Python API
# --------------------------------------------------------------------------


def evaluate(
    dataset: str | Sequence[DatasetItem | dict[str, Any]],
    target: Any,
    *,
    evaluators: Sequence[str | object] | None = None,
    name: str | None = None,
    db: str | None = None,
    config: str | None = None,
    options: RunOptions | None = None,
    resume: str | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Progress | None = None,
    strict: bool | None = None,
) -> EvalResult:
    """Run ``target`` over ``dataset`` and judge every item; see :mod:`this module <chainsight.framework.eval.runner>`.

    ``dataset``: a stored dataset's name (``NAME`` or ``NAME@VERSION``), or
    items (``DatasetItem`` or dicts with ``input``, ``expected``,
    ``metadata``), stored as dataset ``name`` first. ``target``: a LangChain
    runnable, a callable (sync or async) or ``"module:attr"``.
    ``evaluators``: None runs every evaluator plugin; otherwise strings keep
    only the scores (or plugins) of those names, and objects are evaluator
    plugins added to this run (e.g. ``Judge(model=...)``). ``resume``: an
    unfinished experiment (id or name) to complete. ``db``/``config``: the
    store and plugins.toml (default: the configuration's). Blocks; from a
    running event loop use :func:`aevaluate`.
    """
    return asyncio.run(aevaluate(dataset, target, evaluators=evaluators, name=name, db=db,
                                 config=config, options=options, resume=resume, metadata=metadata,
                                 progress=progress, strict=strict))


async def aevaluate(
    dataset: str | Sequence[DatasetItem | dict[str, Any]],
    target: Any,
    *,
    evaluators: Sequence[str | object] | None = None,
    name: str | None = None,
    db: str | None = None,
    config: str | None = None,
    options: RunOptions | None = None,
    resume: str | None = None,
    metadata: dict[str, Any] | None = None,
    progress: Progress | None = None,
    strict: bool | None = None,
) -> EvalResult:
    """:func:`evaluate` for callers already inside an event loop."""
    options = options or RunOptions()
    spec = target if isinstance(target, str) else None
    resolved = as_target(load_target(target) if isinstance(target, str) else target)
    extra = [e for e in evaluators or () if not isinstance(e, str)]
    keep = {e for e in evaluators or () if isinstance(e, str)} or None
    if keep is not None:
        keep |= {plugin_name(e) for e in extra}
    collector = TraceCollector()
    observer = Observer(db, config_path=config, plugins=[collector, *extra], strict=strict,
                        pipeline={"flush_interval_s": 0.05})
    previous = set_observer(observer)
    opened: EvalStore | None = None
    try:
        store = await asyncio.to_thread(EvalStore, observer.storage_url)
        opened = store
        ds, items = await asyncio.to_thread(_dataset, store, dataset, name)
        if resume:
            experiment = await asyncio.to_thread(store.get_experiment, resume)
            if experiment.dataset_id != ds.dataset_id:
                raise ValueError(f"experiment {experiment.name!r} ran on another dataset "
                                 f"({experiment.dataset_id}), not {ds.label}")
            if experiment.status == "done":
                raise ValueError(f"experiment {experiment.name!r} ({experiment.experiment_id}) "
                                 "is finished: nothing to resume")
            finished = await asyncio.to_thread(store.finished_items, experiment.experiment_id)
            await asyncio.to_thread(store.set_experiment_status, experiment.experiment_id, "running")
        else:
            run_metadata = {"target": spec or resolved.name, "target_kind": resolved.kind,
                            "dataset": ds.name, "dataset_version": ds.version,
                            "concurrency": options.concurrency, "retries": options.retries,
                            "timeout_s": options.timeout_s, **(metadata or {})}
            experiment = await asyncio.to_thread(
                store.create_experiment, name or f"{ds.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                ds.dataset_id, run_metadata)
            finished = set()
        todo = [item for item in items if item.item_id not in finished]
        run = _Run(observer, store, resolved, experiment, options, collector, keep, progress)
        status = "failed"
        try:
            if progress is not None:
                progress(0, len(todo))
            await run.run(todo)
            status = "done"
        finally:
            results = await asyncio.to_thread(store.results, experiment.experiment_id)
            summary = summarize(results, run.failures)
            summary["not_stored"] = run.not_stored
            final = status if status == "done" else "interrupted"
            await asyncio.to_thread(store.finish_experiment, experiment.experiment_id, final, summary)
        experiment = dataclasses.replace(experiment, status=final, summary=summary)
        return EvalResult(experiment, ds, results, summary, ran=len(todo),
                          skipped=len(items) - len(todo), evaluator_failures=dict(run.failures))
    finally:
        set_observer(previous)
        await asyncio.to_thread(observer.shutdown)
        if opened is not None:
            opened.close()


def _dataset(store: EvalStore, dataset: str | Sequence[DatasetItem | dict[str, Any]],
             name: str | None) -> tuple[Dataset, list[DatasetItem]]:
    if isinstance(dataset, str):
        ds = store.get_dataset(dataset)
    else:
        from chainsight.framework.eval.datasets import item_from_record

        items = [d if isinstance(d, DatasetItem) else item_from_record(d, f"item {i}")
                 for i, d in enumerate(dataset)]
        ds, _ = store.create_dataset(name or "adhoc", items)
    return ds, store.dataset_items(ds.dataset_id)
