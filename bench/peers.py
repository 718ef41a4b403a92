"""Chainsight against its peers: the same LangChain workloads under each tracer.

Two workloads, each run by plain ``invoke`` calls on one thread:

* ``chain``: ``prompt | model | parser`` (a ``GenericFakeChatModel`` that
  reports token usage);
* ``agent``: a LangGraph tool-calling agent (``StateGraph`` with LangGraph's
  prebuilt ``ToolNode`` and ``tools_condition``): the fake model asks for a
  tool, the tool runs, the model answers.

Contenders, each in its own subprocess (so a global patch or a global
TracerProvider stays there):

* ``chainsight``: Chainsight's ``CallbackHandler`` with the default plugins
  into a temporary SQLite file, every span stored;
* ``openllmetry``: OpenLLMetry's ``LangchainInstrumentor``
  (opentelemetry-instrumentation-langchain) and
* ``openinference``: OpenInference's ``LangChainInstrumentor``
  (openinference-instrumentation-langchain), each with an OTel SDK
  ``TracerProvider``, a ``BatchSpanProcessor`` and an exporter that counts
  the spans and returns SUCCESS;
* ``langfuse``: Langfuse's LangChain ``CallbackHandler`` (``langfuse``
  5, OTel-based) with its own processor and OTLP exporter, pointed at a
  closed local port (http://127.0.0.1:9, dummy keys, a 1 s export
  timeout): every export is encoded and then fails to connect; the spans
  counted are those that reach its processor and pass its default export
  filter (a counting processor on the same TracerProvider).

Every subprocess measures three modes on each workload: ``none`` (no
callbacks), ``noop`` (a do-nothing ``BaseCallbackHandler``: LangChain's own
dispatch floor) and the contender. The handlers (Chainsight, Langfuse) run
all three in every round, in an order that flips each round. The
instrumentors patch LangChain for the whole process and cannot be switched
off again (OpenLLMetry's ``uninstrument()`` leaves its wrapper in place), so
their subprocesses measure their ``none`` and ``noop`` rounds first, then
instrument once and measure the contender's rounds. The subprocesses take
turns round by round, so a machine that slows down mid-run slows everyone
alike. A contender's mode ends with its flush (Chainsight's observer flush,
the TracerProvider's ``force_flush``), inside the measured CPU.

Per workload and contender it prints:

* added latency per span: the median and the p90 of the per-invoke wall
  times, minus those of ``none`` in the same subprocess, divided by the
  LangChain runs (spans) per invoke;
* process CPU per span (``time.process_time`` over the mode's invokes and
  its flush, every thread of the process, divided by the spans), and the
  same minus the no-op floor's;
* the spans stored or exported against the LangChain runs;
* each figure's ratio to Chainsight's (peer / Chainsight).

Peers are optional benchmark dependencies
(``.venv/bin/pip install -c constraints.txt -e '.[bench-peers]'``); a peer
that is not installed is reported as such.

    .venv/bin/python bench/peers.py [--quick] [--rounds 20] [--invokes 300]
        [--agent-invokes 100] [--warmup 50] [--only chainsight,openllmetry,...]
        [--workloads chain,agent]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_MODE": "PRODUCTION", "HF_HUB_OFFLINE": "1", "LANGSMITH_TRACING": "false",
}
for _key, _value in ENV.items():
    os.environ.setdefault(_key, _value)

CONTENDERS = ("chainsight", "openllmetry", "openinference", "langfuse")
WORKLOADS = ("chain", "agent")
MODES = ("none", "noop", "contender")
# modules a contender needs, and the distributions whose versions are shown
NEEDS = {
    "chainsight": ("langchain_core",),
    "openllmetry": ("langchain_core", "opentelemetry.sdk", "opentelemetry.instrumentation.langchain"),
    "openinference": ("langchain_core", "opentelemetry.sdk", "openinference.instrumentation.langchain"),
    "langfuse": ("langchain_core", "langfuse.langchain"),
}
DISTRIBUTIONS = {
    "chainsight": "chainsight",
    "openllmetry": "opentelemetry-instrumentation-langchain",
    "openinference": "openinference-instrumentation-langchain",
    "langfuse": "langfuse",
}
CLOSED_PORT_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there
REPLY_TIMEOUT_S = 600.0
CLOSE_TIMEOUT_S = 15.0


def missing_module(names: tuple[str, ...]) -> str | None:
    """The first of ``names`` that cannot be imported, or None."""
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:
            return name
    return None


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---- the workloads (in the worker) ------------------------------------------------


def build_chain() -> Any:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages(
        [("system", "You answer questions about {topic}."), ("human", "{question}")]
    )
    answer = AIMessage(content="The answer is forty-two, as usual.",
                       usage_metadata={"input_tokens": 24, "output_tokens": 9, "total_tokens": 33},
                       response_metadata={"finish_reason": "stop", "model_name": "fake-model"})
    model = GenericFakeChatModel(messages=itertools.cycle([answer]))
    chain = prompt | model | StrOutputParser()
    question = {"topic": "numbers", "question": "What is the answer?"}
    return lambda config: chain.invoke(question, config=config)


def build_agent() -> Any:
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    @tool
    def lookup_order(order_id: str) -> str:
        """Status of an order by id."""
        return f"Order {order_id}: shipped, arriving in 2 days."

    script = [
        AIMessage(content="", tool_calls=[{"name": "lookup_order", "args": {"order_id": "A17"},
                                           "id": "call-1"}],
                  usage_metadata={"input_tokens": 180, "output_tokens": 22, "total_tokens": 202},
                  response_metadata={"finish_reason": "tool_calls", "model_name": "fake-model"}),
        AIMessage(content="Your order A17 has shipped and arrives in 2 days.",
                  usage_metadata={"input_tokens": 260, "output_tokens": 14, "total_tokens": 274},
                  response_metadata={"finish_reason": "stop", "model_name": "fake-model"}),
    ]
    model = GenericFakeChatModel(messages=itertools.cycle(script))

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([lookup_order]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    compiled = graph.compile()
    question = {"messages": [("user", "Where is my order A17?")]}

    def run(config: Any) -> Any:
        out = compiled.invoke(question, config=config)
        if "arrives in 2 days" not in str(out["messages"][-1].content):
            raise RuntimeError(f"the agent workload did not answer as scripted: {out['messages'][-1]!r}")
        return out

    return run


def build_workloads(names: tuple[str, ...]) -> dict[str, Callable[[Any], Any]]:
    builders = {"chain": build_chain, "agent": build_agent}
    return {name: builders[name]() for name in names}


def runs_per_invoke(run: Callable[[Any], Any]) -> int:
    """LangChain runs (what each tracer turns into spans) in one invoke."""
    from langchain_core.callbacks import BaseCallbackHandler

    class Counter(BaseCallbackHandler):
        def __init__(self) -> None:
            self.starts = 0

        def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

        def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

        def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

        def on_tool_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

        def on_retriever_start(self, *args: Any, **kwargs: Any) -> None:
            self.starts += 1

    counter = Counter()
    run({"callbacks": [counter]})
    return counter.starts


# ---- the contenders (in the worker) -----------------------------------------------


class Contender:
    """One tracer: its callbacks (or its global patch), its flush and its span count."""

    # patches LangChain for the whole process once enabled
    patches_globally = False

    def config(self) -> dict[str, Any]:
        return {}

    def enable(self) -> None: ...

    def flush(self) -> None: ...

    def count(self) -> int:
        raise NotImplementedError

    def close(self) -> None: ...


def counting_exporter() -> Any:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        """Counts what it is handed; sends nothing."""

        def __init__(self) -> None:
            self.spans = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.spans += len(spans)
            return SpanExportResult.SUCCESS

    return CountingExporter()


class ChainsightContender(Contender):
    def __init__(self, workdir: Path) -> None:
        from chainsight.framework.adapters.langchain import CallbackHandler
        from chainsight.framework.observer import Observer

        self.db = workdir / "chainsight.db"
        self.observer = Observer(f"sqlite:///{self.db}", spill_path=workdir / "spill.jsonl",
                                 entry_points=False)
        self.handler = CallbackHandler(self.observer)

    def config(self) -> dict[str, Any]:
        return {"callbacks": [self.handler]}

    def flush(self) -> None:
        if not self.observer.flush(300.0):
            raise RuntimeError("Chainsight's pipeline did not flush within 300 s")

    def count(self) -> int:
        import sqlite3

        # the pipeline's worker creates the store in the background: there may be none yet
        if not self.db.exists():
            return 0
        conn = sqlite3.connect(self.db)
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spans'").fetchone():
                return 0
            return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])
        finally:
            conn.close()

    def close(self) -> None:
        self.observer.shutdown(CLOSE_TIMEOUT_S)


class InstrumentorContender(Contender):
    """An OTel instrumentor that patches LangChain globally. It is switched on
    once, after its subprocess measured its baselines, and never off:
    OpenLLMetry's ``uninstrument()`` leaves ``BaseCallbackManager.__init__``
    wrapped (0.62: it unwraps attribute "BaseCallbackManager.__init__" of
    module ``langchain_core``, which does not exist), so its handler would stay
    in every later run."""

    patches_globally = True

    def __init__(self, instrumentor: Any) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.exporter = counting_exporter()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.instrumentor = instrumentor

    def enable(self) -> None:
        self.instrumentor.instrument(tracer_provider=self.provider)

    def flush(self) -> None:
        if not self.provider.force_flush(timeout_millis=60_000):
            raise RuntimeError("the TracerProvider did not flush within 60 s")

    def count(self) -> int:
        return int(self.exporter.spans)

    def close(self) -> None:
        self.provider.shutdown()


def openllmetry() -> Contender:
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    return InstrumentorContender(LangchainInstrumentor())


def openinference() -> Contender:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    return InstrumentorContender(LangChainInstrumentor())


class LangfuseContender(Contender):
    """Langfuse's handler; its client exports to a closed local port."""

    def __init__(self) -> None:
        import logging

        from langfuse import Langfuse
        from langfuse.langchain import CallbackHandler
        from langfuse.span_filter import is_default_export_span
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

        # every export fails: keep the exporter's and Langfuse's error lines out of the output
        for name in ("opentelemetry", "langfuse"):
            logging.getLogger(name).setLevel(logging.CRITICAL)

        class Counting(SpanProcessor):
            """Counts the ended spans that Langfuse's processor hands its exporter."""

            def __init__(self) -> None:
                self.spans = 0

            def on_end(self, span: Any) -> None:
                if is_default_export_span(span):
                    self.spans += 1

        self.counter = Counting()
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(self.counter)
        self.client = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench",
                               host=CLOSED_PORT_URL, timeout=1, tracer_provider=self.provider)
        self.handler = CallbackHandler(public_key="pk-lf-bench")

    def config(self) -> dict[str, Any]:
        return {"callbacks": [self.handler]}

    def flush(self) -> None:
        # Langfuse's own flush() is this plus joins of its (idle) score and media queues
        self.provider.force_flush(timeout_millis=60_000)

    def count(self) -> int:
        return self.counter.spans

    def close(self) -> None:
        closer = threading.Thread(target=self.client.shutdown, daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        if closer.is_alive():
            raise RuntimeError(f"Langfuse's shutdown did not return within {CLOSE_TIMEOUT_S:.0f} s")
        self.provider.shutdown()


def make_contender(name: str, workdir: Path) -> Contender:
    if name == "chainsight":
        return ChainsightContender(workdir)
    if name == "openllmetry":
        return openllmetry()
    if name == "openinference":
        return openinference()
    if name == "langfuse":
        return LangfuseContender()
    raise ValueError(f"unknown contender {name!r}; known: {', '.join(CONTENDERS)}")


# ---- the worker process ----------------------------------------------------------


def run_mode(run: Callable[[Any], Any], mode: str, contender: Contender, noop: Any,
             invokes: int) -> dict[str, Any]:
    """``invokes`` timed invokes in ``mode``: per-invoke wall times, the process
    CPU of the lot (the contender's flush included) and the spans it added."""
    config: dict[str, Any] = {}
    if mode == "noop":
        config = {"callbacks": [noop]}
    elif mode == "contender":
        config = contender.config()
    before = contender.count()
    walls: list[float] = []
    cpu = time.process_time()
    for _ in range(invokes):
        start = time.perf_counter()
        run(config)
        walls.append(time.perf_counter() - start)
    if mode == "contender":
        contender.flush()
    cpu = time.process_time() - cpu
    return {"wall": walls, "cpu": cpu, "spans": contender.count() - before}


def worker(args: argparse.Namespace) -> int:
    # the protocol has stdout to itself: whatever a library prints goes to stderr
    channel: TextIO = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import langchain_overhead

    workloads = build_workloads(tuple(args.workloads.split(",")))
    runs = {name: runs_per_invoke(run) for name, run in workloads.items()}
    contender = make_contender(args.worker, Path(args.workdir))
    noop = langchain_overhead.NoopHandler()
    invokes = {"chain": args.invokes, "agent": args.agent_invokes}
    # A contender that patches globally measures its baselines first (the
    # parent sends "round" commands), then "enable" switches it on for good
    # and later rounds measure it alone; the others run every mode each round.
    modes = ("none", "noop") if contender.patches_globally else MODES
    if not contender.patches_globally:
        contender.enable()

    def warm_up(modes: tuple[str, ...]) -> None:  # caches, the store, the exporters
        for run in workloads.values():
            for mode in modes:
                run_mode(run, mode, contender, noop, args.warmup)

    warm_up(modes)
    channel.write(json.dumps({"runs_per_invoke": runs,
                              "patches_globally": contender.patches_globally}) + "\n")
    for line in sys.stdin:
        command = line.split()
        if command[0] == "round":
            order = modes if int(command[1]) % 2 == 0 else tuple(reversed(modes))
            result = {name: {mode: run_mode(run, mode, contender, noop, invokes[name]) for mode in order}
                      for name, run in workloads.items()}
            channel.write(json.dumps(result) + "\n")
        elif command[0] == "enable":
            contender.enable()
            modes = ("contender",)
            warm_up(modes)
            channel.write(json.dumps({"enabled": True}) + "\n")
        elif command[0] == "finish":
            contender.close()
            channel.write(json.dumps({"closed": True}) + "\n")
            return 0
    return 1


# ---- the parent --------------------------------------------------------------------


class Worker:
    """A contender's subprocess, spoken to one line at a time."""

    def __init__(self, name: str, args: argparse.Namespace, workdir: Path) -> None:
        self.name = name
        (workdir / name).mkdir()
        self.stderr = (workdir / f"{name}.stderr").open("w+")
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                   "--workdir", str(workdir / name), "--workloads", ",".join(args.workloads),
                   "--invokes", str(args.invokes), "--agent-invokes", str(args.agent_invokes),
                   "--warmup", str(args.warmup)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True, cwd=workdir / name,
                                        env={**os.environ, **ENV})
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def reply(self, timeout: float = REPLY_TIMEOUT_S) -> Any:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.process.kill()
            raise RuntimeError(f"{self.name}'s worker gave no answer within {timeout:.0f} s") from None
        if line is None:
            self.process.wait()
            self.stderr.seek(0)
            tail = self.stderr.read()[-3000:]
            raise RuntimeError(f"{self.name}'s worker exited ({self.process.returncode}):\n{tail}")
        return json.loads(line)

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.reply()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def summarize(rounds: list[dict[str, Any]], workload: str, runs: int, invokes: int) -> dict[str, float]:
    """Figures of one contender's subprocess on one workload, per span (us)."""
    walls = {mode: [w for r in rounds if mode in r[workload] for w in r[workload][mode]["wall"]]
             for mode in MODES}
    cpu = {mode: statistics.median(r[workload][mode]["cpu"] for r in rounds if mode in r[workload])
           / (invokes * runs) * 1e6 for mode in MODES}
    per_span = 1e6 / runs
    return {
        "none_invoke_us": statistics.median(walls["none"]) * 1e6,
        "latency_median": (statistics.median(walls["contender"]) - statistics.median(walls["none"])) * per_span,
        "latency_p90": (percentile(walls["contender"], 90) - percentile(walls["none"], 90)) * per_span,
        "floor_latency": (statistics.median(walls["noop"]) - statistics.median(walls["none"])) * per_span,
        "cpu": cpu["contender"],
        "cpu_above_floor": cpu["contender"] - cpu["noop"],
        "cpu_floor": cpu["noop"] - cpu["none"],
        "spans": sum(r[workload]["contender"]["spans"] for r in rounds if "contender" in r[workload]),
        "leaked": sum(r[workload][mode]["spans"] for r in rounds for mode in ("none", "noop")
                      if mode in r[workload]),
        "runs": runs * invokes * sum("contender" in r[workload] for r in rounds),
    }


def with_ratio(figures: dict[str, float], base: dict[str, float] | None, key: str) -> str:
    """``key``'s figure in us, and its ratio to Chainsight's (peer / Chainsight)."""
    value = figures[key]
    if base is None or base is figures:
        return f"{value:.1f} us"
    if base[key] <= 0:
        return f"{value:.1f} us (n/a)"
    return f"{value:.1f} us ({value / base[key]:.1f}x)"


def print_tables(chosen: list[str], figures: dict[str, dict[str, dict[str, float]]],
                 skipped: dict[str, str], workloads: list[str], runs: dict[str, int]) -> None:
    columns = ("latency_median", "latency_p90", "cpu", "cpu_above_floor")
    for workload in workloads:
        print(f"\n### {workload} ({runs.get(workload, '?')} LangChain runs per invoke)\n")
        print("| contender | added latency/span, median | p90 | CPU/span | CPU/span above no-op floor "
              "| spans stored or exported / LangChain runs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        base = figures.get("chainsight", {}).get(workload)
        for name in chosen:
            if name in skipped:
                print(f"| {name} | {skipped[name]} | | | | |")
                continue
            f = figures[name][workload]
            leaked = f" ({f['leaked']:.0f} outside its mode!)" if f["leaked"] else ""
            cells = " | ".join(with_ratio(f, base, key) for key in columns)
            print(f"| {name} | {cells} | {f['spans']:.0f} / {f['runs']:.0f}{leaked} |")
        print("\nbaselines in each subprocess: no callbacks' median invoke; the no-op handler's "
              "latency and CPU per span above no callbacks")
        for name in chosen:
            f = figures.get(name, {}).get(workload)
            if f is not None:
                print(f"  {name:<14} invoke {f['none_invoke_us']:7.1f} us, no-op floor "
                      f"{f['floor_latency']:5.1f} us latency, {f['cpu_floor']:5.1f} us CPU")


def measure(args: argparse.Namespace, names: list[str], workdir: Path, skipped: dict[str, str],
            notes: list[str], started: float) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Each contender's rounds, from its subprocess; the LangChain runs per invoke."""
    workers = {name: Worker(name, args, workdir) for name in names}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    runs: dict[str, int] = {}
    patchers: list[str] = []

    def ask(name: str, command: str | None, what: str) -> Any:
        try:
            return workers[name].reply() if command is None else workers[name].ask(command)
        except RuntimeError as error:
            skipped[name] = f"failed {what}: {str(error).splitlines()[-1]}"
            sys.stderr.write(f"{error}\n")
            del workers[name]
            return None

    try:
        for name in names:
            if ready := ask(name, None, "to start"):
                runs = ready["runs_per_invoke"]
                if ready["patches_globally"]:
                    patchers.append(name)

        def rounds(among: list[str], label: str) -> None:
            for number in range(args.rounds):
                shift = number % max(1, len(among))
                for name in among[shift:] + among[:shift]:
                    if name in workers and (reply := ask(name, f"round {number}", f"in {label} {number}")):
                        results[name].append(reply)
                print(f"{label} {number + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)",
                      file=sys.stderr)

        # instrumentors patch LangChain for good: their baselines first, then them
        if patchers:
            rounds(patchers, "baseline round")
        for name in patchers:
            if name in workers:
                ask(name, "enable", "to instrument")
        rounds(list(workers), "round")
        for name, w in workers.items():
            try:
                w.ask("finish")
                w.process.wait(CLOSE_TIMEOUT_S)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                notes.append(f"{name}: did not close cleanly: {error}")
    finally:
        for w in workers.values():
            if w.process.poll() is None:
                w.process.kill()
                w.process.wait()
            w.stderr.close()
    return results, runs


def parent(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    load = os.getloadavg()
    skipped: dict[str, str] = {}
    chosen = [name for name in CONTENDERS if name in args.only]
    for name in chosen:
        lacking = missing_module(NEEDS[name])
        if lacking is None and "agent" in args.workloads:
            lacking = missing_module(("langgraph.prebuilt",))
        if lacking is not None:
            skipped[name] = f"not installed ({lacking})"
    print(f"# peers: {', '.join(args.workloads)}; {args.rounds} rounds of {args.invokes} chain / "
          f"{args.agent_invokes} agent invokes per mode, warm-up {args.warmup}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load {load[0]:.2f} at start")
    shown = ["langchain-core", "langgraph", "opentelemetry-sdk",
             *(DISTRIBUTIONS[name] for name in chosen)]
    print("versions: " + ", ".join(f"{d} {version(d)}" for d in shown))

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chainsight-peers-") as workdir:
        results, runs = measure(args, [n for n in chosen if n not in skipped], Path(workdir),
                                skipped, notes, started)

    invokes = {"chain": args.invokes, "agent": args.agent_invokes}
    figures = {name: {wl: summarize(results[name], wl, runs[wl], invokes[wl]) for wl in args.workloads}
               for name in results if name not in skipped}
    print_tables(chosen, figures, skipped, args.workloads, runs)
    for note in notes:
        print(note)
    if any(reason.startswith("not installed") for reason in skipped.values()):
        print("\nThe peers are optional: pip install -c constraints.txt -e '.[bench-peers]'")
    print("\nAdded latency: the median (p90) of the per-invoke wall times minus no callbacks' median "
          "(p90) in the same subprocess, per LangChain run. CPU: process CPU (every thread, the "
          "contender's flush included) per LangChain run. (N.Nx): peer / Chainsight. "
          + (f"Langfuse's spans are those that reached its span processor and passed its export "
             f"filter; its exporter's posts to {CLOSED_PORT_URL} all fail. " if "langfuse" in figures else "")
          + f"Load {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - started:.0f} s in all.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a short run (under a minute): 3 rounds of 60 chain / 20 agent invokes")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--invokes", type=int, default=300, help="chain invokes per mode per round")
    parser.add_argument("--agent-invokes", type=int, default=100, help="agent invokes per mode per round")
    parser.add_argument("--warmup", type=int, default=50, help="invokes per mode before the rounds")
    parser.add_argument("--only", default=",".join(CONTENDERS),
                        help=f"contenders, comma-separated (of {', '.join(CONTENDERS)})")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"workloads, comma-separated (of {', '.join(WORKLOADS)})")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.quick:
        args.rounds, args.invokes, args.agent_invokes, args.warmup = 3, 60, 20, 10
    args.only = args.only.split(",")
    args.workloads = args.workloads.split(",")
    unknown = [n for n in args.only if n not in CONTENDERS] + [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown contender or workload: {', '.join(unknown)}")
    return parent(args)


if __name__ == "__main__":
    raise SystemExit(main())
