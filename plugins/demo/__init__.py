"""Built-in plugin 'demo': ``chainsight demo`` records a realistic offline workload.

RAG chains streaming with real per-token delays, a tool-using agent, a
LangGraph agent, failures (model error mid-stream, tool error), refusals, an
answer with PII, slow outliers, three models and a dozen users, all through
the real LangChain handler into the configured store, then a summary computed
from the store. Needs the ``langchain`` extra; without LangGraph the graph
scenario is skipped (and the command says so).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING

from chainsight.framework.commands import CommandError
from chainsight.framework.hookspecs import hookimpl

if TYPE_CHECKING:
    from chainsight.framework.extension import CommandRegistry


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, default=300, help="traces to record (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="traces in flight (default 8)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same workload)")


def run_demo(ns: argparse.Namespace) -> int:
    try:
        from chainsight.framework.adapters.langchain import CallbackHandler
        from chainsight.plugins.demo import workload
    except ImportError as exc:
        raise CommandError(f"chainsight demo needs LangChain: {exc}\n"
                           "install it with: pip install 'chainsight[langchain]' langgraph",
                           exit_status=2) from None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from chainsight.framework.observer import Observer
    from chainsight.framework.store_api import StoreUnavailable
    from chainsight.storage.engine import open_engine

    console = Console(stderr=True)
    if ns.count < 1:
        raise CommandError("--count must be at least 1", exit_status=2)
    skip: tuple[str, ...] = ()
    if not workload.langgraph_available():
        skip = ("langgraph",)
        sys.stderr.write("langgraph is not installed: skipped the LangGraph scenario "
                         "(pip install langgraph to include it)\n")
    started_ns = time.time_ns()
    if ns.db:  # a store that cannot be written now would only collect a spill file
        try:
            open_engine(ns.db).dispose()
        except StoreUnavailable as error:
            raise CommandError(f"cannot record the demo: {error}") from None
    observer = Observer(ns.db, settings=getattr(ns, "settings", None))
    handler = CallbackHandler(observer)
    jobs = workload.plan(ns.count, ns.seed, skip=skip)
    with Progress(TextColumn("recording"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, disable=bool(getattr(ns, "json", False))) as bar:
        task = bar.add_task("demo", total=len(jobs))
        asyncio.run(workload.run(jobs, handler, ns.concurrency, lambda: bar.advance(task)))
    observer.flush(timeout=60)
    url = observer.storage_url
    observer.shutdown()
    from chainsight.plugins.demo.summary import print_summary, summarize

    return print_summary(summarize(url, started_ns), url, as_json=bool(getattr(ns, "json", False)))


@hookimpl
def register_commands(cli: CommandRegistry) -> None:
    cli.add("demo", "record an offline demo workload (LangChain + LangGraph) into the store",
            configure_parser, run_demo)
