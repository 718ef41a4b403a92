"""Plugin loading: built-ins by dotted path, entry points one at a time."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from chainsight.framework import hookimpl
from chainsight.framework.config import load_settings
from chainsight.framework.model import Score, Span
from chainsight.framework.plugin_manager import PluginLoadError, load_plugins


def _install_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str]) -> None:
    """A real distribution on sys.path whose entry points importlib.metadata finds."""
    dist = tmp_path / "thirdparty_plugins-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-plugins\nVersion: 1.2.3\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (dist / "entry_points.txt").write_text(f"[chainsight.plugins]\n{lines}\n")
    (tmp_path / "good_plugin.py").write_text(
        "from chainsight.framework import hookimpl\n"
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
    first = load_plugins(None, builtins=[("redaction", "chainsight.plugins.redaction")], entry_points=False)
    second = load_plugins(None, builtins=[("redaction", "chainsight.plugins.redaction")], entry_points=False)
    a, b = first.pm.get_plugin("redaction"), second.pm.get_plugin("redaction")
    assert a is not None and b is not None and a is not b
    assert first.schemas["redaction"] is not None


def test_two_observers_redact_by_their_own_config(tmp_path: Path) -> None:
    from chainsight.framework.observer import Observer
    from chainsight.storage.query import Store

    def observe(name: str, config: str) -> str:
        path = tmp_path / f"{name}.toml"
        path.write_text(config)
        obs = Observer(f"sqlite:///{tmp_path / name}.db", config_path=path, entry_points=False,
                       builtins=[("redaction", "chainsight.plugins.redaction")], strict=True,
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


# ---- hook implementations the host would never call are refused at load ---------


class Misspelled:
    """A plugin whose ``trace_finished`` is misspelled ``trace_finish``."""

    name = "misspelled"

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def trace_finish(self, root: Span, spans: Sequence[Span]) -> None:
        self.seen.append("trace_finish")

    @hookimpl
    def process_span(self, span: Span) -> None:
        span.add_tags(["processed"])


class OnlyTypo:
    name = "only_typo"

    @hookimpl
    def proces_span(self, span: Span) -> None:
        raise AssertionError("never called")


class Wrappers:
    name = "wrappers"

    @hookimpl(wrapper=True)
    def process_span(self, span: Span) -> Iterator[None]:
        span.add_tags(["wrapped"])
        return (yield)

    @hookimpl(hookwrapper=True, specname="spans_finished")
    def old_style(self, spans: Sequence[Span]) -> Iterator[None]:
        yield

    @hookimpl
    def process_score(self, score: Score) -> None:
        return None


class Optional:
    name = "optional"

    @hookimpl(optionalhook=True)
    def some_future_hook(self) -> None: ...


def test_misspelled_hook_is_an_error_in_strict_mode() -> None:
    with pytest.raises(PluginLoadError, match=r"^plugin 'misspelled': unknown hook 'trace_finish' "
                                              r"\(did you mean 'trace_finished'\?\)$"):
        load_plugins(None, builtins=(), entry_points=False, extra=[Misspelled()], strict=True)


def test_misspelled_hook_is_refused_with_a_warning_by_default(caplog: pytest.LogCaptureFixture) -> None:
    plugins = load_plugins(None, builtins=(), entry_points=False, extra=[Misspelled(), OnlyTypo()])
    info = plugins.info("misspelled")
    assert info is not None
    assert info.hooks == ("process_span",)  # the misspelled one is not counted
    assert info.status == "active"
    assert len(info.problems) == 1 and "unknown hook 'trace_finish'" in info.problems[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("'misspelled'" in w and "'trace_finish'" in w and "did you mean 'trace_finished'" in w
               for w in warnings)
    only = plugins.info("only_typo")
    assert only is not None and only.status == "refused" and only.hooks == ()
    assert "did you mean 'process_span'" in only.problems[0]
    # Nothing unknown stays in the manager: pluggy's own check passes.
    plugins.pm.check_pending()
    assert not hasattr(plugins.pm.hook, "proces_span") or not plugins.pm.hook.proces_span.get_hookimpls()


def test_refused_plugin_registered_after_startup(tmp_path: Path) -> None:
    from chainsight.framework.observer import Observer

    obs = Observer(f"sqlite:///{tmp_path / 'x.db'}", builtins=(), entry_points=False, strict=True,
                   spill_path=tmp_path / "spill")
    try:
        with pytest.raises(PluginLoadError, match="unknown hook 'trace_finish'"):
            obs.register(Misspelled())
        assert not obs.plugins.pm.has_plugin("misspelled")
    finally:
        obs.shutdown(5)


def test_refused_hook_is_never_called(tmp_path: Path) -> None:
    from chainsight.framework.observer import Observer
    from chainsight.storage.query import Store

    plugin = Misspelled()
    wrappers = Wrappers()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    obs = Observer(url, builtins=(), entry_points=False, strict=False, plugins=[plugin, wrappers],
                   spill_path=tmp_path / "spill")
    with obs.span("root") as span:
        pass
    assert obs.flush(10)
    obs.shutdown(5)
    detail = Store(url).get_trace(span.trace_id)
    assert detail is not None
    assert detail.spans[0].tags == ["processed"]  # the wrapper did not run, the plain hook did
    assert plugin.seen == []


def test_wrappers_are_refused_at_load(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(PluginLoadError, match=r"plugin 'wrappers': .*hook wrapper on 'process_span' "
                                              r"\(wrappers never run here: use a plain @hookimpl\)") as e:
        load_plugins(None, builtins=(), entry_points=False, extra=[Wrappers()], strict=True)
    assert "hook wrapper on 'spans_finished'" in str(e.value)

    plugins = load_plugins(None, builtins=(), entry_points=False, extra=[Wrappers()])
    info = plugins.info("wrappers")
    assert info is not None and info.hooks == ("process_score",) and info.status == "active"
    assert {p.split(" (")[0] for p in info.problems} == {
        "hook wrapper on 'spans_finished'", "hook wrapper on 'process_span'"}
    assert not plugins.pm.hook.process_span.get_hookimpls()
    assert any("'wrappers'" in r.getMessage() and "'process_span'" in r.getMessage()
               and r.levelname == "WARNING" for r in caplog.records)


def test_optional_hooks_are_accepted_silently(caplog: pytest.LogCaptureFixture) -> None:
    plugins = load_plugins(None, builtins=(), entry_points=False, extra=[Optional()], strict=True)
    info = plugins.info("optional")
    assert info is not None and info.problems == () and info.status == "active"
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_builtins_have_no_refused_hooks() -> None:
    plugins = load_plugins(None, entry_points=False, strict=True)
    assert all(not i.problems for i in plugins.infos)
