"""The Alerts and Experiments screens name no command or configuration that fails.

The screens once said to configure ``[plugins.alerts]`` (rejected then: no
such plugin) and to run ``chainsight eval run`` (no such command then;
evaluation has landed since, and the Experiments screen names its commands).
Whatever command or ``[plugins.NAME]`` table these screens mention must
work: the test runs each through the real CLI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_app import make_app, screen_text, settle
from tui_seed import NOW_NS

from chainsight.framework.cli import main
from chainsight.storage.writer import StoreWriter
from chainsight.tui.screens.alerts import AlertsScreen
from chainsight.tui.screens.experiments import ExperimentsScreen

COMMAND = re.compile(r"\bchainsight((?:\s+[a-z][a-z0-9_-]*)+)")
PLUGIN_TABLE = re.compile(r"\[plugins\.([A-Za-z0-9_-]+)\]")


def broken_references(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Each ``chainsight CMD`` or ``[plugins.NAME]`` in ``text`` the CLI does not accept."""
    broken = []
    for match in COMMAND.finditer(text):
        words = match.group(1).split()
        try:
            status: Any = main([*words, "--help"])
        except SystemExit as exit_:
            status = exit_.code
        if status not in (0, None):
            broken.append("chainsight " + " ".join(words))
    for name in set(PLUGIN_TABLE.findall(text)):
        config = tmp_path / f"{name}.toml"
        config.write_text(f"[plugins.{name}]\nenabled = true\n", encoding="utf-8")
        if main(["--config", str(config), "config", "check"]) != 0:
            broken.append(f"[plugins.{name}]")
    capsys.readouterr()
    return broken


def test_the_check_catches_what_the_screens_used_to_say(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = ("No alerts. Rules live in plugins.toml under [plugins.alerting].\n"
           "  chainsight eval start DATASET --chain module:function --name NAME")
    assert broken_references(old, tmp_path, capsys) == ["chainsight eval start", "[plugins.alerting]"]
    fine = "see chainsight traces --help, chainsight alerts test RULE and [plugins.alerts]"
    assert broken_references(fine, tmp_path, capsys) == []


async def _texts(url: str) -> dict[str, str]:
    app = make_app(url, NOW_NS)
    texts = {}
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        for key, kind in (("3", AlertsScreen), ("4", ExperimentsScreen)):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, kind)
            texts[kind.__name__] = screen_text(app)
    return texts


async def test_empty_screens_name_nothing_that_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    StoreWriter(url).close()  # a store with no alerts and no experiments
    texts = await _texts(url)
    assert "[plugins.alerts]" in texts["AlertsScreen"]
    assert "chainsight alerts test RULE" in texts["AlertsScreen"]
    assert "chainsight eval run NAME --target module:attr" in texts["ExperimentsScreen"]
    for name, text in texts.items():
        assert broken_references(text, tmp_path, capsys) == [], name
