"""Pretty-printed, highlighted JSON for span inputs and outputs (never markup)."""

from __future__ import annotations

import json
from typing import Any, Final

from rich.highlighter import JSONHighlighter
from rich.text import Text

from chainsight.tui.safe_text import clean, safe

MAX_CHARS: Final = 20_000
_highlighter = JSONHighlighter()


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str, sort_keys=False)


def json_text(data: Any, *, max_chars: int = MAX_CHARS) -> Text:
    """``data`` as indented JSON; a plain string that is not JSON is shown as is."""
    if data is None:
        return Text("—", style="dim")
    if isinstance(data, str):
        stripped = data.strip()
        if stripped[:1] in ("{", "["):
            try:
                data = json.loads(stripped)
            except ValueError:
                return safe(data, max_len=max_chars)
        else:
            return safe(data, max_len=max_chars)
    text = Text(clean(to_json(data), max_len=max_chars))
    _highlighter.highlight(text)
    return text


def find_messages(data: Any) -> list[dict[str, Any]]:
    """Chat messages in a span's inputs (LangChain nests them one list deep)."""
    if isinstance(data, dict):
        data = data.get("messages")
    if isinstance(data, list) and data and isinstance(data[0], list):
        data = data[0]
    if isinstance(data, list) and all(isinstance(m, dict) for m in data):
        return [m for m in data if "content" in m or "tool_calls" in m]
    return []


def find_tool_calls(data: Any) -> list[Any]:
    """Tool calls in a span's outputs, wherever the adapter put them."""
    if isinstance(data, dict):
        calls = data.get("tool_calls")
        if isinstance(calls, list):
            return calls
        for key in ("message", "output", "generations"):
            found = find_tool_calls(data.get(key))
            if found:
                return found
    if isinstance(data, list):
        for item in data[:8]:
            found = find_tool_calls(item)
            if found:
                return found
    return []


def messages_text(messages: list[dict[str, Any]]) -> Text:
    out = Text()
    for message in messages:
        role = message.get("role") or message.get("type") or "message"
        out.append(clean(role, single_line=True, max_len=20).rjust(10), style="bold cyan")
        out.append("  ")
        content = message.get("content")
        if isinstance(content, str):
            out.append_text(safe(content, max_len=4000))
        else:
            out.append_text(json_text(content, max_chars=4000))
        out.append("\n")
    out.rstrip()
    return out
