"""Testing Chainsight plugins: run a plugin against spans and see what it did.

In the manner of pytest's ``pytester``: opt in from a test module or your
top-level ``conftest.py`` with::

    pytest_plugins = ["chainsight.testing"]

and use the ``chainsight_harness`` fixture, a factory that builds a
:class:`PluginHarness` (closed after the test)::

    def test_long_answers_fail(chainsight_harness):
        h = chainsight_harness("my_plugin", config={"max_words": 3})
        with h.span("answer", kind="llm") as span:
            span.outputs = "one two three four"
        result = h.flush()
        (score,) = result.scores_for(span)
        assert score.passed is False

:class:`PluginHarness` works without pytest too (a context manager).
Importing this package does not import pytest; only loading it as a pytest
plugin loads the fixture (``chainsight.testing.fixtures``). The guide is
docs/PLUGINS.md.
"""

from __future__ import annotations

from chainsight.framework.config import ConfigError
from chainsight.framework.plugin_manager import PluginLoadError
from chainsight.testing.harness import (
    CommandResult,
    HarnessResult,
    PluginFailed,
    PluginHarness,
    SinkCalls,
)
from chainsight.testing.recorded import SAMPLE_TRACE, load_spans, record, save_spans

# Read by pytest when this module is loaded as a plugin (pytest_plugins = [...]).
pytest_plugins = ["chainsight.testing.fixtures"]

__all__ = [
    "SAMPLE_TRACE",
    "CommandResult",
    "ConfigError",
    "HarnessResult",
    "PluginFailed",
    "PluginHarness",
    "PluginLoadError",
    "SinkCalls",
    "load_spans",
    "record",
    "save_spans",
]
