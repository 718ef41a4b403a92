"""``chainsight dataset ...`` and ``chainsight eval ...``.

Added through the ``register_commands`` hook by the built-in plugin
``eval`` (``plugins/eval_command.py``), like the demo's and the TUI's
commands; everything heavy (the runner, SQLAlchemy, Rich's progress bar) is
imported when a command runs. Exit status: 0, 1 on an error, 3 when a gate
(``--fail-under``, ``--max-regression``) failed; each failed gate is said on
stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from chainsight.framework.cli_render import (
    MISSING,
    Column,
    clean,
    fmt_cost,
    fmt_int,
    fmt_time,
    print_json,
    print_table,
    short_id,
)
from chainsight.framework.extension import CommandRegistry

if TYPE_CHECKING:
    from chainsight.framework.eval.compare import Comparison, Regression
    from chainsight.storage.evaluation import EvalStore

EXIT_GATE = 3
Runner = Callable[[argparse.Namespace], int]


def register(cli: CommandRegistry) -> None:
    """Add the ``dataset`` and ``eval`` command groups."""
    cli.add("dataset", "datasets for evaluation: create, list, show, export", _configure_dataset,
            _usage("dataset"))
    cli.add("eval", "run a target over a dataset, compare experiments, gate CI on the scores",
            _configure_eval, _usage("eval"))


def _usage(group: str) -> Runner:
    def run(ns: argparse.Namespace) -> int:
        sys.stderr.write(f"usage: chainsight {group} COMMAND ... (chainsight {group} --help lists them)\n")
        return 2
    return run


def _command(sub: Any, name: str, help: str, run: Runner, json: bool = True) -> argparse.ArgumentParser:
    """A subcommand with the options the host gives a command: ``--db``,
    ``--json``, ``--config``, ``--debug`` (suppressed defaults, so a value
    given before the subcommand stays)."""
    parser = sub.add_parser(name, help=help, description=help)
    parser.add_argument("--db", metavar="URL", default=argparse.SUPPRESS,
                        help="store URL (default: $CHAINSIGHT_STORAGE_URL, [storage] url, "
                        "sqlite:///chainsight.db)")
    if json:
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="print one JSON document")
    parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="plugins.toml to use")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser.set_defaults(run=run)
    return parser


def _configure_dataset(parser: argparse.ArgumentParser) -> None:
    ds = parser.add_subparsers(title="dataset commands", metavar="COMMAND")
    p = _command(ds, "create", "store a dataset (a new version when its content changed)", cmd_dataset_create)
    p.add_argument("name", metavar="NAME")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", metavar="FILE",
                        help="a .jsonl, .json or .csv file of items (input, expected, metadata)")
    source.add_argument("--from-traces", dest="traces", metavar="FILTER",
                        help="stored traces matching a filter ('name:qa status:ok'); the root's "
                        "inputs become the input and its outputs the expected output")
    p.add_argument("--limit", type=int, default=1000, help="--from-traces: at most this many (default 1000)")
    p.add_argument("--description")
    _command(ds, "list", "list datasets and their versions", cmd_dataset_list)
    p = _command(ds, "show", "show a dataset's items", cmd_dataset_show)
    p.add_argument("name", metavar="NAME[@VERSION]")
    p.add_argument("--limit", type=int, default=50)
    p = _command(ds, "export", "write a dataset's items as JSONL or CSV", cmd_dataset_export, json=False)
    p.add_argument("name", metavar="NAME[@VERSION]")
    p.add_argument("--format", choices=("jsonl", "csv"), default=None,
                   help="default: from the output file's suffix, else jsonl")
    p.add_argument("-o", "--output", metavar="FILE", help="default: stdout")


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    ev = parser.add_subparsers(title="eval commands", metavar="COMMAND")
    p = _command(ev, "run", "run a target over a dataset and score every item", cmd_eval_run)
    p.add_argument("dataset", metavar="DATASET", help="a dataset name, or NAME@VERSION")
    p.add_argument("--target", required=True, metavar="MODULE:ATTR",
                   help="a LangChain runnable or a Python callable (sync or async), called with each input")
    p.add_argument("--name", help="the experiment's name (default: DATASET-date-time)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--retries", type=int, default=2, help="retries of an item after a transient error")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per attempt")
    p.add_argument("--evaluator", action="append", default=[], metavar="NAME",
                   help="keep only these scores or evaluator plugins (repeatable; default: all)")
    p.add_argument("--resume", metavar="EXPERIMENT",
                   help="finish an interrupted experiment (id, id end or name): only the items "
                   "without a result run")
    p.add_argument("--fail-under", action="append", default=[], metavar="SCORE=MIN",
                   help="fail (exit 3) when the score's mean is below MIN")
    p.add_argument("--max-regression", action="append", default=[], metavar="SCORE=DROP",
                   help="fail (exit 3) when the score fell by more than DROP from --baseline")
    p.add_argument("--baseline", metavar="EXPERIMENT", help="the experiment --max-regression compares with")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p = _command(ev, "compare", "compare experiment B with A: per-score deltas and regressed items",
                 cmd_eval_compare)
    p.add_argument("a", metavar="A", help="the baseline experiment (id, id end or name)")
    p.add_argument("b", metavar="B")
    p.add_argument("--limit", type=int, default=50, help="regressions listed (default 50)")
    _command(ev, "list", "list experiments, newest first", cmd_eval_list)
    p = _command(ev, "show", "one experiment's summary and items", cmd_eval_show)
    p.add_argument("experiment", metavar="EXPERIMENT")


@contextmanager
def _store(url: str, *, create: bool = False) -> Iterator[EvalStore]:
    """The evaluation store; its errors (no such dataset or experiment...)
    become the CLI's one-line errors."""
    from chainsight.storage.evaluation import EvalStore, EvalStoreError

    try:
        with EvalStore(url, create=create) as store:
            yield store
    except EvalStoreError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    from chainsight.framework.commands import CommandError

    raise CommandError(message)


# --------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------


def cmd_dataset_create(ns: argparse.Namespace) -> int:
    from chainsight.framework.eval.datasets import DatasetFileError, items_from_traces, read_items
    from chainsight.storage.evaluation import EvalStoreError

    try:
        if ns.source:
            items = read_items(ns.source)
            origin = {"source": str(ns.source)}
        else:
            from chainsight.framework.commands import open_store
            from chainsight.storage.filters import FilterError, parse_filter

            try:
                filters = parse_filter(ns.traces)
            except FilterError as exc:
                _fail(f"invalid filter {ns.traces!r}: {exc}")
            reader = open_store(ns.db)
            try:
                items = items_from_traces(reader, filters, ns.limit)
            finally:
                reader.close()
            origin = {"traces": ns.traces}
        if not items:
            _fail(f"no items in {ns.source or 'the traces matching ' + repr(ns.traces)}")
        with _store(ns.db, create=True) as store:
            dataset, new = store.create_dataset(ns.name, items, description=ns.description,
                                                metadata=origin)
    except (DatasetFileError, EvalStoreError) as exc:
        _fail(str(exc))
    if ns.json:
        print_json({"dataset_id": dataset.dataset_id, "name": dataset.name, "version": dataset.version,
                    "items": dataset.item_count, "new": new})
    else:
        said = "stored" if new else "unchanged (this content is already stored)"
        sys.stdout.write(f"dataset {dataset.label}: {dataset.item_count} items, {said}\n")
    return 0


DATASET_COLUMNS = (Column("name", max_width=40, flex=True), Column("version"), Column("items", "right"),
                   Column("created"), Column("description", max_width=60, flex=True))


def cmd_dataset_list(ns: argparse.Namespace) -> int:
    with _store(ns.db) as store:
        datasets = store.list_datasets()
    if ns.json:
        print_json([{"dataset_id": d.dataset_id, "name": d.name, "version": d.version,
                     "items": d.item_count, "created_ns": d.created_ns, "description": d.description}
                    for d in datasets])
        return 0
    if not datasets:
        sys.stderr.write("no datasets (create one: chainsight dataset create NAME --from FILE)\n")
        return 0
    print_table(DATASET_COLUMNS, [[d.name, d.version, fmt_int(d.item_count), fmt_time(d.created_ns),
                                   d.description or ""] for d in datasets])
    return 0


def _brief(value: Any, limit: int = 60) -> str:
    from chainsight.framework.model import as_text

    return clean(as_text(value), limit) if value is not None else MISSING


def cmd_dataset_show(ns: argparse.Namespace) -> int:
    with _store(ns.db) as store:
        dataset = store.get_dataset(ns.name)
        items = store.dataset_items(dataset.dataset_id)
    if ns.json:
        from chainsight.framework.eval.datasets import item_record

        print_json({"dataset_id": dataset.dataset_id, "name": dataset.name, "version": dataset.version,
                    "created_ns": dataset.created_ns, "metadata": dataset.metadata,
                    "items": [item_record(i) | {"item_id": i.item_id} for i in items]})
        return 0
    sys.stdout.write(f"dataset {clean(dataset.label)}: {len(items)} items, created {fmt_time(dataset.created_ns)}\n\n")
    columns = (Column("#", "right"), Column("item"), Column("input", max_width=60, flex=True),
               Column("expected", max_width=40, flex=True))
    print_table(columns, [[str(i.position), short_id(i.item_id), _brief(i.input), _brief(i.expected)]
                          for i in items[: ns.limit]])
    if len(items) > ns.limit:
        sys.stderr.write(f"{len(items) - ns.limit} more (--limit N, or --json for all)\n")
    return 0


def cmd_dataset_export(ns: argparse.Namespace) -> int:
    from chainsight.framework.eval.datasets import write_csv, write_jsonl

    with _store(ns.db) as store:
        dataset = store.get_dataset(ns.name)
        items = store.dataset_items(dataset.dataset_id)
    fmt = ns.format or ("csv" if ns.output and ns.output.lower().endswith(".csv") else "jsonl")
    writer = write_csv if fmt == "csv" else write_jsonl
    if ns.output:
        with Path(ns.output).open("w", encoding="utf-8", newline="") as out:
            writer(items, out)
        sys.stderr.write(f"dataset {dataset.label}: {len(items)} items written to {ns.output}\n")
    else:
        writer(items, sys.stdout)
    return 0


# --------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------


class _Bar:
    """A Rich progress bar with ETA on stderr (a terminal only)."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Any = None
        self.task: Any = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("items"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     console=Console(stderr=True))

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task("items", total=total)
        self.progress.update(self.task, completed=done)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def cmd_eval_run(ns: argparse.Namespace) -> int:
    from chainsight.framework.eval.compare import GateError, check_gates, compare, parse_gates
    from chainsight.framework.eval.runner import RunOptions, evaluate
    from chainsight.framework.eval.targets import TargetError
    from chainsight.storage.evaluation import EvalStoreError

    try:
        fail_under = parse_gates(ns.fail_under, "--fail-under")
        max_regression = parse_gates(ns.max_regression, "--max-regression")
    except GateError as exc:
        _fail(str(exc))
    if max_regression and not ns.baseline:
        _fail("--max-regression needs --baseline EXPERIMENT (the run to compare with)")
    if ns.baseline:  # a typo in the baseline fails before the run, not after
        with _store(ns.db) as store:
            try:
                store.get_experiment(ns.baseline)
            except EvalStoreError as exc:
                _fail(f"--baseline: {exc}")
    options = RunOptions(concurrency=max(1, ns.concurrency), retries=max(0, ns.retries),
                         timeout_s=ns.timeout if ns.timeout > 0 else None)
    bar = _Bar(not ns.no_progress and not ns.json)
    try:
        result = evaluate(ns.dataset, ns.target, evaluators=ns.evaluator or None, name=ns.name,
                          db=ns.db, config=getattr(ns, "config", None), options=options,
                          resume=ns.resume, progress=bar)
    except (TargetError, EvalStoreError, ValueError) as exc:
        _fail(str(exc))
    finally:
        bar.stop()
    comparison = None
    if ns.baseline:
        with _store(ns.db) as store:
            comparison = compare(store, ns.baseline, result.experiment_id)
    failed = check_gates(result.summary, fail_under, max_regression, comparison)
    if ns.json:
        print_json({"experiment_id": result.experiment_id, "name": result.experiment.name,
                    "dataset": result.dataset.label, "ran": result.ran, "skipped": result.skipped,
                    "summary": result.summary, "gates_failed": failed})
    else:
        exp = result.experiment
        resumed = f", {result.skipped} finished before" if result.skipped else ""
        sys.stdout.write(f"experiment {clean(exp.name)} ({short_id(exp.experiment_id)}) on "
                         f"{clean(result.dataset.label)}: {result.ran} items run{resumed}\n\n")
        print_summary(result.summary)
        if comparison is not None:
            sys.stdout.write("\n")
            print_comparison(comparison, limit=20)
    for sentence in failed:
        sys.stderr.write(f"chainsight: gate failed: {sentence}\n")
    if (fail_under or max_regression) and not failed:
        sys.stderr.write(f"chainsight: all {len(fail_under) + len(max_regression)} gate(s) passed\n")
    return EXIT_GATE if failed else 0


SUMMARY_COLUMNS = (Column("score", max_width=40, flex=True), Column("mean", "right"),
                   Column("95% ci", "right"), Column("n", "right"))


def print_summary(summary: dict[str, Any]) -> None:
    rows = [[name, f"{e['mean']:.3f}", f"{e['low']:.3f}–{e['high']:.3f}", str(e["n"])]
            for name, e in summary.get("scores", {}).items()]
    if rows:
        print_table(SUMMARY_COLUMNS, rows)
    else:
        sys.stdout.write("no scores\n")
    p50, p95 = summary.get("latency_p50_ms"), summary.get("latency_p95_ms")
    latency = f"{p50:.0f} ms p50, {p95:.0f} ms p95" if p50 is not None and p95 is not None else MISSING
    sys.stdout.write(
        f"\nitems {summary.get('items', 0)}, errors {summary.get('errors', 0)}; latency {latency}; "
        f"tokens {fmt_int(summary.get('input_tokens'))} in / {fmt_int(summary.get('output_tokens'))} out; "
        f"cost {fmt_cost(summary.get('cost_usd'))}\n")
    for name, message in (summary.get("evaluator_failures") or {}).items():
        sys.stdout.write(f"warning: evaluator {clean(name)} {clean(message, 200)}\n")
    if summary.get("not_stored"):
        sys.stdout.write(f"warning: {summary['not_stored']} item(s) whose trace or scores may not all "
                         "be stored (see the log)\n")


DELTA_COLUMNS = (Column("score", max_width=40, flex=True), Column("n", "right"), Column("a", "right"),
                 Column("b", "right"), Column("delta", "right"), Column("95% ci", "right"),
                 Column("p", "right"), Column("worse", "right"), Column("better", "right"))
REGRESSION_COLUMNS = (Column("item"), Column("scores a→b", max_width=60, flex=True),
                      Column("input", max_width=50, flex=True), Column("output b", max_width=40, flex=True),
                      Column("trace b"))


def print_comparison(c: Comparison, limit: int) -> None:
    sys.stdout.write(f"A {clean(c.a.name)} ({short_id(c.a.experiment_id)})  vs  "
                     f"B {clean(c.b.name)} ({short_id(c.b.experiment_id)}): {c.paired} items paired"
                     + (f", {c.only_a} only in A" if c.only_a else "")
                     + (f", {c.only_b} only in B" if c.only_b else "") + "\n\n")
    print_table(DELTA_COLUMNS, [
        [m.name, str(m.n), f"{m.mean_a:.3f}", f"{m.mean_b:.3f}", f"{m.delta:+.3f}",
         f"{m.low:+.3f}–{m.high:+.3f}", f"{m.p_value:.3g}", str(m.regressed), str(m.improved)]
        for m in c.metrics])
    if not c.regressions:
        sys.stdout.write("\nno item regressed\n")
        return
    by_item: dict[str | None, list[Regression]] = {}
    for r in c.regressions:
        by_item.setdefault(r.item_id, []).append(r)
    sys.stdout.write(f"\n{len(by_item)} item(s) regressed:\n")
    print_table(REGRESSION_COLUMNS, [
        [short_id(item_id), ", ".join(f"{r.metric} {r.a:.2f}→{r.b:.2f}" for r in found),
         _brief(found[0].result_b.input, 50), _brief(found[0].result_b.output, 40),
         short_id(found[0].result_b.trace_id)]
        for item_id, found in list(by_item.items())[:limit]])
    if len(by_item) > limit:
        sys.stderr.write(f"{len(by_item) - limit} more regressed items (--limit N, or --json)\n")


def comparison_json(c: Comparison) -> dict[str, Any]:
    return {
        "a": c.a.experiment_id, "b": c.b.experiment_id, "paired": c.paired,
        "only_a": c.only_a, "only_b": c.only_b,
        "metrics": [vars(m) for m in c.metrics],
        "regressed_items": c.regressed_items,
        "regressions": [{"item_id": r.item_id, "metric": r.metric, "a": r.a, "b": r.b,
                         "trace_a": r.result_a.trace_id, "trace_b": r.result_b.trace_id,
                         "input": r.result_b.input} for r in c.regressions],
    }


def cmd_eval_compare(ns: argparse.Namespace) -> int:
    from chainsight.framework.eval.compare import compare

    with _store(ns.db) as store:
        comparison = compare(store, ns.a, ns.b)
    if ns.json:
        print_json(comparison_json(comparison))
    else:
        print_comparison(comparison, ns.limit)
    return 0


EXPERIMENT_COLUMNS = (Column("experiment"), Column("name", max_width=40, flex=True), Column("status"),
                      Column("items", "right"), Column("created"), Column("scores", max_width=80, flex=True))


def _score_brief(summary: dict[str, Any]) -> str:
    return "  ".join(f"{name} {e['mean']:.3f}" for name, e in summary.get("scores", {}).items())


def cmd_eval_list(ns: argparse.Namespace) -> int:
    with _store(ns.db) as store:
        experiments = store.list_experiments()
    if ns.json:
        print_json([vars(e) for e in experiments])
        return 0
    if not experiments:
        sys.stderr.write("no experiments (run one: chainsight eval run DATASET --target MODULE:ATTR)\n")
        return 0
    print_table(EXPERIMENT_COLUMNS, [
        [short_id(e.experiment_id), e.name, e.status, str(e.summary.get("items", MISSING)),
         fmt_time(e.created_ns), _score_brief(e.summary)] for e in experiments])
    return 0


def cmd_eval_show(ns: argparse.Namespace) -> int:
    with _store(ns.db) as store:
        exp = store.get_experiment(ns.experiment)
        results = store.results(exp.experiment_id)
    if ns.json:
        print_json({"experiment": vars(exp), "results": [vars(r) for r in results]})
        return 0
    sys.stdout.write(f"experiment {clean(exp.name)} ({exp.experiment_id}), {exp.status}, "
                     f"created {fmt_time(exp.created_ns)}\n\n")
    print_summary(exp.summary)
    names = sorted({n for r in results for n in r.scores})[:6]
    columns = (Column("item"), Column("input", max_width=40, flex=True), Column("output", max_width=40, flex=True),
               *(Column(n, "right") for n in names), Column("error", max_width=40, flex=True), Column("trace"))
    sys.stdout.write("\n")
    print_table(columns, [
        [short_id(r.item_id), _brief(r.input, 40), _brief(r.output, 40),
         *(MISSING if r.scores.get(n) is None else f"{r.scores[n]:.2f}" for n in names),
         r.error or "", short_id(r.trace_id)] for r in results])
    return 0
