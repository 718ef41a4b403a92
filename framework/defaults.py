"""The built-in plugins, loaded by dotted path (``framework`` never imports
``plugins`` by name). Order matters for ``process_span``: redaction runs
before anything stores, checks or exports a span. Each entry is
``(name, module)``; the name is the ``[plugins.NAME]`` table in plugins.toml.
"""

from __future__ import annotations

DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = ()
