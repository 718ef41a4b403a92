"""Model prices: litellm's price map, read offline, or a snapshot of it; plus overrides.

The table is, by default, whichever is newer of:

* litellm's ``model_prices_and_context_window_backup.json``, read straight
  from the installed package *without importing litellm* (the import takes
  seconds and hundreds of MB; ``importlib.util.find_spec`` only locates the
  package), when litellm is installed;
* ``price_snapshot.json`` next to this module: a dated copy of the chat and
  completion prices of that map (only the fields pricing reads), shipped with
  Chainsight so that prices work without the ``litellm`` extra. It is made by
  ``scripts/build_price_snapshot.py`` and says which litellm release it was
  taken from; litellm's own map wins when the installed litellm is that
  release or a later one.

``table_path`` in ``[plugins.pricing]`` names another map in litellm's format
instead. The map is parsed once per process, on first use, into
:class:`ModelPrice` entries; :func:`default_source` says which one it is.

Lookup (:meth:`PriceTable.lookup`) tries, in order, for the model name and
then for each shorter name left after dropping a leading provider segment
(``openrouter/openai/gpt-4o`` -> ``openai/gpt-4o`` -> ``gpt-4o``; with the
span's provider also ``PROVIDER/MODEL`` first):

1. an override from ``[plugins.pricing] overrides`` (wins over everything),
2. an alias from ``[plugins.pricing] aliases`` (resolved again, recursively),
3. the table (exact key, then lower-cased).

A table entry priced 0 for both input and output is treated as *missing*
(the bundled map prices some new models at 0 before their price is known);
only an override may say 0 explicitly.

Token accounting follows litellm/OpenAI usage: ``input_tokens`` includes the
cached input tokens and ``output_tokens`` includes the reasoning tokens, so
cached and reasoning tokens are charged at their own rate *instead of* the
plain rate, never on top of it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

TABLE_FILE: Final = "model_prices_and_context_window_backup.json"
SNAPSHOT_FILE: Final = Path(__file__).resolve().with_name("price_snapshot.json")
SNAPSHOT_KEY: Final = "chainsight_price_snapshot"
"""The snapshot's own entry (built date, litellm release); not a model."""
PRICE_FIELDS: Final = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "output_cost_per_reasoning_token",
)
"""The fields of litellm's map that pricing reads (and the snapshot keeps)."""
MAX_ALIAS_DEPTH: Final = 8
PER_1K: Final = 1e-3
PER_1M: Final = 1e-6

# (config key stem, ModelPrice field)
_RATE_KEYS: Final = (
    ("input", "input"),
    ("output", "output"),
    ("cached_input", "cached_input"),
    ("reasoning", "reasoning"),
)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """Prices in US dollars per token (``per_request`` per call).

    ``cached_input`` None means cached input tokens cost the plain input rate;
    ``reasoning`` None means reasoning tokens cost the plain output rate.
    ``source`` says where the price came from: ``override``, ``table`` or
    ``override`` or ``table``; ``key`` is the override or table key that
    matched, ``alias`` the configured alias that led there (if any) and ``via``
    the chain of names tried on the way (aliases, names before a stripped
    provider prefix).
    """

    input: float
    output: float
    cached_input: float | None = None
    reasoning: float | None = None
    per_request: float = 0.0
    source: str = "table"
    key: str = ""
    via: tuple[str, ...] = ()
    alias: str | None = None

    @property
    def is_zero(self) -> bool:
        return self.input == 0 and self.output == 0

    def cost(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> float:
        """Dollars for one call with these token counts (None counts as 0)."""
        inp = max(0, input_tokens or 0)
        out = max(0, output_tokens or 0)
        cached = min(inp, max(0, cached_tokens or 0))
        reasoning = min(out, max(0, reasoning_tokens or 0))
        cached_rate = self.input if self.cached_input is None else self.cached_input
        reasoning_rate = self.output if self.reasoning is None else self.reasoning
        return (
            (inp - cached) * self.input
            + cached * cached_rate
            + (out - reasoning) * self.output
            + reasoning * reasoning_rate
            + self.per_request
        )

    def describe(self) -> str:
        """``override 'x'``, ``table 'gpt-4o'``, ``'a' -> table 'gpt-4o'`` (alias)."""
        chain = " -> ".join(f"{step!r}" for step in self.via)
        target = f"{self.source} {self.key!r}"
        text = f"{chain} -> {target}" if chain else target
        return f"{text} (alias {self.alias!r})" if self.alias else text

    def per_million(self) -> dict[str, float | None]:
        """Prices per 1M tokens (``cached_input``/``reasoning`` None = plain rate)."""
        return {
            "input": self.input * 1e6,
            "output": self.output * 1e6,
            "cached_input": None if self.cached_input is None else self.cached_input * 1e6,
            "reasoning": None if self.reasoning is None else self.reasoning * 1e6,
            "per_request": self.per_request,
        }


# ---- the bundled table -----------------------------------------------------

_table_lock = threading.Lock()
_tables: dict[str, dict[str, ModelPrice]] = {}


def bundled_table_path() -> Path | None:
    """Path of litellm's bundled price map, found without importing litellm."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / TABLE_FILE
        if path.is_file():
            return path
    return None


def litellm_version() -> str | None:
    """The installed litellm's version (from its metadata: no import)."""
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str | None) -> tuple[int, ...]:
    """``"1.110.2"`` -> ``(1, 110, 2)`` for ordering releases (suffixes ignored)."""
    match = re.match(r"\d+(?:\.\d+)*", version or "")
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


@dataclass(frozen=True, slots=True)
class TableSource:
    """Where the default price table comes from."""

    path: Path
    kind: str  # "litellm" or "snapshot"
    version: str | None  # the litellm release of the map
    built: str | None = None  # the snapshot's date

    def describe(self) -> str:
        if self.kind == "snapshot":
            return (f"Chainsight's price snapshot of {self.built or 'unknown date'} "
                    f"(litellm {self.version or '?'})")
        return f"litellm {self.version or '?'}'s bundled price map"


def snapshot_source(path: Path = SNAPSHOT_FILE) -> TableSource | None:
    """The shipped snapshot, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    meta = data.get(SNAPSHOT_KEY) if isinstance(data, dict) else None
    if not isinstance(meta, dict):
        return None
    return TableSource(path, "snapshot", meta.get("litellm_version"), meta.get("built"))


def default_source() -> TableSource | None:
    """litellm's map when litellm is installed and is no older than the
    snapshot's release, else the snapshot; None when there is neither."""
    snapshot = snapshot_source(SNAPSHOT_FILE)
    bundled = bundled_table_path()
    if bundled is not None:
        version = litellm_version()
        if snapshot is None or _release(version) >= _release(snapshot.version):
            return TableSource(bundled, "litellm", version)
    return snapshot


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_table(data: Mapping[str, Any]) -> dict[str, ModelPrice]:
    """litellm's price map (JSON object) -> priced entries, by key."""
    result: dict[str, ModelPrice] = {}
    for key, entry in data.items():
        if key == "sample_spec" or not isinstance(entry, Mapping):
            continue
        inp = _float(entry.get("input_cost_per_token"))
        out = _float(entry.get("output_cost_per_token"))
        if inp is None and out is None:
            continue  # priced per image, second, character...: not by tokens
        result[key] = ModelPrice(
            input=inp or 0.0,
            output=out or 0.0,
            cached_input=_float(entry.get("cache_read_input_token_cost")),
            reasoning=_float(entry.get("output_cost_per_reasoning_token")),
            source="table",
            key=key,
        )
    return result


def load_table(path: str | Path | None = None) -> dict[str, ModelPrice]:
    """The parsed price map at ``path`` (default: :func:`default_source`), cached.

    Returns an empty table when no path is given and there is no default
    table. Raises OSError / ValueError for a path that cannot be read.
    """
    if path is not None:
        resolved: Path | None = Path(path).expanduser()
    else:
        source = default_source()
        resolved = source.path if source is not None else None
    if resolved is None:
        return {}
    cache_key = str(resolved)
    table = _tables.get(cache_key)
    if table is not None:
        return table
    with _table_lock:
        table = _tables.get(cache_key)
        if table is None:
            with open(resolved, encoding="utf-8") as fh:
                data = json.load(fh)
            if not isinstance(data, dict):
                raise ValueError(f"{resolved}: not a JSON object of model prices")
            table = _tables[cache_key] = parse_table(data)
    return table


# ---- overrides from the configuration -------------------------------------


def price_from_override(entry: Mapping[str, Any]) -> ModelPrice:
    """One ``overrides`` item -> a ModelPrice. Raises ValueError when a rate is
    given both per 1K and per 1M, or when neither input nor output is given."""
    model = str(entry["model"])
    rates: dict[str, float | None] = {}
    for stem, field_name in _RATE_KEYS:
        per_1k, per_1m = entry.get(f"{stem}_per_1k"), entry.get(f"{stem}_per_1m")
        if per_1k is not None and per_1m is not None:
            raise ValueError(
                f"override {model!r}: give {stem}_per_1k or {stem}_per_1m, not both"
            )
        if per_1k is not None:
            rates[field_name] = float(per_1k) * PER_1K
        elif per_1m is not None:
            rates[field_name] = float(per_1m) * PER_1M
        else:
            rates[field_name] = None
    if rates["input"] is None and rates["output"] is None:
        raise ValueError(f"override {model!r}: needs an input or an output price")
    return ModelPrice(
        input=rates["input"] or 0.0,
        output=rates["output"] or 0.0,
        cached_input=rates["cached_input"],
        reasoning=rates["reasoning"],
        per_request=float(entry.get("per_request") or 0.0),
        source="override",
        key=model,
    )


class PriceTable:
    """Overrides, aliases, per-request fees and the bundled table, with lookup.

    Immutable after construction and safe to share between threads. The
    bundled table is loaded on first lookup, not at construction.
    """

    def __init__(
        self,
        overrides: Iterable[Mapping[str, Any]] = (),
        aliases: Mapping[str, str] | None = None,
        per_request: Mapping[str, float] | None = None,
        table_path: str | Path | None = None,
        use_table: bool = True,
    ) -> None:
        self.overrides: dict[str, ModelPrice] = {}
        for entry in overrides:
            price = price_from_override(entry)
            self.overrides[price.key] = price
        self.aliases: dict[str, str] = dict(aliases or {})
        self.per_request: dict[str, float] = {k: float(v) for k, v in (per_request or {}).items()}
        self.table_path = table_path
        self.use_table = use_table
        self._table: dict[str, ModelPrice] | None = None
        self._lower: dict[str, str] | None = None

    @property
    def table(self) -> dict[str, ModelPrice]:
        if self._table is None:
            self._table = load_table(self.table_path) if self.use_table else {}
        return self._table

    def describe_source(self) -> str:
        """Where table prices come from, in words."""
        if not self.use_table:
            return "no table (use_table = false): overrides only"
        if self.table_path is not None:
            return f"table_path {str(self.table_path)!r}"
        source = default_source()
        return source.describe() if source is not None else "no price table"

    def problems(self) -> list[str]:
        """Why this table prices less than its configuration says (empty when fine)."""
        if not self.use_table:
            return [] if self.overrides or self.aliases else [
                "use_table = false and no overrides: no call will be priced"]
        if self.table_path is not None:
            try:
                load_table(self.table_path)
            except (OSError, ValueError) as error:
                return [f"table_path {str(self.table_path)!r} cannot be read: {error}"]
            return []
        if default_source() is None:
            return ["no price table: litellm is not installed and the price snapshot shipped "
                    f"with Chainsight ({SNAPSHOT_FILE.name}) is missing; calls are stored "
                    "unpriced (install chainsight[litellm], or set table_path or overrides "
                    "in [plugins.pricing])"]
        return []

    def _table_get(self, name: str) -> ModelPrice | None:
        table = self.table
        price = table.get(name)
        if price is None:
            if self._lower is None:
                self._lower = {k.lower(): k for k in table}
            key = self._lower.get(name.lower())
            price = table.get(key) if key is not None else None
        if price is None or price.is_zero:
            return None  # a table price of 0/0 means "not known yet", not free
        return price

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price for ``model`` (and optionally its provider), or None."""
        price = self._lookup(model, provider, (), 0)
        if price is None:
            return None
        fee = self._fee(model, price)
        if fee:
            price = _replace(price, per_request=price.per_request + fee)
        return price

    def _fee(self, model: str, price: ModelPrice) -> float:
        if price.source == "override" and price.per_request:
            return 0.0  # the override's own fee already applies
        for name in (model, price.key, *price.via):
            if name in self.per_request:
                return self.per_request[name]
        return 0.0

    def _lookup(
        self, model: str, provider: str | None, via: tuple[str, ...], depth: int
    ) -> ModelPrice | None:
        names = list(candidates(model, provider))
        for name in names:
            if name in self.overrides:
                return _replace(self.overrides[name], via=(*via, *_steps(model, name)))
        if depth < MAX_ALIAS_DEPTH:
            for name in names:
                target = self.aliases.get(name)
                if target is not None and target != name:
                    found = self._lookup(target, None, (*via, *_steps(model, name), name), depth + 1)
                    if found is not None:
                        return _replace(found, alias=found.alias or name)
        for name in names:
            price = self._table_get(name)
            if price is not None:
                return _replace(price, via=(*via, *_steps(model, name)))
        return None


def _steps(model: str, matched: str) -> tuple[str, ...]:
    return () if matched == model else (model,)


def _replace(price: ModelPrice, **changes: Any) -> ModelPrice:
    from dataclasses import replace

    return replace(price, **changes)


def candidates(model: str, provider: str | None = None) -> Iterator[str]:
    """Names to try for ``model``, most specific first, without repeats.

    ``openrouter/openai/gpt-4o`` -> itself, ``openai/gpt-4o``, ``gpt-4o``;
    with provider ``azure``, ``gpt-4o`` -> ``azure/gpt-4o``, ``gpt-4o``.
    """
    seen: set[str] = set()
    model = model.strip()
    first: list[str] = []
    if provider and not model.startswith(provider + "/"):
        first.append(f"{provider}/{model}")
    first.append(model)
    for name in first:
        while name and name not in seen:
            seen.add(name)
            yield name
            if "/" not in name:
                break
            name = name.split("/", 1)[1]
