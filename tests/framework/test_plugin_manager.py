"""Plugin loading: built-ins by dotted path, entry points one at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from framework.config import load_settings
from framework.plugin_manager import PluginLoadError, load_plugins


def _install_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str]) -> None:
    """A real distribution on sys.path whose entry points importlib.metadata finds."""
    dist = tmp_path / "thirdparty_plugins-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-plugins\nVersion: 1.2.3\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (dist / "entry_points.txt").write_text(f"[chainsight.plugins]\n{lines}\n")
    (tmp_path / "good_plugin.py").write_text(
        "from framework import hookimpl\n"
        "@hookimpl\n"
        "def process_span(span):\n"
        "    span.add_tags(['good'])\n"
    )
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('missing dependency: frobnicate')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("good_plugin", "broken_plugin"):
        sys.modules.pop(mod, None)


def test_broken_entry_point_is_skipped_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _install_entry_points(tmp_path, monkeypatch, {"good": "good_plugin", "broken": "broken_plugin"})
    plugins = load_plugins(None, builtins=())
    good, broken = plugins.info("good"), plugins.info("broken")
    assert good is not None and good.status == "active"
    assert good.source == "entry point (thirdparty-plugins)"
    assert good.hooks == ("process_span",)
    assert broken is not None and broken.status == "failed"
    assert "frobnicate" in (broken.error or "")
    assert plugins.pm.has_plugin("good") and not plugins.pm.has_plugin("broken")
    assert any("'broken'" in r.getMessage() and "frobnicate" in r.getMessage() for r in caplog.records)


def test_broken_entry_point_raises_in_strict_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_entry_points(tmp_path, monkeypatch, {"broken": "broken_plugin"})
    with pytest.raises(PluginLoadError, match=r"plugin 'broken'.*frobnicate"):
        load_plugins(None, builtins=(), strict=True)


def test_builtins_load_and_can_be_disabled(tmp_path: Path) -> None:
    config = tmp_path / "plugins.toml"
    config.write_text("[plugins.length]\nenabled = false\n")
    plugins = load_plugins(load_settings(config), entry_points=False)
    statuses = {i.name: i.status for i in plugins.infos}
    assert statuses["length"] == "disabled"
    assert statuses["redaction"] == "active"
    assert not plugins.pm.has_plugin("length")


def test_unknown_builtin_module_is_reported_not_fatal() -> None:
    plugins = load_plugins(None, builtins=[("ghost", "plugins.does_not_exist")], entry_points=False)
    info = plugins.info("ghost")
    assert info is not None and info.status == "failed"
    assert "plugins.does_not_exist" in (info.error or "")


def test_create_plugin_factory_gives_each_manager_its_own_instance() -> None:
    first = load_plugins(None, builtins=[("redaction", "plugins.redaction")], entry_points=False)
    second = load_plugins(None, builtins=[("redaction", "plugins.redaction")], entry_points=False)
    a, b = first.pm.get_plugin("redaction"), second.pm.get_plugin("redaction")
    assert a is not None and b is not None and a is not b
    assert first.schemas["redaction"] is not None


def test_two_observers_redact_by_their_own_config(tmp_path: Path) -> None:
    from framework.observer import Observer
    from storage.query import Store

    def observe(name: str, config: str) -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(config)
        obs = Observer(f"sqlite:///{tmp_path / name}.db", config_path=path, entry_points=False,
                       builtins=[("redaction", "plugins.redaction")], strict=True,
                       spill_path=tmp_path / f"{name}.spill")
        with obs.span("root") as span:
            span.outputs = "write to jane.doe@example.com"
        obs.flush(10)
        obs.shutdown()
        detail = Store(f"sqlite:///{tmp_path / name}.db").get_trace(span.trace_id)
        assert detail is not None
        return str(detail.spans[0].outputs)

    masked = observe("masked", "")
    plain = observe("plain", "[plugins.redaction]\nemail = false\n")
    assert "jane.doe@example.com" not in masked and "[redacted:email]" in masked
    assert "jane.doe@example.com" in plain
