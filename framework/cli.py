"""The ``chainsight`` command line.

Built-in commands: ``traces``, ``show``, ``plugins``, ``config check``,
``db upgrade|replay|prune|copy`` and ``deadletter``. Plugins add more through the
``register_commands`` hook (the demo, the TUI, pricing and feedback commands arrive this way), using the
public API of ``chainsight.framework.commands``.

Conventions: every listing takes ``--json`` (one JSON document on stdout);
every command that reads the store takes ``--db URL`` (default: the configured
storage URL); ``--config PATH`` picks the plugins.toml; errors are printed as
``chainsight: error: ...`` with exit status 1, configuration problems with
exit status 2, and tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from chainsight.framework.cli_records import (
    RecordsError,
    add_spill_arg,
    cmd_db_replay,
    cmd_deadletter_list,
    cmd_deadletter_show,
)
from chainsight.framework.cli_render import (
    MISSING,
    Column,
    fmt_cost,
    fmt_int,
    fmt_seconds,
    fmt_time,
    print_json,
    print_lines,
    print_table,
    short_id,
    tree_order,
)
from chainsight.framework.cli_run import HELP as RUN_HELP
from chainsight.framework.cli_run import cmd_run, configure_run
from chainsight.framework.cli_store import (
    cmd_db_copy,
    cmd_db_prune,
    configure_copy,
    configure_prune,
)
from chainsight.framework.commands import (
    CommandError,
    display_url,
    open_store,
    parse_duration,
    parse_time,
    resolve_trace,
)
from chainsight.framework.config import ConfigError, ConfigProblem, Settings, read_settings
from chainsight.framework.extension import CommandRunner
from chainsight.framework.replay import replay_link

if TYPE_CHECKING:
    from chainsight.framework.plugin_manager import PluginSet

PROG = "chainsight"
EXIT_OK, EXIT_ERROR, EXIT_CONFIG = 0, 1, 2

log = logging.getLogger("chainsight.cli")


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``chainsight`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--debug", action="store_true")
    early, _ = pre.parse_known_args(args_in)
    debug = bool(early.debug)

    try:
        return _run(args_in, early.config, debug)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `chainsight traces | head`
        _quiet_broken_pipe()
        return EXIT_OK
    except ConfigError as exc:
        if debug:
            raise
        report_problems(exc.problems)
        return EXIT_CONFIG
    except CommandError as exc:
        if debug:
            raise
        _error(str(exc))
        return exc.exit_status
    except RecordsError as exc:
        if debug:
            raise
        _error(str(exc))
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            raise
        if _is_store_misconfigured(exc):  # its message is the whole story
            _error(str(exc))
            return EXIT_ERROR
        _error(f"{describe_exception(exc)} (run with --debug for the traceback)")
        return EXIT_ERROR


def _is_store_misconfigured(exc: BaseException) -> bool:
    module = sys.modules.get("chainsight.storage.engine")  # never imported just to check
    return module is not None and isinstance(exc, module.StoreMisconfigured)


def _run(argv: list[str], config: str | None, debug: bool) -> int:
    problems: list[ConfigProblem] = []
    try:
        settings, problems = read_settings(config)
    except ConfigError as exc:  # the named file does not exist
        settings, problems = Settings(), list(exc.problems)

    # Plugins are loaded before parsing so that their commands exist. With a
    # broken file the sections in error fall back to their defaults here; the
    # problems are reported once the command is known (`config check` lists them).
    plugins = _load_plugins(settings, debug)
    parser = build_parser(plugins)
    ns = parser.parse_args(argv)
    if not getattr(ns, "run", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    ns.settings = settings
    ns.config_problems = problems
    ns.plugin_set = plugins
    if getattr(ns, "needs_config", True) and problems:
        report_problems(problems)
        return EXIT_CONFIG
    if hasattr(ns, "db") and not ns.db:
        ns.db = settings.storage_url
    result = ns.run(ns)
    return EXIT_OK if result is None else int(result)


def _load_plugins(settings: Settings, debug: bool) -> PluginSet | None:
    try:
        from chainsight.framework.plugin_manager import load_plugins

        return load_plugins(settings, strict=False)
    except Exception as exc:  # never let a plugin stop the CLI from starting
        if debug:
            raise
        _warn(f"plugins not loaded: {describe_exception(exc)}")
        return None


def _error(message: str) -> None:
    for i, line in enumerate(str(message).splitlines() or [""]):
        sys.stderr.write((f"{PROG}: error: " if i == 0 else "  ") + line + "\n")


def _warn(message: str) -> None:
    sys.stderr.write(f"{PROG}: warning: {message}\n")


def report_problems(problems: Sequence[ConfigProblem]) -> None:
    n = len(problems)
    sys.stderr.write(f"{PROG}: error: invalid configuration ({n} problem{'s' if n != 1 else ''}):\n")
    for p in problems:
        sys.stderr.write(f"  {p}\n")


def describe_exception(exc: BaseException) -> str:
    """The first line of the message, prefixed by the type when the message alone is vague."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if not first:
        return type(exc).__name__
    if isinstance(exc, OSError | LookupError | ValueError) and type(exc).__name__ not in first:
        return f"{type(exc).__name__}: {first}"
    return first


def _quiet_broken_pipe() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------
# Parser and the command registry handed to plugins
# --------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """--config and --debug, accepted before or after the subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="plugins.toml to use (default: $CHAINSIGHT_CONFIG, ./plugins.toml, "
                        "the user config dir)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks")
    return common


def add_db_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", default=None,
                        help="store URL (default: $CHAINSIGHT_STORAGE_URL, [storage] url, "
                        "sqlite:///chainsight.db)")


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


class CommandTable:
    """Implements :class:`chainsight.framework.extension.CommandRegistry` over argparse subparsers.

    The first command registered under a name wins; a clash (with a built-in or
    another plugin's command) is reported on stderr and ignored, as is a
    command whose ``configure`` raises.
    """

    def __init__(self, subparsers: Any, common: argparse.ArgumentParser) -> None:
        self._sub = subparsers
        self._common = common
        self.names: dict[str, str] = {}  # command -> owner ("builtin" or plugin name)
        self.owner = "builtin"
        self.problems: list[str] = []

    def add(
        self,
        name: str,
        help: str,
        configure: Callable[[argparse.ArgumentParser], None],
        run: CommandRunner,
    ) -> None:
        owner = self.owner
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            self._reject(f"plugin {owner!r}: invalid command name {name!r}")
            return
        if name in self.names:
            taken = self.names[name]
            by = "a built-in command" if taken == "builtin" else f"plugin {taken!r}"
            self._reject(f"plugin {owner!r}: command {name!r} is already taken by {by}; ignored")
            return
        # Try configure on a scratch parser first: a subparser cannot be removed.
        scratch = argparse.ArgumentParser(prog=f"{PROG} {name}", add_help=False)
        add_db_arg(scratch)
        add_json_arg(scratch)
        try:
            configure(scratch)
        except Exception as exc:
            self._reject(f"plugin {owner!r}: command {name!r} not added: {describe_exception(exc)}")
            return
        parser = self._sub.add_parser(name, help=help, description=help, parents=[self._common])
        add_db_arg(parser)
        add_json_arg(parser)
        configure(parser)
        parser.set_defaults(run=run, command=name)
        self.names[name] = owner

    def _reject(self, message: str) -> None:
        self.problems.append(message)
        _warn(message)


def build_parser(plugins: PluginSet | None = None) -> argparse.ArgumentParser:
    """The full parser: built-in commands, then the plugins' ``register_commands``."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Chainsight: local-first observability for LLM chains and agents.",
        parents=[common],
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    table = CommandTable(sub, common)

    def builtin(name: str, help: str, run: CommandRunner, *, db: bool = True, json: bool = True,
                parent: Any = None) -> argparse.ArgumentParser:
        p = (parent or sub).add_parser(name, help=help, description=help, parents=[common])
        if db:
            add_db_arg(p)
        if json:
            add_json_arg(p)
        p.set_defaults(run=run, command=name)
        table.names[name] = "builtin"
        return p

    p = builtin("traces", "list traces, newest first, with filters", cmd_traces)
    p.add_argument("query", nargs="?", default=None, metavar="FILTER",
                   help="filter expression, e.g. 'status:error latency>2s model:gpt-4o'")
    p.add_argument("--status", choices=("ok", "error", "unset"))
    p.add_argument("--name", help="trace (root span) name")
    p.add_argument("--model")
    p.add_argument("--user", dest="user_id", metavar="USER")
    p.add_argument("--session", dest="session_id", metavar="SESSION")
    p.add_argument("--tag")
    p.add_argument("--since", help="a duration back from now (30m, 2h, 7d) or an ISO date/time")
    p.add_argument("--until", help="like --since: only traces that started before it")
    p.add_argument("--min-cost", type=float, metavar="USD")
    p.add_argument("--min-latency", metavar="DURATION", help="seconds, or 500ms, 2s, 1m")
    p.add_argument("--text", help="text search in names, inputs, outputs and errors")
    p.add_argument("--limit", type=_positive_int, default=50)
    p.add_argument("--cursor", help="continue a listing (printed after a full page)")

    p = builtin("show", "show one trace: its span tree and scores", cmd_show)
    p.add_argument("trace_id", metavar="TRACE_ID", help="a trace id, or a unique part of one: its end (as `traces` shows it) or its start")

    p = builtin("run", RUN_HELP, cmd_run, json=False)
    configure_run(p)

    builtin("plugins", "list plugins with their version, source, hooks and status "
            "(degraded: as last recorded in the store)", cmd_plugins)

    cfg = sub.add_parser("config", help="configuration commands", parents=[common])
    cfg.set_defaults(run=_usage(cfg), needs_config=False)
    table.names["config"] = "builtin"
    cfg_sub = cfg.add_subparsers(title="config commands", metavar="COMMAND")
    p = cfg_sub.add_parser("check", help="validate plugins.toml against every plugin's schema",
                           description="Validate the configuration without running anything.",
                           parents=[common])
    add_json_arg(p)
    p.set_defaults(run=cmd_config_check, command="config check", needs_config=False)

    db = sub.add_parser("db", help="database commands", parents=[common])
    db.set_defaults(run=_usage(db), needs_config=False)
    table.names["db"] = "builtin"
    db_sub = db.add_subparsers(title="db commands", metavar="COMMAND")
    p = db_sub.add_parser("upgrade", help="apply the schema migrations to the store",
                          description="Apply the schema migrations to the store.",
                          parents=[common])
    add_db_arg(p)
    add_json_arg(p)
    p.set_defaults(run=cmd_db_upgrade, command="db upgrade")
    p = db_sub.add_parser("rebuild-rollups", help="compute the metric rollups again from the spans",
                          description="Replace the per-minute metric rollups (what the metrics "
                                      "screen and `chainsight stats` read) with ones computed "
                                      "from every stored span, to check them or to repair them. "
                                      "The rollups keep the history of pruned spans; this drops "
                                      "it.",
                          parents=[common])
    add_db_arg(p)
    add_json_arg(p)
    p.set_defaults(run=cmd_db_rebuild_rollups, command="db rebuild-rollups")
    p = db_sub.add_parser("replay", help="store the spans waiting in the spill file",
                          description="Write the batches the store could not take (it was down, "
                                      "locked or misconfigured) into the store, in order.",
                          parents=[common])
    add_db_arg(p)
    add_json_arg(p)
    add_spill_arg(p)
    p.set_defaults(run=cmd_db_replay, command="db replay")
    p = db_sub.add_parser("prune", help="delete traces (with spans and scores) and samples older "
                          "than an age", description="Delete the traces that started longer ago "
                          "than --older-than, with their spans and scores, and the samples older "
                          "than it, in small batches that never hold writers up for long.",
                          parents=[common])
    add_db_arg(p)
    add_json_arg(p)
    configure_prune(p)
    p.set_defaults(run=cmd_db_prune, command="db prune")
    p = db_sub.add_parser("copy", help="copy the whole store into another (SQLite to PostgreSQL...)",
                          description="Copy every trace, span, score, sample, alert, dataset and "
                          "experiment of the store (--db) into an empty one (--to), with a count "
                          "check at the end.", parents=[common])
    add_db_arg(p)
    add_json_arg(p)
    configure_copy(p)
    p.set_defaults(run=cmd_db_copy, command="db copy")

    letters = sub.add_parser("deadletter", help="rows the store refused, kept with its reason",
                             parents=[common])
    letters.set_defaults(run=_usage(letters), needs_config=False)
    table.names["deadletter"] = "builtin"
    letters_sub = letters.add_subparsers(title="deadletter commands", metavar="COMMAND")
    p = letters_sub.add_parser("list", help="list the dead letters", parents=[common])
    add_json_arg(p)
    add_spill_arg(p)
    p.set_defaults(run=cmd_deadletter_list, command="deadletter list")
    p = letters_sub.add_parser("show", help="one dead letter, whole, as JSON", parents=[common])
    p.add_argument("index", type=_positive_int, metavar="N", help="its number in `deadletter list`")
    add_spill_arg(p)
    p.set_defaults(run=cmd_deadletter_show, command="deadletter show", json=True)

    if plugins is not None:
        register_plugin_commands(plugins, table)
    return parser


def _usage(parser: argparse.ArgumentParser) -> CommandRunner:
    """The runner of a command group given no subcommand: its help, exit 2."""

    def run(_ns: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG

    return run


def register_plugin_commands(plugins: PluginSet, table: CommandTable) -> None:
    """Call each plugin's ``register_commands`` on its own, so that one raising
    plugin is reported with its name and the others still add theirs."""
    for impl in plugins.pm.hook.register_commands.get_hookimpls():  # registration order
        table.owner = impl.plugin_name
        try:
            impl.function(**{name: table for name in impl.argnames})
        except Exception as exc:
            table._reject(f"plugin {impl.plugin_name!r}: register_commands failed: "
                          f"{describe_exception(exc)}")
    table.owner = "builtin"


def plugin_setup_problems(plugins: PluginSet, configs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Each plugin's answer to ``setup_problems`` with its own configuration,
    called one at a time (a raising plugin is reported, the others still answer)."""
    found: dict[str, list[str]] = {}
    for impl in plugins.pm.hook.setup_problems.get_hookimpls():
        args = {"config": configs.get(impl.plugin_name, {})}
        try:
            answer: Any = impl.function(**{name: args[name] for name in impl.argnames})
        except Exception as exc:
            answer = [f"setup_problems failed: {describe_exception(exc)}"]
        if answer:
            found.setdefault(impl.plugin_name, []).extend(str(a) for a in answer)
    return found


def _plugin_configs(settings: Settings, plugins: PluginSet) -> dict[str, dict[str, Any]]:
    """Every plugin's validated configuration, or {} when the file has problems
    (they are reported by the command's own checks)."""
    from chainsight.framework.config import resolve_plugin_configs

    failed = [i.name for i in plugins.infos if i.status == "failed"]
    try:
        return resolve_plugin_configs(settings, plugins.schemas, ignore=failed)
    except ConfigError:
        return {}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


# --------------------------------------------------------------------------
# Argument values
# --------------------------------------------------------------------------


def build_filter(ns: argparse.Namespace) -> Any:
    """A ``chainsight.storage.query.TraceFilter`` from the positional filter and the flags."""
    from chainsight.storage.query import TraceFilter

    base: Any
    if ns.query:
        from chainsight.storage.filters import FilterError, parse_filter

        try:
            base = parse_filter(ns.query)
        except FilterError as exc:
            raise CommandError(f"invalid filter {ns.query!r}: {exc}") from None
    else:
        base = TraceFilter()

    changes: dict[str, Any] = {}
    for flag in ("status", "name", "model", "user_id", "session_id", "tag", "text"):
        value = getattr(ns, flag, None)
        if value is not None:
            changes[flag] = value
    if ns.since:
        changes["since_ns"] = parse_time(ns.since)
    if ns.until:
        changes["until_ns"] = parse_time(ns.until)
    if ns.min_cost is not None:
        changes["min_cost"] = ns.min_cost
    if ns.min_latency:
        changes["min_latency_s"] = parse_duration(ns.min_latency)
    if not changes:
        return base
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------


TRACE_COLUMNS = (
    Column("time"),
    Column("trace"),
    Column("name", max_width=40, flex=True),
    Column("status"),
    Column("duration", "right"),
    Column("ttft", "right"),
    Column("spans", "right"),
    Column("tokens", "right"),
    Column("cost", "right"),
    Column("model", max_width=30, flex=True),
    Column("user", max_width=20, flex=True),
)


def trace_row(t: Any) -> list[str]:
    tokens = (t.input_tokens or 0) + (t.output_tokens or 0)
    return [
        fmt_time(t.start_ns),
        short_id(t.trace_id),
        t.name,
        t.status,
        fmt_seconds(t.duration_s),
        fmt_seconds(t.ttft_s),
        fmt_int(t.span_count),
        fmt_int(tokens) if tokens or t.llm_count else MISSING,
        fmt_cost(t.cost_usd),
        t.model,
        t.user_id,
    ]


def trace_json(t: Any) -> dict[str, Any]:
    data: dict[str, Any] = {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}
    data["duration_s"] = t.duration_s
    return data


def cmd_traces(ns: argparse.Namespace) -> int:
    filters = build_filter(ns)
    store = open_store(ns.db)
    try:
        page = store.list_traces(filters, limit=ns.limit, cursor=ns.cursor)
    finally:
        store.close()
    if ns.json:
        print_json({"items": [trace_json(t) for t in page.items], "next_cursor": page.next_cursor})
        return EXIT_OK
    if not page.items:
        flags = ("query", "status", "name", "model", "user_id", "session_id", "tag", "text",
                 "since", "until", "min_cost", "min_latency", "cursor")
        filtered = any(getattr(ns, f, None) is not None for f in flags)
        sys.stderr.write("no traces match\n" if filtered else f"no traces in {display_url(ns.db)}\n")
        return EXIT_OK
    print_table(TRACE_COLUMNS, [trace_row(t) for t in page.items])
    if page.next_cursor:
        sys.stderr.write(f"more: {PROG} traces ... --cursor {page.next_cursor}\n")
    return EXIT_OK


SPAN_COLUMNS = (
    Column("span", max_width=60, flex=True),
    Column("kind"),
    Column("status"),
    Column("latency", "right"),
    Column("ttft", "right"),
    Column("tpot", "right"),
    Column("tokens", "right"),
    Column("cost", "right"),
    Column("model", max_width=30, flex=True),
    Column("error", max_width=60, flex=True),
)

SCORE_COLUMNS = (
    Column("score", max_width=30, flex=True),
    Column("value", "right"),
    Column("label", max_width=20, flex=True),
    Column("passed"),
    Column("source"),
    Column("span"),
    Column("comment", max_width=60, flex=True),
)


def span_row(guide: str, s: Any) -> list[str]:
    llm = s.kind == "llm"
    tokens = s.total_tokens
    return [
        guide + str(s.name),
        s.kind,
        s.status,
        fmt_seconds(s.latency_s),
        fmt_seconds(s.ttft_s) if llm else "",
        fmt_seconds(s.tpot_s) if llm else "",
        fmt_int(tokens) if tokens is not None else ("" if not llm else MISSING),
        fmt_cost(s.cost_usd) if llm or s.cost_usd is not None else "",
        s.model or "",
        (f"{s.error_type}: {s.error}" if s.error_type and s.error else s.error) or "",
    ]


def score_row(sc: Any) -> list[str]:
    value = "" if sc.value is None else f"{sc.value:g}"
    passed = "" if sc.passed is None else ("yes" if sc.passed else "no")
    return [sc.name, value, sc.label or "", passed, sc.source,
            short_id(sc.span_id) if sc.span_id else "(trace)", sc.comment or ""]


def cmd_show(ns: argparse.Namespace) -> int:
    store = open_store(ns.db)
    try:
        trace_id = resolve_trace(store, ns.trace_id)
        detail = store.get_trace(trace_id)
    finally:
        store.close()
    if detail is None:  # deleted between the two reads
        raise CommandError(f"no trace matches {ns.trace_id!r} in {display_url(ns.db)}")
    t = detail.trace
    if ns.json:
        print_json({
            "trace": trace_json(t),
            "spans": [s.to_dict() | {"latency_s": s.latency_s, "ttft_s": s.ttft_s, "tpot_s": s.tpot_s}
                      for s in detail.spans],
            "scores": list(detail.scores),
            "samples": list(getattr(detail, "samples", ()) or ()),
        })
        return EXIT_OK
    tokens = (t.input_tokens or 0) + (t.output_tokens or 0)
    head = [
        f"trace {t.trace_id}  {t.name}",
        f"  status {t.status}   started {fmt_time(t.start_ns)}   duration {fmt_seconds(t.duration_s)}"
        f"   ttft {fmt_seconds(t.ttft_s)}",
        f"  spans {t.span_count}   llm calls {t.llm_count}   tokens {fmt_int(tokens)}"
        f" ({fmt_int(t.input_tokens)} in / {fmt_int(t.output_tokens)} out)   cost {fmt_cost(t.cost_usd)}",
    ]
    who = [f"user {t.user_id}" if t.user_id else "", f"session {t.session_id}" if t.session_id else "",
           ("tags " + ", ".join(t.tags)) if t.tags else ""]
    if any(who):
        head.append("  " + "   ".join(w for w in who if w))
    link = next((found for s in detail.spans if s.parent_id is None and (found := replay_link(s))), None)
    if link is not None:
        head.append(f"  replay of span {link[1]} of trace {link[0]} ({PROG} show {short_id(link[0])})")
    print_lines(head)
    sys.stdout.write("\n")
    print_table(SPAN_COLUMNS, [span_row(g, s) for g, s in tree_order(detail.spans)])
    if detail.scores:
        sys.stdout.write("\n")
        print_table(SCORE_COLUMNS, [score_row(sc) for sc in detail.scores])
    return EXIT_OK


PLUGIN_COLUMNS = (
    Column("name"),
    Column("version"),
    Column("source", max_width=40, flex=True),
    Column("hooks", max_width=70, flex=True),
    Column("status", max_width=80, flex=True),
)


def cmd_plugins(ns: argparse.Namespace) -> int:
    plugins: PluginSet | None = ns.plugin_set
    if plugins is None:
        from chainsight.framework.plugin_manager import load_plugins

        plugins = load_plugins(ns.settings, strict=False)
    health = {str(h["name"]): h for h in read_plugin_health(ns.db)}
    problems = plugin_setup_problems(plugins, _plugin_configs(ns.settings, plugins))
    entries: list[dict[str, Any]] = []
    for i in plugins.infos:
        entries.append({"name": i.name, "version": i.version, "source": i.source,
                        "hooks": list(i.hooks), "status": i.status, "error": i.error,
                        "problems": [*i.problems, *problems.get(i.name, [])]})
    # Plugins the observer ran that this process did not load (registered by hand).
    for name in sorted(set(health) - {e["name"] for e in entries}):
        entries.append({"name": name, "version": None, "source": "observer (from the store)",
                        "hooks": [], "status": "active", "error": None, "problems": []})
    for e in entries:
        h = health.get(e["name"])
        e["runtime"] = None if h is None else {
            k: h.get(k) for k in ("calls", "failures", "slow", "degraded", "last_error", "updated_ns")
        }
        if h is not None and h.get("degraded") and e["status"] == "active":
            e["status"], e["error"] = "degraded", h.get("last_error")
    if ns.json:
        print_json(entries)
        return EXIT_OK
    rows = [
        [e["name"], e["version"] or MISSING, e["source"], ", ".join(e["hooks"]) or MISSING,
         f"{e['status']}: {'; '.join(filter(None, [e['error'], *e['problems']]))}"
         if e["error"] or e["problems"] else e["status"]]
        for e in entries
    ]
    print_table(PLUGIN_COLUMNS, rows)
    totals = read_pipeline_totals(ns.db)
    if totals:
        unstored = totals["dropped"] + totals["failed"] + totals["dead_lettered"]
        line = (f"pipeline, in all: {totals['written']:,} spans stored, {totals['dropped']:,} dropped "
                f"(queue full), {totals['failed']:,} failed, {totals['dead_lettered']:,} refused by the "
                "store (`chainsight deadletter list`)")
        sys.stdout.write(("\n" + line + "\n") if not unstored else f"\nwarning: {line}\n")
    return EXIT_OK


def read_pipeline_totals(url: str) -> dict[str, int]:
    """The pipeline counters stored in ``url`` (empty when there is no store)."""
    try:
        store = open_store(url)
        try:
            return dict(store.pipeline_totals())
        finally:
            store.close()
    except Exception:
        return {}  # read_plugin_health has said why


def read_plugin_health(url: str) -> list[dict[str, Any]]:
    """The plugin health the observer last wrote to the store (degraded plugins...).

    Never creates a store: no store at the URL means no data. A store that
    cannot be read is a warning, not a failure of the listing.
    """
    from chainsight.storage.engine import StoreNotFound

    try:
        store = open_store(url)
        try:
            reader = getattr(store, "plugin_health", None)
            return list(reader()) if reader is not None else []
        finally:
            store.close()
    except StoreNotFound:
        return []
    except Exception as exc:
        _warn(f"runtime plugin health not read from {display_url(url)}: {describe_exception(exc)}")
        return []


def cmd_config_check(ns: argparse.Namespace) -> int:
    settings: Settings = ns.settings
    problems: list[ConfigProblem] = list(ns.config_problems)
    warnings: list[str] = []
    configured = 0
    syntax_broken = any(p.message.startswith(("invalid TOML", "cannot read", "not UTF-8",
                                             "configuration file not found")) for p in problems)
    if not syntax_broken:
        from chainsight.framework.config import resolve_plugin_configs
        from chainsight.framework.plugin_manager import load_plugins

        plugins = ns.plugin_set or load_plugins(settings, strict=False)
        failed = [i.name for i in plugins.infos if i.status == "failed"]
        warnings += [f"plugin {i.name!r} failed to load: {i.error}" for i in plugins.infos
                     if i.status == "failed"]
        warnings += [f"plugin {i.name!r}: {problem}" for i in plugins.infos for problem in i.problems]
        try:
            configs = resolve_plugin_configs(settings, plugins.schemas, ignore=failed)
            configured = len(configs)
        except ConfigError as exc:
            problems += exc.problems
        else:
            warnings += [f"plugin {name!r}: {message}"
                         for name, messages in plugin_setup_problems(plugins, configs).items()
                         for message in messages]
    problems.sort(key=lambda p: (p.file or "", p.line or 0))
    where = settings.display_path if settings.path is not None or not problems else (
        problems[0].file or "built-in defaults")
    if ns.json:
        print_json({
            "ok": not problems,
            "file": str(settings.path) if settings.path is not None else None,
            "plugins_configured": configured,
            "problems": [p.to_dict() | {"text": str(p)} for p in problems],
            "warnings": warnings,
        })
    else:
        for w in warnings:
            _warn(w)
        if not problems:
            note = f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''} above)" if warnings else ""
            sys.stdout.write(f"OK: {where}, {configured} plugin{'s' if configured != 1 else ''} "
                             f"configured{note}\n")
        else:
            report_problems(problems)
    return EXIT_CONFIG if problems else EXIT_OK


def cmd_db_upgrade(ns: argparse.Namespace) -> int:
    from chainsight.storage.engine import upgrade

    revision = upgrade(ns.db)
    if ns.json:
        print_json({"url": display_url(ns.db), "revision": revision})
    else:
        sys.stdout.write(f"{display_url(ns.db)}: at revision {revision or MISSING}\n")
    return EXIT_OK


def cmd_db_rebuild_rollups(ns: argparse.Namespace) -> int:
    from chainsight.storage import rollups
    from chainsight.storage.engine import open_engine, translate_errors

    engine = open_engine(ns.db, create=False)
    try:
        with translate_errors(ns.db), engine.begin() as conn:
            spans, keys = rollups.rebuild(conn)
    finally:
        engine.dispose()
    if ns.json:
        print_json({"url": display_url(ns.db), "spans": spans, "rollups": keys})
    else:
        sys.stdout.write(f"{display_url(ns.db)}: rollups rebuilt from {spans} spans ({keys} rows)\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
