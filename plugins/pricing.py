"""Built-in plugin 'pricing': the cost of every model call.

``price_span`` (``trylast``: any other plugin's price wins) prices a finished
span's input, cached-input, output and reasoning tokens, plus any per-request
fee, from litellm's bundled price map (read offline, without importing
litellm) or, without litellm, the dated snapshot of it shipped with
Chainsight (see :mod:`chainsight.plugins.price_table`), and the ``[plugins.pricing]``
overrides and aliases. Without any table it says so (``setup_problems``,
shown by ``chainsight plugins`` and ``chainsight config check``, and a
warning when an observer configures it). A model with no price returns None: the span is stored
*unpriced* (``cost_usd`` NULL, never $0), counted here
(:func:`unpriced_counts`) and listed by ``chainsight pricing unpriced``.

Commands:

* ``chainsight pricing show MODEL [--provider P]``: the price used per 1M
  tokens and where it came from (override, table key, alias).
* ``chainsight pricing unpriced [--since 7d]``: stored calls with no price.
* ``chainsight cost [--since 7d] [--by model|provider|user|tag|day|month]``:
  spend, requests, tokens, cost per request and per 1K tokens.
* ``chainsight reprice --since 30d [--model M] [--dry-run] [--clear-unknown]``:
  recompute stored costs with the current prices and refresh trace totals.

Configuration (``[plugins.pricing]`` in plugins.toml)::

    overrides = [
      { model = "my-finetune", input_per_1m = 0.50, output_per_1m = 1.50 },
      { model = "gpt-4o-mini", input_per_1k = 0.00015, output_per_1k = 0.0006 },
    ]
    aliases = { "azure/my-deployment" = "gpt-4o" }
    per_request = { "my-finetune" = 0.001 }

Each observer has its own instance (``create_plugin``), with its own table
and counts; the module-level functions use a process-wide default instance.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Span
from chainsight.plugins.price_table import ModelPrice, PriceTable

if TYPE_CHECKING:
    from chainsight.framework.config import Settings
    from chainsight.framework.extension import CommandRegistry
    from chainsight.storage.cost import PricedCall

log = logging.getLogger("chainsight.pricing")

_RATE: Final = {"type": "number", "minimum": 0}
_OVERRIDE_PROPS: Final[dict[str, Any]] = {
    "model": {"type": "string", "minLength": 1, "description": "model name as recorded"},
    **{
        f"{stem}_per_{unit}": {**_RATE, "description": f"US dollars per {unit.upper()} {what}"}
        for stem, what in (
            ("input", "input tokens"),
            ("output", "output tokens"),
            ("cached_input", "cached input tokens (default: the input price)"),
            ("reasoning", "reasoning tokens (default: the output price)"),
        )
        for unit in ("1k", "1m")
    },
    "per_request": {**_RATE, "description": "US dollars added to every call"},
}

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "overrides": {
            "type": "array",
            "default": [],
            "description": "prices that win over the table; also defines custom models",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["model"],
                "properties": _OVERRIDE_PROPS,
            },
        },
        "aliases": {
            "type": "object",
            "default": {},
            "description": "model name -> the model whose price it uses",
            "additionalProperties": {"type": "string", "minLength": 1},
        },
        "per_request": {
            "type": "object",
            "default": {},
            "description": "model name -> US dollars added to every call of it",
            "additionalProperties": _RATE,
        },
        "use_table": {
            "type": "boolean",
            "default": True,
            "description": "use litellm's bundled price map, or the snapshot of it shipped "
                           "with Chainsight (false: overrides only)",
        },
        "table_path": {
            "type": "string",
            "description": "a price map in litellm's JSON format to use instead of the bundled one",
        },
    },
}

CACHE_SIZE: Final = 4096


def table_from_config(config: Mapping[str, Any]) -> PriceTable:
    """A PriceTable from a validated ``[plugins.pricing]`` table (ValueError if inconsistent)."""
    return PriceTable(
        overrides=config.get("overrides") or (),
        aliases=config.get("aliases") or {},
        per_request=config.get("per_request") or {},
        table_path=config.get("table_path"),
        use_table=bool(config.get("use_table", True)),
    )


class PricingPlugin:
    """One observer's pricing: its price table, lookup cache and unpriced counts.

    Each observer gets its own instance (:func:`create_plugin`), so two
    observers in one process can price differently. Thread-safe: lookups
    run on the pipeline worker, counts may be read from any thread.
    """

    name = "pricing"
    CONFIG_SCHEMA: Final = CONFIG_SCHEMA

    def __init__(self, table: PriceTable | None = None) -> None:
        self._lock = threading.Lock()
        self._table = table if table is not None else PriceTable()
        self._cache: dict[tuple[str, str | None], ModelPrice | None] = {}
        self._unpriced: Counter[str] = Counter()

    @property
    def table(self) -> PriceTable:
        return self._table

    def set_table(self, table: PriceTable) -> None:
        """Use ``table`` from now on (clears the lookup cache and the unpriced counts)."""
        with self._lock:
            self._table = table
            self._cache = {}
            self._unpriced.clear()

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model`` in the current table (cached), or None."""
        cache = self._cache
        key = (model, provider)
        try:
            return cache[key]
        except KeyError:
            pass
        price = self._table.lookup(model, provider)
        if len(cache) >= CACHE_SIZE:
            cache.clear()
        cache[key] = price
        return price

    def cost_of(self, model: str, provider: str | None, input_tokens: int | None,
                output_tokens: int | None, cached_tokens: int | None = None,
                reasoning_tokens: int | None = None) -> float | None:
        """Dollars for one call, or None when the model has no price."""
        price = self.lookup(model, provider)
        if price is None:
            return None
        return price.cost(input_tokens, output_tokens, cached_tokens, reasoning_tokens)

    def unpriced_counts(self) -> dict[str, int]:
        """Model -> number of spans this instance could not price (since configure)."""
        with self._lock:
            return dict(self._unpriced)

    def price(self, span: Span) -> float | None:
        model = span.model
        if not model:
            return None
        cost = self.cost_of(model, span.provider, span.input_tokens, span.output_tokens,
                            span.cached_tokens, span.reasoning_tokens)
        if cost is None:
            with self._lock:
                self._unpriced[model] += 1
        return cost

    # ---- hooks ------------------------------------------------------------
    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        table = table_from_config(config)
        self.set_table(table)
        for problem in table.problems():
            log.warning("pricing: %s", problem)

    @hookimpl(trylast=True)
    def price_span(self, span: Span) -> float | None:
        return self.price(span)

    @hookimpl
    def setup_problems(self, config: Mapping[str, Any]) -> list[str]:
        try:
            return table_from_config(config).problems()
        except ValueError as exc:
            return [str(exc)]

    @hookimpl
    def register_commands(self, cli: CommandRegistry) -> None:
        cli.add("pricing", "show a model's price, or list models with no price",
                _configure_pricing, _run_pricing)
        cli.add("cost", "spend, cost per request and per 1K tokens, by model, user, tag or day",
                _configure_cost, _run_cost)
        cli.add("reprice", "recompute stored costs with the current prices",
                _configure_reprice, _run_reprice)


def create_plugin() -> PricingPlugin:
    """A fresh instance per observer (called by the plugin loader)."""
    return PricingPlugin()


# ---- commands ---------------------------------------------------------------


def _settings_table(settings: Settings | None) -> PriceTable:
    """The price table the configuration describes (the CLI has no observer)."""
    from chainsight.framework.commands import CommandError
    from chainsight.framework.config import ConfigError, Settings, resolve_plugin_configs

    settings = settings if settings is not None else Settings()
    others = [name for name in settings.plugins if name != "pricing"]
    try:
        config = resolve_plugin_configs(settings, {"pricing": CONFIG_SCHEMA}, ignore=others)
        return table_from_config(config.get("pricing", {}))
    except ConfigError as exc:
        raise CommandError(f"[plugins.pricing]: {exc}") from None
    except ValueError as exc:
        raise CommandError(f"[plugins.pricing]: {exc}") from None


def _configure_pricing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show", "unpriced"),
                        help="show: the price of MODEL; unpriced: stored calls with no price")
    parser.add_argument("model", nargs="?", metavar="MODEL", help="model name (for show)")
    parser.add_argument("--provider", help="provider, as litellm names it (show)")
    parser.add_argument("--since", help="unpriced: only calls since (30m, 7d, or an ISO date)")


def _run_pricing(ns: argparse.Namespace) -> int:
    from chainsight.framework.commands import CommandError

    if ns.action == "show":
        if not ns.model:
            raise CommandError("pricing show needs a MODEL")
        return _show(ns)
    return _unpriced_cmd(ns)


def _show(ns: argparse.Namespace) -> int:
    from chainsight.framework.commands import CommandError, print_json, print_lines

    table = _settings_table(getattr(ns, "settings", None))
    price = table.lookup(ns.model, ns.provider)
    if price is None:
        if ns.json:
            print_json({"model": ns.model, "provider": ns.provider, "priced": False,
                        "table": table.describe_source(), "problems": table.problems()})
            return 1
        problems = table.problems()
        raise CommandError(f"no price for {ns.model!r}: "
                       + (f"{problems[0]}" if problems else
                          f"not in {table.describe_source()}; add it to [plugins.pricing] "
                          "overrides or aliases in plugins.toml"))
    per_1m = price.per_million()
    if ns.json:
        print_json({
            "model": ns.model, "provider": ns.provider, "priced": True,
            "source": price.source, "key": price.key, "alias": price.alias,
            "table": table.describe_source(),
            "via": list(price.via), "description": price.describe(),
            "per_1m": per_1m,
        })
        return 0

    def money(value: float | None, fallback: str) -> str:
        return fallback if value is None else f"${value:,.4f}".rstrip("0").rstrip(".")

    print_lines([
        f"model:         {ns.model}" + (f" (provider {ns.provider})" if ns.provider else ""),
        f"source:        {price.describe()}",
        f"table:         {table.describe_source()}",
        f"input:         {money(per_1m['input'], '')} per 1M tokens",
        f"output:        {money(per_1m['output'], '')} per 1M tokens",
        f"cached input:  {money(per_1m['cached_input'], 'same as input')}"
        + (" per 1M tokens" if per_1m["cached_input"] is not None else ""),
        f"reasoning:     {money(per_1m['reasoning'], 'same as output')}"
        + (" per 1M tokens" if per_1m["reasoning"] is not None else ""),
        f"per request:   {money(price.per_request, '')}",
    ])
    return 0


def _unpriced_cmd(ns: argparse.Namespace) -> int:
    from chainsight.framework.commands import (
        Column,
        fmt_int,
        fmt_time,
        open_store,
        parse_time,
        print_json,
        print_lines,
        print_table,
    )
    from chainsight.storage.cost import unpriced_models

    since = parse_time(ns.since) if ns.since else None
    with open_store(ns.db) as store:
        models = unpriced_models(store.engine, since_ns=since)
    if ns.json:
        print_json({"models": [m.to_dict() for m in models]})
        return 0
    if not models:
        print_lines(["every stored call with tokens has a price"])
        return 0
    print_table(
        [Column("model", max_width=50), Column("provider"), Column("calls", "right"),
         Column("input tokens", "right"), Column("output tokens", "right"), Column("last seen")],
        [[m.model, m.provider or "", fmt_int(m.calls), fmt_int(m.input_tokens),
          fmt_int(m.output_tokens), fmt_time(m.last_seen_ns)] for m in models],
        title="calls with no price (add overrides or aliases in [plugins.pricing])",
    )
    return 0


def _configure_cost(parser: argparse.ArgumentParser) -> None:
    from chainsight.storage.cost import GROUPINGS

    parser.add_argument("--since", default="7d",
                        help="start of the window: 30m, 7d, or an ISO date (default 7d)")
    parser.add_argument("--until", help="end of the window (default now)")
    parser.add_argument("--by", choices=GROUPINGS, default="model", help="grouping (default model)")
    parser.add_argument("--utc", action="store_true", help="days and months in UTC, not local time")
    parser.add_argument("--limit", type=int, default=None, help="at most this many rows")


def _run_cost(ns: argparse.Namespace) -> int:
    from chainsight.framework.commands import (
        Column,
        fmt_cost,
        fmt_int,
        open_store,
        parse_time,
        print_json,
        print_table,
    )
    from chainsight.storage.cost import cost_report

    since = parse_time(ns.since) if ns.since else None
    until = parse_time(ns.until) if ns.until else None
    with open_store(ns.db) as store:
        report = cost_report(store.engine, by=ns.by, since_ns=since, until_ns=until,
                             utc=ns.utc, limit=ns.limit)
    if ns.json:
        print_json(report.to_dict())
        return 0
    rows = [*report.rows, report.total]
    print_table(
        [Column(ns.by, max_width=50), Column("calls", "right"), Column("unpriced", "right"),
         Column("input tokens", "right"), Column("output tokens", "right"),
         Column("cost", "right"), Column("per call", "right"), Column("per 1K tok", "right")],
        [[
            "TOTAL" if r is report.total else ("(none)" if r.key is None else r.key),
            fmt_int(r.requests), fmt_int(r.unpriced_requests), fmt_int(r.input_tokens),
            fmt_int(r.output_tokens), fmt_cost(r.cost_usd), fmt_cost(r.cost_per_request),
            fmt_cost(r.cost_per_1k_tokens),
        ] for r in rows],
        title=f"spend by {ns.by} since {ns.since}",
    )
    return 0


def _configure_reprice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="start of the window: 30m, 7d, or an ISO date")
    parser.add_argument("--until", help="end of the window (default now)")
    parser.add_argument("--all", action="store_true", help="every stored call (instead of --since)")
    parser.add_argument("--model", help="only calls of this model")
    parser.add_argument("--dry-run", action="store_true", help="report what would change")
    parser.add_argument("--clear-unknown", action="store_true",
                        help="calls whose model has no price now become unpriced "
                        "(default: they keep their stored cost)")


def _run_reprice(ns: argparse.Namespace) -> int:
    from chainsight.framework.commands import (
        CommandError,
        fmt_cost,
        open_store,
        parse_time,
        print_json,
        print_lines,
    )
    from chainsight.storage.cost import reprice

    if not ns.since and not ns.all:
        raise CommandError("reprice needs --since (e.g. --since 30d) or --all")
    table = _settings_table(getattr(ns, "settings", None))

    def price(call: PricedCall) -> float | None:
        found = table.lookup(call.model, call.provider)
        if found is None:
            return None
        return found.cost(call.input_tokens, call.output_tokens, call.cached_tokens,
                          call.reasoning_tokens)

    since = parse_time(ns.since) if ns.since and not ns.all else None
    until = parse_time(ns.until) if ns.until else None
    with open_store(ns.db) as store:
        result = reprice(store.engine, price, since_ns=since, until_ns=until, model=ns.model,
                         clear_unknown=ns.clear_unknown, dry_run=ns.dry_run)
    if ns.json:
        print_json({**result.to_dict(), "dry_run": ns.dry_run})
        return 0
    verb = "would change" if ns.dry_run else "changed"
    print_lines([
        f"checked {result.checked} calls; {verb} {result.changed} "
        f"in {result.traces} traces",
        f"cost {fmt_cost(result.cost_before)} -> {fmt_cost(result.cost_after)}",
        *([f"{result.now_unpriced} calls have no price now"
           + ("" if ns.clear_unknown else " (kept their stored cost; --clear-unknown to clear)")]
          if result.now_unpriced else []),
    ])
    return 0
