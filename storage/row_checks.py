"""Rows that every store accepts: checked once, when a batch is prepared.

Whatever a plugin or a caller put on a span (a lone surrogate in a name, NUL
in an error message, a token count given as ``"12"`` or ``2**70``, a user id
that is an object) must not cost the batch it travels in. SQLite would take
some of these (a string in an INTEGER column) and PostgreSQL reject them, so
the rules are those of the stricter store, applied to every row:

* text is valid UTF-8 without NUL: lone surrogates and NUL become U+FFFD, and
  a value that is not text is stored as its ``str()`` (JSON columns are
  already valid: storage.serialize makes them);
* integer columns hold integers within 64 bits, float columns finite numbers;
  anything else becomes NULL;
* a required column that would be NULL gets a neutral value.

Each problem is reported as ``{column: "what was wrong"}``, naming types,
never quoting the value (it was not redacted as content); the writer
records those of a span on the span itself (``attributes["chainsight.invalid"]``).
The common case (ASCII text, small ints, None) costs one type test per column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, Final

import sqlalchemy as sa

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1


def _getter(columns: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``row -> tuple of those columns' values`` (``itemgetter`` returns a
    bare value for one key)."""
    if len(columns) >= 2:
        return itemgetter(*columns)
    return lambda row: tuple(row[c] for c in columns)
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` as valid UTF-8 without NUL (unchanged in the common case)."""
    if value.isascii():
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATES.sub("\ufffd", value)
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _as_text(value: Any) -> str:
    try:
        return clean_text(str(value))
    except Exception:
        return f"<{type(value).__name__}>"


class RowChecker:
    """The checks for one table, derived from its SQLAlchemy columns."""

    def __init__(self, table: sa.Table, defaults: Mapping[str, Any]) -> None:
        text: list[str] = []
        ints: list[str] = []
        floats: list[str] = []
        bools: list[str] = []
        for column in table.columns:
            if column.autoincrement is True:
                continue  # the store assigns it; prepared rows do not carry it
            kind = column.type
            if isinstance(kind, sa.Boolean):
                bools.append(column.name)
            elif isinstance(kind, sa.Integer):  # BigInteger too
                ints.append(column.name)
            elif isinstance(kind, sa.Float):
                floats.append(column.name)
            elif not isinstance(kind, sa.JSON):
                text.append(column.name)
            # JSON columns hold text from chainsight.storage.serialize, valid by construction.
        self.text, self.ints, self.floats, self.bools = tuple(text), tuple(ints), tuple(floats), tuple(bools)
        self.required = tuple(defaults.items())  # NOT NULL columns and their stand-ins
        self._get_text = _getter(self.text)

    def clean(self, row: dict[str, Any]) -> dict[str, str] | None:
        """Make ``row`` storable in place; the problems found, or None."""
        problems: dict[str, str] | None = None
        try:  # every text value None or valid, in three C calls (the common case)
            joined = "\x01".join(filter(None, self._get_text(row)))
            joined.encode("utf-8")
            texts_ok = "\x00" not in joined
        except (TypeError, UnicodeEncodeError):
            texts_ok = False
        for col in () if texts_ok else self.text:
            v = row.get(col)
            if v is None or (type(v) is str and v.isascii() and "\x00" not in v):
                continue
            if isinstance(v, str):
                row[col] = clean_text(v)
                if row[col] is not v:
                    problems = problems or {}
                    problems[col] = "invalid text (lone surrogate or NUL) replaced by U+FFFD"
            else:
                problems = problems or {}
                problems[col] = f"expected text, got {type(v).__name__}"
                row[col] = _as_text(v)
        for col in self.ints:
            v = row.get(col)
            if v is None or (type(v) is int and INT64_MIN <= v <= INT64_MAX):
                continue
            if isinstance(v, bool):
                row[col] = int(v)
                continue
            if isinstance(v, float) and v.is_integer() and INT64_MIN <= v <= INT64_MAX:
                row[col] = int(v)
                continue
            problems = problems or {}
            if isinstance(v, int):
                problems[col] = "integer is out of the 64-bit range; stored as NULL"
            else:
                problems[col] = f"expected an integer, got {type(v).__name__}; stored as NULL"
            row[col] = None
        for col in self.floats:
            v = row.get(col)
            if v is None or (type(v) is float and math.isfinite(v)):
                continue
            if isinstance(v, int) and not isinstance(v, bool):
                try:
                    row[col] = float(v)
                    continue
                except OverflowError:
                    pass
            problems = problems or {}
            problems[col] = f"expected a finite number, got {type(v).__name__}; stored as NULL"
            row[col] = None
        for col in self.bools:
            v = row.get(col)
            if v is None or type(v) is bool:
                continue
            problems = problems or {}
            problems[col] = f"expected true or false, got {type(v).__name__}; stored as NULL"
            row[col] = None
        for col, default in self.required:
            if row.get(col) is None and default is not None:
                row[col] = default() if callable(default) else default
        return problems
