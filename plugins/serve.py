"""Built-in plugin ``serve``: ``chainsight serve``, one long-running process per store.

It follows the store (:class:`chainsight.storage.follow.StoreFollower`: every
span and score any process stores, once, in insertion order, resuming after a
restart) and serves, on one port bound to 127.0.0.1 unless told otherwise:

* ``/metrics``: the LLM metrics (:mod:`chainsight.plugins.llm_metrics`) on a
  registry of its own, plus this process's CPU and memory;
* ``/healthz``: ``200`` and a JSON status while every periodic task keeps
  succeeding, ``503`` (same JSON, with the reason) while one fails (the
  store is down, say).

Everything periodic is a :class:`PeriodicTask` in :attr:`Serve.tasks`, each on
a thread of its own: following the store, reading the sampled gauges, and
whatever is added: the alert evaluator, with ``[plugins.alerts] evaluate =
"serve"`` (:meth:`Serve.evaluate_alerts`). A task that raises is logged once per
run of failures and retried on its next tick; the others go on. The
applications never wait for ``serve``: it only reads what they stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.extension import CommandRegistry
from chainsight.framework.model import Score, Span
from chainsight.plugins.otlp import CONFIG_SCHEMA as OTLP_SCHEMA

log = logging.getLogger("chainsight.serve")

NAME: Final = "serve"
DEFAULT_PORT: Final = 9464
DEFAULT_HOST: Final = "127.0.0.1"

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "default": DEFAULT_HOST,
                 "description": "Address to listen on; 0.0.0.0 exposes it to the network."},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535, "default": DEFAULT_PORT},
        "poll_interval_s": {"type": "number", "exclusiveMinimum": 0, "default": 1.0,
                            "description": "How often to read what was stored since the last look."},
        "samples_interval_s": {"type": "number", "exclusiveMinimum": 0, "default": 5.0,
                               "description": "How often to read GPU gauges and pipeline counters."},
        "safety_window_s": {"type": "number", "minimum": 0, "default": 60.0,
                            "description": "How long a transaction may commit after a later one "
                                           "and still be seen (PostgreSQL)."},
        "batch_size": {"type": "integer", "minimum": 1, "default": 5000},
        "follower_name": {"type": "string", "minLength": 1, "default": NAME,
                          "description": "Name the position is stored under; one per serve process."},
        "otlp_in": {"type": "boolean", "default": True,
                    "description": "Accept OTLP/HTTP traces at /v1/traces and store them "
                                   "through the plugins like any span."},
        "otlp": {**{k: v for k, v in OTLP_SCHEMA.items() if k != "$schema"}, "default": {},
                 "description": "Send every stored span over OTLP from here, with the options "
                                "of [plugins.otlp] (endpoint...): one sender for all processes."},
    },
}

SpanSink = Callable[[Sequence[Span], Sequence[Score]], None]


@dataclass
class PeriodicTask:
    """Something ``serve`` runs every ``interval_s`` seconds on its own thread."""

    name: str
    interval_s: float
    run: Callable[[], None]
    last_ok_ns: int | None = None
    failing_since_ns: int | None = None
    last_error: str | None = None
    runs: int = 0

    def tick(self) -> None:
        try:
            self.run()
        except Exception as exc:
            if self.failing_since_ns is None:
                self.failing_since_ns = time.time_ns()
                log.warning("chainsight serve: task %r failed: %s (retrying every %.3g s)",
                            self.name, describe(exc), self.interval_s)
            self.last_error = describe(exc)
        else:
            if self.failing_since_ns is not None:
                log.warning("chainsight serve: task %r works again", self.name)
            self.failing_since_ns = None
            self.last_error = None
            self.last_ok_ns = time.time_ns()
        finally:
            self.runs += 1

    def status(self) -> dict[str, Any]:
        return {"ok": self.failing_since_ns is None and self.last_ok_ns is not None,
                "last_ok_ns": self.last_ok_ns, "failing_since_ns": self.failing_since_ns,
                "error": self.last_error, "runs": self.runs}


def otlp_in_missing() -> str | None:
    """Why OTLP in cannot be served here (the ``otlp`` extra is not installed), or None."""
    try:
        import opentelemetry.proto.collector.trace.v1.trace_service_pb2  # noqa: F401
        from google.protobuf import json_format  # noqa: F401
    except ImportError as exc:
        return ("OTLP in ([plugins.serve] otlp_in) is off: /v1/traces needs opentelemetry-proto: "
                f"pip install 'chainsight[otlp]' ({exc})")
    return None


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class StoreFeed:
    """The follow task: reads new spans and scores and hands them to every sink."""

    def __init__(self, follower: Any, sinks: list[SpanSink]) -> None:
        self.follower = follower
        self.sinks = sinks
        self.spans_seen = 0
        self.scores_seen = 0

    def __call__(self) -> None:
        while True:
            found = self.follower.poll()
            if found:
                for sink in self.sinks:
                    sink(found.spans, found.scores)
                self.spans_seen += len(found.spans)
                self.scores_seen += len(found.scores)
            self.follower.save()
            if len(found.spans) < self.follower.limit and len(found.scores) < self.follower.limit:
                return


class AlertEvaluation:
    """The alert task: an evaluator (built at its first run, again after that
    failed: the store did not exist yet) whose alerts go to ``emit``."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.evaluator: Any = None

    def __call__(self) -> None:
        if self.evaluator is None:
            self.evaluator = self.make()
        self.evaluator.evaluate()

    def close(self) -> None:
        """Give the lease up (another process takes over at once) and close the store."""
        if self.evaluator is None:
            return
        try:
            self.evaluator.release()
        except Exception as exc:
            log.info("chainsight serve: the alert lease was not released (%s); it expires by itself",
                     describe(exc))
        self.evaluator.store.close()


class Serve:
    """The ``serve`` process's parts; :meth:`start` runs them, :meth:`stop` ends them."""

    def __init__(self, url: str, config: Mapping[str, Any],
                 prometheus: Mapping[str, Any] | None = None, settings: Any = None) -> None:
        from prometheus_client import CollectorRegistry

        from chainsight.plugins.llm_metrics import GPU_GAUGES, LlmMetrics, metrics_options
        from chainsight.storage.follow import StoreFollower

        self.url = url
        self.config = {**{k: v["default"] for k, v in CONFIG_SCHEMA["properties"].items()
                          if "default" in v}, **config}
        self.registry = CollectorRegistry()
        self.metrics = LlmMetrics(self.registry, **metrics_options(prometheus or {}))
        self.follower = StoreFollower(url, str(self.config["follower_name"]),
                                      window_s=float(self.config["safety_window_s"]),
                                      limit=int(self.config["batch_size"]))
        self.feed = StoreFeed(self.follower, [self._to_metrics])
        self.otlp: Any = None
        if (self.config.get("otlp") or {}).get("endpoint"):
            from chainsight.plugins.otlp import OtlpExporter

            self.otlp = OtlpExporter()
            self.otlp.start(self.config["otlp"])
            self.feed.sinks.append(self.otlp.export)
        self._gauge_names = (*GPU_GAUGES, *(f"chainsight_spans_{k}_total" for k in
                                            ("queued", "dropped", "written", "failed", "spilled")))
        self._samples_since = 0
        self._pipeline: dict[tuple[str, str], tuple[int, float]] = {}
        self.tasks: list[PeriodicTask] = [
            PeriodicTask("follow store", float(self.config["poll_interval_s"]), self.feed),
            PeriodicTask("read samples", float(self.config["samples_interval_s"]), self._read_samples),
        ]
        """The seam for more periodic work (the alert evaluator): append before :meth:`start`."""
        self.routes: dict[tuple[str, str], Callable[[BaseHTTPRequestHandler], None]] = {
            ("GET", "/metrics"): self._metrics_page,
            ("GET", "/healthz"): self._health_page,
        }
        """``(method, path) -> handler``: more endpoints are added here."""
        self.otlp_in_off: str | None = None
        """Why ``/v1/traces`` is not served although ``otlp_in`` is on (the extra is missing)."""
        if self.config["otlp_in"]:
            self.otlp_in_off = otlp_in_missing()
            if self.otlp_in_off is None:
                self.routes[("POST", "/v1/traces")] = self._otlp_in
            else:
                log.warning("chainsight serve: %s", self.otlp_in_off)
        self.settings = settings
        from chainsight.plugins.retention import prune_older_than, schedule

        when = schedule(getattr(settings, "storage", None) or {})
        if when is not None:  # [storage] retention: serve prunes (its OTLP-in observer does not)
            age_s, interval_s = when

            def prune() -> None:
                prune_older_than(url, age_s)

            self.tasks.append(PeriodicTask("prune store", interval_s, prune))
        self._ingest: Any = None
        self._ingest_lock = threading.Lock()
        self.received = 0
        self._received_lock = threading.Lock()  # HTTP requests run on threads of their own
        self.alerts: AlertEvaluation | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.http: ThreadingHTTPServer | None = None

    # ---- tasks -----------------------------------------------------------------
    def _to_metrics(self, spans: Sequence[Span], scores: Sequence[Score]) -> None:
        self.metrics.observe_spans(spans)
        self.metrics.observe_scores(scores)

    def _read_samples(self) -> None:
        from chainsight.storage.follow import latest_samples

        engine = self.follower.engine()
        # A little before the last look: a process may store a sample late.
        samples = latest_samples(engine, self._gauge_names, max(0, self._samples_since - 60 * 10**9))
        self.metrics.observe_samples(samples)
        for s in samples:
            if s.name.startswith("chainsight_spans_"):
                key = (s.name, json.dumps(s.labels, sort_keys=True))
                seen = self._pipeline.get(key)
                if seen is None or s.time_ns >= seen[0]:
                    self._pipeline[key] = (s.time_ns, float(s.value))
            self._samples_since = max(self._samples_since, s.time_ns)
        totals: dict[str, float] = {}
        for (name, _labels), (_, value) in self._pipeline.items():
            counter = name.removeprefix("chainsight_spans_").removesuffix("_total")
            totals[counter] = totals.get(counter, 0.0) + value
        self.metrics.set_pipeline_totals(totals)

    def evaluate_alerts(self, config: Mapping[str, Any], rules: Sequence[Any]) -> None:
        """Evaluate ``rules`` here every ``[plugins.alerts] interval`` (what
        ``evaluate = "serve"`` asks for; call before :meth:`start`). Alerts
        are recorded by the OTLP-in observer, so they are stored and handed
        to the notifier plugins as in an application's observer; the store's
        lease keeps it to one evaluator per store."""
        from chainsight.plugins.alerts import interval_s, make_evaluator
        from chainsight.storage.query import Store

        def make() -> Any:
            return make_evaluator(config, list(rules), Store(self.url, create=False),
                                  self.ingest_observer().record_alert)

        self.alerts = AlertEvaluation(make)
        self.tasks.append(PeriodicTask("evaluate alerts", interval_s(config), self.alerts))

    def _loop(self, task: PeriodicTask) -> None:
        while not self._stop.is_set():
            task.tick()
            self._stop.wait(task.interval_s)

    # ---- HTTP --------------------------------------------------------------------
    def _metrics_page(self, request: BaseHTTPRequestHandler) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        _reply(request, HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def ingest_observer(self) -> Any:
        """The observer OTLP-in spans and the alerts evaluated here go through
        (built at first use): every plugin but the ones serve itself plays
        (/metrics, OTLP out, retention)."""
        with self._ingest_lock:
            if self._ingest is None:
                from chainsight.framework.defaults import DEFAULT_PLUGINS
                from chainsight.framework.observer import Observer

                skip = {"prometheus", NAME, "retention"} | ({"otlp"} if self.otlp is not None else set())
                self._ingest = Observer(self.url, settings=self.settings,
                                        builtins=[p for p in DEFAULT_PLUGINS if p[0] not in skip])
            return self._ingest

    def _otlp_in(self, request: BaseHTTPRequestHandler) -> None:
        from chainsight.plugins.otlp_in import (
            MAX_BODY_BYTES,
            OtlpRequestError,
            decode,
            record,
            response_body,
        )

        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            _reply(request, HTTPStatus.LENGTH_REQUIRED,
                   b"POST /v1/traces: send the body with a Content-Length (chunked is not read)\n",
                   "text/plain; charset=utf-8")
            return
        raw_length = request.headers.get("Content-Length")
        try:
            length = int(raw_length) if raw_length is not None else 0
        except ValueError:
            length = -1
        if length < 0:  # read(-1) would wait for the client to close
            _reply(request, HTTPStatus.BAD_REQUEST,
                   f"POST /v1/traces: Content-Length {raw_length!r} is not a number of bytes\n".encode(),
                   "text/plain; charset=utf-8")
            return
        if length > MAX_BODY_BYTES:
            _reply(request, HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                   f"POST /v1/traces: {length} bytes is over the {MAX_BODY_BYTES} limit\n".encode(),
                   "text/plain; charset=utf-8")
            return
        body = request.rfile.read(length)
        content_type = request.headers.get("Content-Type", "")
        try:
            decoded = decode(body, content_type, request.headers.get("Content-Encoding", ""))
        except OtlpRequestError as exc:
            _reply(request, exc.status, f"POST /v1/traces: {exc}\n".encode(), "text/plain; charset=utf-8")
            return
        count = record(self.ingest_observer(), decoded)
        with self._received_lock:
            self.received += count
        reply, media = response_body(content_type.split(";", 1)[0].strip().lower())
        _reply(request, HTTPStatus.OK, reply, media)

    def health(self) -> tuple[bool, dict[str, Any]]:
        tasks = {t.name: t.status() for t in self.tasks}
        ok = all(t["ok"] for t in tasks.values())
        from chainsight.storage.engine import display_url

        positions = self.follower.positions or {}
        return ok, {
            "status": "ok" if ok else "failing",
            "store": display_url(self.url),
            "tasks": tasks,
            "spans_seen": self.feed.spans_seen,
            "scores_seen": self.feed.scores_seen,
            "otlp_spans_received": self.received,
            "otlp_in": ("on" if ("POST", "/v1/traces") in self.routes
                        else f"off: {self.otlp_in_off}" if self.otlp_in_off else "off"),
            "position": {name: p.high for name, p in positions.items()},
        }

    def _health_page(self, request: BaseHTTPRequestHandler) -> None:
        ok, body = self.health()
        _reply(request, HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
               json.dumps(body).encode(), "application/json")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        serve = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "chainsight-serve"

            def _route(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                handler = serve.routes.get((method, path))
                if handler is None:
                    known = sorted(f"{m} {p}" for m, p in serve.routes)
                    _reply(self, HTTPStatus.NOT_FOUND,
                           f"no {method} {path} here; this server has: {', '.join(known)}\n".encode(),
                           "text/plain; charset=utf-8")
                    return
                try:
                    handler(self)
                except GONE as exc:  # nobody to answer
                    log.debug("chainsight serve: %s %s: the client went away (%s)", method, path, exc)
                    self.close_connection = True
                except Exception as exc:
                    log.exception("chainsight serve: %s %s failed", method, path)
                    _reply(self, HTTPStatus.INTERNAL_SERVER_ERROR,
                           f"{method} {path} failed: {describe(exc)}\n".encode(),
                           "text/plain; charset=utf-8")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.address_string(), *args)

        return Handler

    # ---- lifecycle -----------------------------------------------------------------
    def start(self, host: str | None = None, port: int | None = None) -> tuple[str, int]:
        """Bind the port and start the tasks; the address actually bound."""
        host = str(self.config["host"]) if host is None else host
        port = int(self.config["port"]) if port is None else port
        self.http = _Server((host, port), self._handler())
        threads = [threading.Thread(target=self.http.serve_forever, name="chainsight-serve-http",
                                    daemon=True)]
        threads += [threading.Thread(target=self._loop, args=(task,), daemon=True,
                                     name=f"chainsight-serve-{task.name.replace(' ', '-')}")
                    for task in self.tasks]
        for thread in threads:
            thread.start()
        self._threads = threads
        bound = self.http.server_address
        return str(bound[0]), int(bound[1])

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.alerts is not None:
            running = [t for task, t in zip(self.tasks, self._threads[1:], strict=False)
                       if task.run is self.alerts and t.is_alive()]
            if running:  # still inside evaluate(): its store must stay open
                log.warning("chainsight serve: an alert evaluation still runs; its lease expires by itself")
            else:
                self.alerts.close()
        if self._ingest is not None:
            self._ingest.shutdown(max(0.5, deadline - time.monotonic()))
        if self.otlp is not None:
            self.otlp.shutdown(max(0.0, deadline - time.monotonic()))
        try:
            self.follower.save()
        except Exception as exc:
            log.warning("chainsight serve: could not store the position: %s", describe(exc))
        self.follower.close()


GONE: Final = (BrokenPipeError, ConnectionResetError)
"""What writing to (or reading from) a client that disconnected raises."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log (not print) what escaped a request; a client gone is no error."""
        exc = sys.exc_info()[1]
        if isinstance(exc, GONE):
            log.debug("chainsight serve: a client went away (%s)", exc)
        else:
            log.error("chainsight serve: a request from %s failed", client_address[0], exc_info=exc)


def _reply(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


# ---- the command -------------------------------------------------------------


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"address to listen on (default: [plugins.serve] host, {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, help=f"port (default: [plugins.serve] port, {DEFAULT_PORT}; 0: any free one)")


def _configs(settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from chainsight.framework.commands import CommandError
    from chainsight.framework.config import ConfigError, Settings, resolve_plugin_configs
    from chainsight.plugins.prometheus import CONFIG_SCHEMA as PROMETHEUS_SCHEMA

    settings = settings if settings is not None else Settings()
    schemas = {NAME: CONFIG_SCHEMA, "prometheus": PROMETHEUS_SCHEMA}
    others = [name for name in settings.plugins if name not in schemas]
    try:
        configs = resolve_plugin_configs(settings, schemas, ignore=others)
    except ConfigError as exc:
        raise CommandError(f"chainsight serve: {exc}") from None
    return configs.get(NAME, {}), configs.get("prometheus", {})


def _alerts_here(serve: Serve, settings: Any) -> None:
    """The alert evaluator, when ``[plugins.alerts] evaluate = "serve"``."""
    from chainsight.framework.commands import CommandError
    from chainsight.plugins.alert_cli import alerts_config
    from chainsight.plugins.alert_rules import RuleError, load_rules
    from chainsight.plugins.alerts import in_memory

    config, base = alerts_config(settings)
    if config.get("evaluate") != "serve":
        return
    try:
        rules = load_rules(config, base)
    except RuleError as exc:
        raise CommandError("chainsight serve: [plugins.alerts]: the rules cannot be used:\n"
                           + "\n".join(exc.problems)) from None
    if not rules:
        sys.stderr.write("chainsight serve: [plugins.alerts] evaluate = \"serve\" but there are no rules\n")
    elif in_memory(serve.url):
        sys.stderr.write("chainsight serve: alert rules are not evaluated over an in-memory store\n")
    else:
        serve.evaluate_alerts(config, rules)


def _run(ns: argparse.Namespace) -> int:
    if getattr(ns, "json", False):
        sys.stderr.write("chainsight: error: `chainsight serve` runs until stopped and has no --json output\n")
        return 2
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        sys.stderr.write("chainsight: error: `chainsight serve` needs prometheus-client: "
                         "pip install 'chainsight[prometheus]'\n")
        return 2
    from chainsight.framework.commands import display_url
    from chainsight.storage.engine import StoreUnavailable, open_engine

    config, prometheus = _configs(getattr(ns, "settings", None))
    url = ns.db
    try:  # a reader: no store there is an error; a store that is down is waited for
        open_engine(url, create=False).dispose()
    except StoreUnavailable as exc:
        sys.stderr.write(f"chainsight serve: the store is unavailable for now ({exc}); "
                         "serving anyway and retrying\n")
    serve = Serve(url, config, prometheus, settings=getattr(ns, "settings", None))
    _alerts_here(serve, getattr(ns, "settings", None))
    try:
        host, port = serve.start(ns.host, ns.port)
    except OSError as exc:
        sys.stderr.write(f"chainsight: error: cannot listen on {ns.host or config.get('host')}:"
                         f"{ns.port if ns.port is not None else config.get('port')}: {exc.strerror or exc}\n")
        return 1
    sys.stderr.write(f"chainsight serve: following {display_url(url)}; "
                     f"listening on http://{host}:{port} "
                     f"({', '.join(sorted(p for _, p in serve.routes))})\n")
    sys.stderr.flush()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        serve.stop()
    sys.stderr.write("chainsight serve: stopped\n")
    return 0


class ServeCommand:
    """The plugin: ``chainsight serve``, and the schema of ``[plugins.serve]``."""

    CONFIG_SCHEMA: Final = CONFIG_SCHEMA

    @hookimpl
    def register_commands(self, cli: CommandRegistry) -> None:
        cli.add(NAME, "serve /metrics and /healthz for a store, following what every process stores",
                _configure, _run)


def create_plugin() -> ServeCommand:
    """One instance per plugin manager (called by the plugin loader)."""
    return ServeCommand()
