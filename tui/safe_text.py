"""The one way untrusted text (names, model output, errors, user ids...) reaches the screen.

Everything goes through :func:`safe`, which returns a :class:`rich.text.Text`:
never parsed as markup, so ``[/]`` or ``[@click=app.quit]`` stay literal, and
control characters (ANSI escapes included) are replaced by their visible
Unicode "control picture" (ESC becomes ``␛``), so nothing reaches the terminal
as a control sequence. Bidirectional controls and invisible zero-width
characters are shown as their ``\\uXXXX`` escape: left raw, U+202E makes
``RTL\\u202egnp.exe`` read as ``RTLexe.png`` and a zero-width space makes two
different names look the same.
"""

from __future__ import annotations

import re
from typing import Any, Final

from rich.style import Style
from rich.text import Text

# C0 controls except newline/tab, DEL, and C1 controls.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")
_SINGLE_LINE: Final = re.compile(r"[\r\n\t]+")
# Bidi controls (ALM, LRM, RLM, LRE..RLO, LRI..PDI), zero-width space, word joiner,
# BOM, and the line/paragraph separators. ZWJ/ZWNJ stay: emoji and scripts need them.
_INVISIBLE: Final = re.compile("[\u061c\u200b\u200e\u200f\u2028\u2029\u202a-\u202e"
                               "\u2060\u2066-\u2069\ufeff]")


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "␡"
    return "�"


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def clean(value: Any, *, single_line: bool = False, max_len: int | None = None) -> str:
    """A plain string with control characters made visible (no styling)."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    if single_line:
        text = _SINGLE_LINE.sub(" ", text)
    text = _CONTROL.sub(_picture, text)
    text = _INVISIBLE.sub(_escape, text)
    if max_len is not None and len(text) > max_len:
        text = text[: max(0, max_len - 1)] + "…"
    return text


def safe(
    value: Any,
    style: str | Style = "",
    *,
    single_line: bool = False,
    max_len: int | None = None,
    placeholder: str = "",
) -> Text:
    """Untrusted text as a literal :class:`Text` (never markup)."""
    if value is None or value == "":
        return Text(placeholder, style="dim")
    return Text(clean(value, single_line=single_line, max_len=max_len), style=style, no_wrap=single_line)


def label(*parts: tuple[str, str | Style] | Text | str) -> Text:
    """Assemble trusted labels and already-safe :class:`Text` pieces into one line.

    Plain ``str`` parts are cleaned as well (they are never markup either).
    """
    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            out.append(clean(part[0]), style=part[1])
        else:
            out.append(clean(part))
    return out
