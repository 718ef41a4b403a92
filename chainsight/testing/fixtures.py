"""The pytest fixture of :mod:`chainsight.testing` (loaded by
``pytest_plugins = ["chainsight.testing"]``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainsight.testing.harness import PluginHarness


@pytest.fixture
def chainsight_harness(tmp_path: Path) -> Iterator[Callable[..., PluginHarness]]:
    """A factory: ``chainsight_harness(plugin, **options)`` builds a
    :class:`~chainsight.testing.PluginHarness` (same arguments) whose store
    lies in the test's ``tmp_path``. Every harness it built is closed after
    the test; in strict mode a failure found then (a ``shutdown`` hook that
    raised) is an error of the test."""
    made: list[PluginHarness] = []

    def make(plugin: object, **options: Any) -> PluginHarness:
        options.setdefault("directory", tmp_path / f"chainsight-harness-{len(made)}")
        harness = PluginHarness(plugin, **options)
        made.append(harness)
        return harness

    yield make
    failures: list[BaseException] = []
    for harness in reversed(made):
        try:
            harness.close()
        except BaseException as exc:  # close them all, then report
            failures.append(exc)
    if failures:
        raise failures[0]
