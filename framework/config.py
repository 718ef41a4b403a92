"""Configuration: find, read and validate ``plugins.toml``.

The file has three parts::

    [storage]            # where runs are stored (url, max_content_bytes, retention)
    [pipeline]           # the recorder pipeline (batch size, queue size, strict...)
    [plugins.NAME]       # one table per plugin; ``enabled = false`` turns it off

``load_settings`` reads the file and validates ``[storage]`` and ``[pipeline]``
against the schemas below. Plugin tables are validated later, by
``resolve_plugin_configs``, once the installed plugins (and so their
``CONFIG_SCHEMA``) are known. Every problem is collected and reported at once,
each with its dotted path and, where it can be found, the file and line.

Secrets are referenced, never written: ``webhook_url = { env = "SLACK_WEBHOOK_URL" }``
is replaced by the value of that environment variable.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import platformdirs
import tomli  # tomllib's parser; its errors carry their position (tomllib's from 3.14 on)
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAME",
    "DEFAULT_STORAGE_URL",
    "PIPELINE_SCHEMA",
    "STORAGE_SCHEMA",
    "STORAGE_URL_ENV",
    "ConfigError",
    "ConfigProblem",
    "Settings",
    "apply_defaults",
    "find_config_path",
    "format_path",
    "load_settings",
    "read_settings",
    "resolve_plugin_configs",
]

CONFIG_ENV = "CHAINSIGHT_CONFIG"
STORAGE_URL_ENV = "CHAINSIGHT_STORAGE_URL"
CONFIG_FILENAME = "plugins.toml"
DEFAULT_STORAGE_URL = "sqlite:///chainsight.db"
SPILL_FILENAME = "chainsight.spill.jsonl"

PathPart = str | int

# --------------------------------------------------------------------------
# Schemas of the host's own sections
# --------------------------------------------------------------------------

STORAGE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "minLength": 1,
            "description": "SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://...; "
            "CHAINSIGHT_STORAGE_URL overrides it",
        },
        "max_content_bytes": {
            "type": "integer",
            "minimum": 0,
            "description": "cap on stored inputs/outputs per span (overrides [pipeline])",
        },
        "retention": {
            "type": "string",
            "pattern": r"^\s*(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+\s*$",
            "description": "delete traces (with spans and scores) and samples older than this, "
            "e.g. '30d'; the observer prunes every prune_interval_s (plugin 'retention')",
        },
        "prune_interval_s": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 3600,
            "description": "how often the observer prunes when retention is set",
        },
    },
}

PIPELINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "batch_size": {"type": "integer", "minimum": 1, "default": 512},
        "flush_interval_s": {"type": "number", "exclusiveMinimum": 0, "default": 0.2},
        "queue_size": {"type": "integer", "minimum": 1, "default": 100000},
        "strict": {"type": "boolean", "default": False},
        "degrade_after": {"type": "integer", "minimum": 1, "default": 5},
        "spill_path": {"type": "string", "minLength": 1},
        "check_budget_ms": {"type": "number", "exclusiveMinimum": 0, "default": 50},
        "max_content_bytes": {"type": "integer", "minimum": 0, "default": 32768},
        "trace_buffer_s": {"type": "number", "minimum": 0, "default": 300},
        "shutdown_timeout_s": {"type": "number", "minimum": 0, "default": 5},
        "metrics_only": {"type": "boolean", "default": False},
        "stats_interval_s": {"type": "number", "exclusiveMinimum": 0, "default": 5},
        "sample_interval_s": {"type": "number", "minimum": 0.05, "default": 5},
    },
}

_TOP_LEVEL = ("storage", "pipeline", "plugins")


# --------------------------------------------------------------------------
# Problems and errors
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration, and where."""

    path: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        if self.path:
            return f"{where}{self.path}: {self.message}"
        return f"{where}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists everything found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def _pipeline_defaults() -> dict[str, Any]:
    return apply_defaults(PIPELINE_SCHEMA, {})


@dataclass(frozen=True)
class Settings:
    """The validated ``[storage]`` and ``[pipeline]`` sections, and the raw
    ``[plugins.NAME]`` tables (validated later by :func:`resolve_plugin_configs`).

    ``Settings()`` is the built-in default configuration.
    """

    path: Path | None = None
    storage: Mapping[str, Any] = field(default_factory=dict)
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The file's text, kept to locate problems found later (plugin tables).
    source: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        pipeline = _pipeline_defaults()
        pipeline.update(self.pipeline)
        object.__setattr__(self, "pipeline", MappingProxyType(pipeline))
        object.__setattr__(self, "storage", MappingProxyType(dict(self.storage)))
        object.__setattr__(self, "plugins", MappingProxyType(dict(self.plugins)))

    @property
    def storage_url(self) -> str:
        """``CHAINSIGHT_STORAGE_URL`` > ``[storage] url`` > ``sqlite:///chainsight.db``
        (a relative SQLite path is relative to the working directory)."""
        env = os.environ.get(STORAGE_URL_ENV)
        if env:
            return env
        url = self.storage.get("url")
        if isinstance(url, str) and url:
            return url
        return DEFAULT_STORAGE_URL

    @property
    def spill_path(self) -> Path:
        """``[pipeline] spill_path`` (relative to the config file's folder), else
        beside the config file, else ``./chainsight.spill.jsonl``."""
        base = self.path.parent if self.path is not None else Path.cwd()
        configured = self.pipeline.get("spill_path")
        if isinstance(configured, str) and configured:
            p = Path(configured).expanduser()
            return p if p.is_absolute() else base / p
        return base / SPILL_FILENAME

    def spill_path_for(self, storage_url: str) -> Path:
        """:attr:`spill_path`; when it is not configured, a file of this
        store's own (``chainsight-<hash of the URL>.spill.jsonl``), so spans
        kept for one store are never replayed into another."""
        if self.pipeline.get("spill_path"):
            return self.spill_path
        without_password = re.sub(r"(://[^:/@]*):[^@]*@", r"\1@", storage_url)
        tag = hashlib.sha256(without_password.encode()).hexdigest()[:10]
        return self.spill_path.with_name(f"chainsight-{tag}.spill.jsonl")

    @property
    def max_content_bytes(self) -> int:
        """``[storage] max_content_bytes`` if set, else ``[pipeline] max_content_bytes``."""
        value = self.storage.get("max_content_bytes", self.pipeline.get("max_content_bytes"))
        return int(value) if value is not None else 32768

    def plugin_enabled(self, name: str) -> bool:
        """False only when ``[plugins.NAME] enabled = false``."""
        table = self.plugins.get(name)
        return not (isinstance(table, Mapping) and table.get("enabled") is False)

    @property
    def display_path(self) -> str:
        return str(self.path) if self.path is not None else "built-in defaults"


# --------------------------------------------------------------------------
# Lookup and loading
# --------------------------------------------------------------------------


def user_config_path() -> Path:
    """The per-user configuration file (``~/.config/chainsight/plugins.toml`` on Linux)."""
    return Path(platformdirs.user_config_dir("chainsight")) / CONFIG_FILENAME


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The configuration file to use, or None for the built-in defaults.

    Order: ``explicit`` (must exist), ``$CHAINSIGHT_CONFIG`` (must exist),
    ``./plugins.toml``, the user config dir's ``chainsight/plugins.toml``.
    """
    if explicit is not None and str(explicit) != "":
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError([ConfigProblem("", "configuration file not found", file=str(p))])
        return p
    env = os.environ.get(CONFIG_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError(
                [ConfigProblem("", f"configuration file not found (from ${CONFIG_ENV})", file=str(p))]
            )
        return p
    local = Path(CONFIG_FILENAME)
    if local.is_file():
        return local
    user = user_config_path()
    if user.is_file():
        return user
    return None


def _syntax_problem(err: tomli.TOMLDecodeError, file: str) -> ConfigProblem:
    where = "at end of file" if err.pos >= len(err.doc) else f"column {err.colno}"
    return ConfigProblem("", f"invalid TOML: {err.msg} ({where})", file, err.lineno)


def read_settings(
    path: str | os.PathLike[str] | None = None,
) -> tuple[Settings, list[ConfigProblem]]:
    """Like :func:`load_settings`, but return the problems instead of raising.

    Sections with problems fall back to their defaults in the returned
    settings, so a caller (``chainsight config check``) can go on to check the
    plugin tables and report everything at once. A missing explicit file
    still raises :class:`ConfigError`.
    """
    found = find_config_path(path)
    if found is None:
        return Settings(), []
    file = str(found)
    try:
        text = found.read_bytes().decode("utf-8")
    except OSError as exc:
        return Settings(path=found), [ConfigProblem("", f"cannot read: {exc.strerror or exc}", file)]
    except UnicodeDecodeError as exc:
        return Settings(path=found), [ConfigProblem("", f"not UTF-8 text: {exc.reason}", file)]
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        return Settings(path=found, source=text), [_syntax_problem(exc, file)]

    locator = _Locator(text)
    problems: list[ConfigProblem] = []

    def problem(parts: Sequence[PathPart], message: str) -> None:
        problems.append(ConfigProblem(format_path(parts), message, file, locator.line_of(parts)))

    for key in data:
        if key not in _TOP_LEVEL:
            problem([key], f"unknown section; expected one of: {', '.join(_TOP_LEVEL)}"
                    + _did_you_mean(key, _TOP_LEVEL))

    sections: dict[str, dict[str, Any]] = {}
    for name, schema in (("storage", STORAGE_SCHEMA), ("pipeline", PIPELINE_SCHEMA)):
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            problem([name], f"must be a table, not {_toml_type(raw)}")
            sections[name] = {}
            continue
        value = copy.deepcopy(raw)
        missing: list[tuple[PathPart, ...]] = []
        if name == "storage":  # a Postgres URL carries a password: allow { env = "..." }
            value = _resolve_secrets(value, (name,), missing, problem)
        errs = _schema_problems(schema, value, (name,), skip=missing)
        for parts, message in errs:
            problem(parts, message)
        sections[name] = value if not errs else {}
        if name == "storage" and missing:
            sections[name] = {}

    plugins_raw = data.get("plugins", {})
    plugins: dict[str, dict[str, Any]] = {}
    if not isinstance(plugins_raw, dict):
        problem(["plugins"], f"must be a table of [plugins.NAME] tables, not {_toml_type(plugins_raw)}")
    else:
        for pname, table in plugins_raw.items():
            if not isinstance(table, dict):
                problem(["plugins", pname], f"must be a table, not {_toml_type(table)}")
                continue
            if "enabled" in table and not isinstance(table["enabled"], bool):
                problem(["plugins", pname, "enabled"],
                        f"expected boolean, got {_toml_type(table['enabled'])} {_short(table['enabled'])}")
            plugins[pname] = table

    problems.sort(key=lambda p: p.line or 0)
    settings = Settings(
        path=found,
        storage=sections["storage"],
        pipeline=sections["pipeline"],
        plugins=plugins,
        source=text,
    )
    return settings, problems


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Find (see :func:`find_config_path`), read and validate the configuration.

    Raises :class:`ConfigError` listing every problem in ``[storage]``,
    ``[pipeline]`` and the file's structure. Plugin tables are checked later by
    :func:`resolve_plugin_configs`.
    """
    settings, problems = read_settings(path)
    if problems:
        raise ConfigError(problems)
    return settings


# --------------------------------------------------------------------------
# Plugin tables
# --------------------------------------------------------------------------


def resolve_plugin_configs(
    settings: Settings,
    schemas: Mapping[str, Mapping[str, Any] | None],
    *,
    ignore: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """:func:`resolve_plugin_configs_leniently`, raising one :class:`ConfigError`
    listing every problem, across all plugins."""
    result, problems = resolve_plugin_configs_leniently(settings, schemas, ignore=ignore)
    if problems:
        raise ConfigError(problems)
    return result


def resolve_plugin_configs_leniently(
    settings: Settings,
    schemas: Mapping[str, Mapping[str, Any] | None],
    *,
    ignore: Iterable[str] = (),
) -> tuple[dict[str, dict[str, Any]], list[ConfigProblem]]:
    """Validate every ``[plugins.NAME]`` table and return each installed plugin's config.

    ``schemas`` maps each installed plugin's name to its ``CONFIG_SCHEMA``
    (None: the plugin takes no options, only ``enabled``). For each table:
    secret references ``{ env = "VAR" }`` are resolved, ``enabled`` is
    removed, the rest is validated (Draft 2020-12) and the schema's defaults
    are applied. A disabled plugin is not validated and gets the schema
    defaults only. Tables naming no installed plugin are reported with the
    installed names, unless they say ``enabled = false`` (turning off a plugin
    that is not installed is harmless) or are named in ``ignore`` (plugins
    that failed to load: their schema is unknown). All problems, across all
    plugins, raise one :class:`ConfigError`.
    """
    skipped = set(ignore)
    file = str(settings.path) if settings.path is not None else None
    locator = _Locator(settings.source or "")
    problems: list[ConfigProblem] = []

    def problem(parts: Sequence[PathPart], message: str) -> None:
        line = locator.line_of(parts) if settings.source else None
        problems.append(ConfigProblem(format_path(parts), message, file, line))

    installed = sorted(schemas)
    for name, given in settings.plugins.items():
        if name in skipped or (isinstance(given, Mapping) and given.get("enabled") is False):
            continue
        if name not in schemas:
            listing = ", ".join(installed) if installed else "(none)"
            problem(["plugins", name],
                    f"unknown plugin; installed: {listing}" + _did_you_mean(name, installed))

    result: dict[str, dict[str, Any]] = {}
    for name in installed:
        if name in skipped:
            continue
        schema = schemas[name]
        table = settings.plugins.get(name)
        raw: dict[str, Any] = dict(table) if isinstance(table, Mapping) else {}
        enabled = raw.pop("enabled", True)
        if enabled is False:
            result[name] = apply_defaults(schema, {}) if schema else {}
            continue
        base: tuple[PathPart, ...] = ("plugins", name)
        missing: list[tuple[PathPart, ...]] = []
        config = _resolve_secrets(copy.deepcopy(raw), base, missing, problem)
        if schema is None:
            for key in config:
                problem([*base, key], "unknown key; this plugin takes no options (only `enabled`)")
            result[name] = {}
            continue
        try:
            errs = _schema_problems(schema, config, base, skip=missing)
        except Exception as exc:  # a broken CONFIG_SCHEMA is the plugin's bug, not the user's
            problem(list(base), f"plugin has an invalid CONFIG_SCHEMA: {exc}")
            continue
        for parts, message in errs:
            problem(parts, message)
        result[name] = apply_defaults(schema, {} if errs or missing else config)
    problems.sort(key=lambda p: p.line or 0)
    return result, problems


# --------------------------------------------------------------------------
# Helpers: defaults, secrets, schema messages, paths
# --------------------------------------------------------------------------


def apply_defaults(schema: Mapping[str, Any] | None, instance: dict[str, Any]) -> dict[str, Any]:
    """Fill ``instance`` in place with the schema's ``default`` values and return it.

    Recurses into properties that are objects (creating a missing nested
    object when its own properties carry defaults) and into array items.
    """
    if not schema:
        return instance
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return instance
    for key, sub in props.items():
        if not isinstance(sub, Mapping):
            continue
        if key not in instance:
            if "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            elif _has_nested_defaults(sub):
                instance[key] = {}
            else:
                continue
        value = instance[key]
        if isinstance(value, dict):
            apply_defaults(sub, value)
        elif isinstance(value, list) and isinstance(sub.get("items"), Mapping):
            for item in value:
                if isinstance(item, dict):
                    apply_defaults(sub["items"], item)
    return instance


def _has_nested_defaults(schema: Mapping[str, Any]) -> bool:
    props = schema.get("properties")
    if schema.get("type") not in ("object", None) or not isinstance(props, Mapping):
        return False
    return any(
        isinstance(s, Mapping) and ("default" in s or _has_nested_defaults(s))
        for s in props.values()
    )


def _is_secret_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("env"), str)


def _resolve_secrets(
    value: Any,
    parts: tuple[PathPart, ...],
    missing: list[tuple[PathPart, ...]],
    problem: Any,
) -> Any:
    """Replace every ``{ env = "VAR" }`` in ``value`` by ``$VAR``; report unset ones."""
    if _is_secret_ref(value):
        var = value["env"]
        resolved = os.environ.get(var)
        if resolved is None:
            missing.append(parts)
            problem(parts, f"environment variable {var} is not set (referenced as {{ env = \"{var}\" }})")
            return None
        return resolved
    if isinstance(value, dict):
        return {k: _resolve_secrets(v, (*parts, k), missing, problem) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(v, (*parts, i), missing, problem) for i, v in enumerate(value)]
    return value


def _schema_problems(
    schema: Mapping[str, Any],
    instance: Any,
    base: tuple[PathPart, ...],
    skip: Sequence[tuple[PathPart, ...]] = (),
) -> list[tuple[tuple[PathPart, ...], str]]:
    """Every schema violation as (path, message), sorted by path."""
    validator = Draft202012Validator(schema)
    out: list[tuple[tuple[PathPart, ...], str]] = []
    for err in validator.iter_errors(instance):
        parts = (*base, *err.absolute_path)
        if any(parts[: len(s)] == s for s in skip):
            continue  # already reported as a missing secret
        out.extend(_explain(err, parts))
    out.sort(key=lambda item: [str(p) for p in item[0]])
    return out


def _explain(err: ValidationError, parts: tuple[PathPart, ...]) -> Iterator[tuple[tuple[PathPart, ...], str]]:
    """Turn one jsonschema error into user-facing messages, at the most precise path."""
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        props = err.schema.get("properties", {}) if isinstance(err.schema, Mapping) else {}
        patterns = err.schema.get("patternProperties", {}) if isinstance(err.schema, Mapping) else {}
        known = sorted(props)
        for key in err.instance:
            if key in props or any(re.search(p, key) for p in patterns):
                continue
            expected = f"; expected one of: {', '.join(known)}" if known else ""
            yield (*parts, key), f"unknown key{expected}" + _did_you_mean(key, known)
        return
    if err.validator == "type":
        expected = err.validator_value
        if isinstance(expected, list):
            expected = " or ".join(str(e) for e in expected)
        yield parts, f"expected {expected}, got {_toml_type(err.instance)} {_short(err.instance)}"
        return
    if err.validator == "enum":
        options = ", ".join(repr(v) for v in err.validator_value)
        yield parts, f"{_short(err.instance)} is not one of [{options}]"
        return
    yield parts, err.message


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "nothing"
    return type(value).__name__


_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def _short(value: Any) -> str:
    return _repr.repr(value)


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(parts: Iterable[PathPart]) -> str:
    """``("plugins", "alerts", "rules", 0, "op")`` -> ``plugins.alerts.rules[0].op``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.match(part) else '"' + part.replace('"', '\\"') + '"'
            out += f".{key}" if out else key
    return out


# --------------------------------------------------------------------------
# Locating a path in the TOML text (the parser keeps no positions)
# --------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')
_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")


def _split_key(key: str) -> tuple[str, ...]:
    """Split a dotted TOML key (``a."b.c".d``) into its parts."""
    parts: list[str] = []
    for m in re.finditer(r'\s*("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^.\s]+)\s*(?:\.|$)', key):
        token = m.group(1)
        if token[:1] in "\"'":
            token = token[1:-1]
        parts.append(token)
    return tuple(parts)


def _strip_strings(line: str) -> str:
    return _STRING.sub('""', line).split("#", 1)[0]


@dataclass
class _Table:
    path: tuple[PathPart, ...]
    line: int
    keys: list[tuple[tuple[str, ...], int, list[int]]] = field(default_factory=list)
    # keys: (dotted key, line, lines of the elements of a multi-line array value)


class _Locator:
    """A best-effort line finder: table headers, ``key =`` lines and the
    elements of multi-line arrays. Enough to point at the offending line."""

    def __init__(self, text: str) -> None:
        self.tables: list[_Table] = [_Table((), 0)]
        counts: dict[tuple[PathPart, ...], int] = {}
        depth = 0  # bracket depth of a multi-line value
        in_multiline: str | None = None
        elements: list[int] | None = None
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if raw.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            for quote in ('"""', "'''"):
                if raw.count(quote) % 2 == 1:
                    in_multiline = quote
            line = _strip_strings(raw)
            stripped = line.strip()
            if depth > 0:
                if elements is not None and depth == 1 and stripped and stripped not in ("]", "],"):
                    elements.append(lineno)
                depth += line.count("[") + line.count("{") - line.count("]") - line.count("}")
                continue
            if not stripped:
                continue
            header = _HEADER.match(raw) if stripped.startswith("[") else None
            if header is not None:
                key = _split_key(header.group(2))
                path: tuple[PathPart, ...] = key
                if header.group(1) == "[[":
                    index = counts.get(key, 0)
                    counts[key] = index + 1
                    path = (*key, index)
                self.tables.append(_Table(path, lineno))
                continue
            if "=" in line:
                key_text, value = line.split("=", 1)
                elements = []
                self.tables[-1].keys.append((_split_key(key_text), lineno, elements))
                depth = value.count("[") + value.count("{") - value.count("]") - value.count("}")
                if depth > 0 and value.strip().startswith("[") and value.strip()[1:].strip():
                    elements.append(lineno)  # the first element shares the key's line
                depth = max(depth, 0)

    def line_of(self, parts: Sequence[PathPart]) -> int | None:
        target = tuple(parts)
        best: _Table | None = None
        for table in self.tables:
            n = len(table.path)
            if target[:n] == table.path and (best is None or n >= len(best.path)):
                best = table
        if best is None:
            return None
        rest = target[len(best.path):]
        found: tuple[int, int, list[int]] | None = None
        for key, lineno, elements in best.keys:
            if rest[: len(key)] == key and (found is None or len(key) > found[0]):
                found = (len(key), lineno, elements)
        if found is None:
            return best.line or None
        n, lineno, elements = found
        after = rest[n:]
        if after and isinstance(after[0], int) and after[0] < len(elements):
            return elements[after[0]]
        return lineno
