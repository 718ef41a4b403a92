"""plugins.toml: lookup order, defaults, validation messages with file/line/path, secrets."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from chainsight.framework import config
from chainsight.framework.config import (
    ConfigError,
    ConfigProblem,
    Settings,
    apply_defaults,
    find_config_path,
    format_path,
    load_settings,
    read_settings,
    resolve_plugin_configs,
)

REPO = Path(__file__).resolve().parents[2]

ALERTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["metric"],
                "properties": {
                    "metric": {"type": "string"},
                    "op": {"enum": ["gt", "lt"], "default": "gt"},
                    "for_s": {"type": "number", "default": 0},
                },
            },
        },
        "webhook_url": {"type": "string"},
        "cooldown_s": {"type": "number", "default": 60},
        "slack": {
            "type": "object",
            "properties": {"channel": {"type": "string", "default": "#alerts"}},
        },
    },
}
SCHEMAS: dict[str, Any] = {"alerts": ALERTS_SCHEMA, "pricing": None, "redaction": None}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient config: empty cwd, no env overrides, an empty user config dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.delenv("CHAINSIGHT_STORAGE_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# ---- lookup order ------------------------------------------------------------


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_config_path() is None

    user = write(tmp_path / "xdg" / "chainsight" / "plugins.toml", "")
    assert config.user_config_path() == user
    assert find_config_path() == user

    cwd = write(tmp_path / "plugins.toml", "")
    assert find_config_path() == Path("plugins.toml")
    assert find_config_path().resolve() == cwd.resolve()  # type: ignore[union-attr]

    env = write(tmp_path / "env" / "x.toml", "")
    monkeypatch.setenv("CHAINSIGHT_CONFIG", str(env))
    assert find_config_path() == env

    explicit = write(tmp_path / "explicit.toml", "")
    assert find_config_path(explicit) == explicit
    assert find_config_path(str(explicit)) == explicit


def test_missing_explicit_or_env_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: configuration file not found"):
        find_config_path(tmp_path / "nope.toml")
    monkeypatch.setenv("CHAINSIGHT_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone.toml: configuration file not found \(from \$CHAINSIGHT_CONFIG\)"):
        load_settings()


# ---- defaults ------------------------------------------------------------------


def test_builtin_defaults(tmp_path: Path) -> None:
    s = load_settings()
    assert s.path is None
    assert s.pipeline["batch_size"] == 512
    assert s.pipeline["flush_interval_s"] == 0.2
    assert s.pipeline["queue_size"] == 100000
    assert s.pipeline["strict"] is False
    assert s.pipeline["metrics_only"] is False
    assert s.storage_url == "sqlite:///chainsight.db"
    assert s.spill_path == tmp_path / "chainsight.spill.jsonl"
    assert s.max_content_bytes == 32768
    assert s.plugin_enabled("anything")
    assert Settings().pipeline == s.pipeline


def test_values_and_defaults_from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "conf" / "c.toml", """
        [storage]
        url = "sqlite:///from-file.db"
        max_content_bytes = 100

        [pipeline]
        batch_size = 10
        strict = true

        [plugins.pricing]
        enabled = false
    """)
    s = load_settings(path)
    assert s.path == path
    assert s.pipeline["batch_size"] == 10
    assert s.pipeline["strict"] is True
    assert s.pipeline["queue_size"] == 100000  # default applied
    assert s.storage_url == "sqlite:///from-file.db"
    assert s.max_content_bytes == 100
    assert s.spill_path == tmp_path / "conf" / "chainsight.spill.jsonl"  # beside the file
    assert not s.plugin_enabled("pricing")
    assert s.plugin_enabled("redaction")

    monkeypatch.setenv("CHAINSIGHT_STORAGE_URL", "sqlite:///env.db")
    assert s.storage_url == "sqlite:///env.db"


def test_spill_path_relative_to_config_file(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "c.toml", '[pipeline]\nspill_path = "spill/x.jsonl"\n')
    assert load_settings(path).spill_path == tmp_path / "conf" / "spill" / "x.jsonl"


def test_repository_plugins_toml_loads_cleanly() -> None:
    s = load_settings(REPO / "plugins.toml")
    builtins = ["pricing", "redaction", "length", "refusal", "pii", "toxicity", "groundedness", "json_schema"]
    configs = resolve_plugin_configs(s, dict.fromkeys(builtins))
    assert set(configs) == set(builtins)
    assert s.pipeline["batch_size"] == 512


# ---- problems --------------------------------------------------------------------


def test_syntax_error_reports_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", """
        [pipeline]
        batch_size = 10
        queue_size =
    """)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    (problem,) = info.value.problems
    assert problem.file == str(path)
    assert problem.line == 3
    assert "invalid TOML" in problem.message
    assert str(problem).startswith(f"{path}:3: invalid TOML: ")


def test_unterminated_string_points_at_end(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", '[storage]\nurl = "sqlite:///x.db\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.problems[0].line is not None


def test_syntax_error_at_the_end_says_so(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[pipeline]\nbatch_size = [1,\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value.problems[0]) == f"{path}:3: invalid TOML: Invalid value (at end of file)"
    path.write_text("[pipeline]\nbatch_size = 10\nqueue_size =\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value.problems[0]) == f"{path}:3: invalid TOML: Invalid value (column 13)"


def test_all_problems_at_once_with_file_line_and_path(tmp_path: Path) -> None:
    path = write(tmp_path / "plugins.toml", """
        [storage]
        url = 5

        [pipeline]
        batch_size = "big"
        queue_sise = 10

        [plugins.alerts]
        cooldown = 5
        webhook_url = { env = "CHAINSIGHT_TEST_UNSET_SECRET" }
        rules = [
          { metric = "latency", op = "gt" },
          { metric = "cost", op = "gte" },
        ]

        [plugins.pricng]
        x = 1

        [plugins.redaction]
        email = true

        [exporters]
    """)
    settings, early = read_settings(path)
    with pytest.raises(ConfigError) as info:
        resolve_plugin_configs(settings, SCHEMAS)
    problems = early + info.value.problems
    by_path = {p.path: p for p in problems}
    assert all(p.file == str(path) for p in problems)

    assert by_path["storage.url"].line == 2
    assert by_path["storage.url"].message == "expected string, got integer 5"
    assert by_path["pipeline.batch_size"].line == 5
    assert "expected integer, got string 'big'" in by_path["pipeline.batch_size"].message
    assert by_path["pipeline.queue_sise"].line == 6
    assert "unknown key" in by_path["pipeline.queue_sise"].message
    assert "did you mean 'queue_size'" in by_path["pipeline.queue_sise"].message
    assert by_path["exporters"].line == 22
    assert "unknown section" in by_path["exporters"].message

    assert by_path["plugins.alerts.cooldown"].line == 9
    assert "did you mean 'cooldown_s'" in by_path["plugins.alerts.cooldown"].message
    secret = by_path["plugins.alerts.webhook_url"]
    assert secret.line == 10
    assert "CHAINSIGHT_TEST_UNSET_SECRET is not set" in secret.message
    op = by_path["plugins.alerts.rules[1].op"]
    assert op.line == 13
    assert op.message == "'gte' is not one of ['gt', 'lt']"
    assert str(op) == f"{path}:13: plugins.alerts.rules[1].op: 'gte' is not one of ['gt', 'lt']"
    unknown = by_path["plugins.pricng"]
    assert unknown.line == 16
    assert unknown.message == (
        "unknown plugin; installed: alerts, pricing, redaction (did you mean 'pricing'?)"
    )
    assert by_path["plugins.redaction.email"].line == 20
    assert "takes no options" in by_path["plugins.redaction.email"].message

    # load_settings raises with the same early problems, each on its own line of str()
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert str(raised.value).splitlines() == [str(p) for p in early]
    assert len(early) == 4


def test_wrong_types_in_structure(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", """
        pipeline = 3
        [plugins]
        alerts = 1
        pricing = { enabled = "no" }
    """)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    messages = {p.path: p.message for p in info.value.problems}
    assert messages["pipeline"] == "must be a table, not integer"
    assert messages["plugins.alerts"] == "must be a table, not integer"
    assert messages["plugins.pricing.enabled"] == "expected boolean, got string 'no'"


def test_missing_required_and_array_of_tables(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", """
        [plugins.alerts]
        cooldown_s = 1

        [[plugins.alerts.rules]]
        metric = "latency"

        [[plugins.alerts.rules]]
        op = "lt"
        for_s = "soon"
    """)
    with pytest.raises(ConfigError) as info:
        resolve_plugin_configs(load_settings(path), SCHEMAS)
    got = {(p.path, p.line) for p in info.value.problems}
    assert ("plugins.alerts.rules[1]", 7) in got  # 'metric' is a required property
    assert ("plugins.alerts.rules[1].for_s", 9) in got


# ---- resolution ----------------------------------------------------------------------


def test_secrets_defaults_and_enabled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINSIGHT_TEST_HOOK", "https://hooks.example/xyz")
    monkeypatch.setenv("CHAINSIGHT_TEST_DB", "sqlite:///secret.db")
    path = write(tmp_path / "c.toml", """
        [storage]
        url = { env = "CHAINSIGHT_TEST_DB" }

        [plugins.alerts]
        enabled = true
        webhook_url = { env = "CHAINSIGHT_TEST_HOOK" }
        rules = [{ metric = "latency" }]

        [plugins.redaction]
        enabled = false
        anything = "not validated while disabled"

        [plugins.not_installed]
        enabled = false
    """)
    settings = load_settings(path)
    assert settings.storage_url == "sqlite:///secret.db"
    configs = resolve_plugin_configs(settings, SCHEMAS)
    assert configs["alerts"] == {
        "webhook_url": "https://hooks.example/xyz",
        "rules": [{"metric": "latency", "op": "gt", "for_s": 0}],
        "cooldown_s": 60,
        "slack": {"channel": "#alerts"},
    }
    assert configs["pricing"] == {}
    assert configs["redaction"] == {}
    # the raw settings keep the reference, not the secret
    assert settings.plugins["alerts"]["webhook_url"] == {"env": "CHAINSIGHT_TEST_HOOK"}


def test_no_file_gives_every_installed_plugin_its_defaults() -> None:
    configs = resolve_plugin_configs(Settings(), SCHEMAS)
    assert configs["alerts"]["cooldown_s"] == 60
    assert configs["pricing"] == {}


def test_unknown_plugin_without_file_and_ignore() -> None:
    s = Settings(plugins={"broken": {"x": 1}, "alertz": {}})
    with pytest.raises(ConfigError) as info:
        resolve_plugin_configs(s, SCHEMAS, ignore=["broken"])
    (problem,) = info.value.problems
    assert problem.file is None and problem.line is None
    assert str(problem) == (
        "plugins.alertz: unknown plugin; installed: alerts, pricing, redaction (did you mean 'alerts'?)"
    )


def test_invalid_plugin_schema_is_reported_not_raised() -> None:
    s = Settings(plugins={"weird": {"a": 1}})
    with pytest.raises(ConfigError, match=r"plugins\.weird: plugin has an invalid CONFIG_SCHEMA"):
        resolve_plugin_configs(s, {"weird": {"type": "no-such-type"}})


def test_helpers() -> None:
    assert format_path(["plugins", "alerts", "rules", 0, "op"]) == "plugins.alerts.rules[0].op"
    assert format_path(["plugins", "my.plugin", "k"]) == 'plugins."my.plugin".k'
    assert str(ConfigProblem("a.b", "bad")) == "a.b: bad"
    assert str(ConfigProblem("a.b", "bad", file="f.toml")) == "f.toml: a.b: bad"
    assert str(ConfigProblem("", "bad", file="f.toml", line=3)) == "f.toml:3: bad"
    nested = {"properties": {"outer": {"type": "object", "properties": {"x": {"default": 1}}}}}
    assert apply_defaults(nested, {}) == {"outer": {"x": 1}}
    assert apply_defaults(nested, {"outer": {"x": 2}}) == {"outer": {"x": 2}}
    assert apply_defaults(None, {"a": 1}) == {"a": 1}


def test_every_commented_plugin_example_in_plugins_toml_is_valid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Uncomment each `# [plugins.NAME]` block of the repository's plugins.toml
    (one `# ` level; `# # ` lines stay comments) and validate it against the
    installed plugin's real CONFIG_SCHEMA, so the documentation cannot drift.
    The secrets it references (`{ env = "NAME" }`) are set to a URL."""
    import re

    from chainsight.framework.plugin_manager import load_plugins

    for name in re.findall(r'\{ env = "([A-Za-z_][A-Za-z0-9_]*)" \}',
                           (REPO / "plugins.toml").read_text(encoding="utf-8")):
        monkeypatch.setenv(name, "https://example.invalid/secret")

    blocks: list[str] = []
    current: list[str] | None = None
    for line in (REPO / "plugins.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("# [plugins."):
            current = [line[2:]]
            blocks.append("")
        elif current is not None and line.startswith("#"):
            current.append(line[2:] if line.startswith("# ") else "")
        elif current is not None:
            blocks[-1] = "\n".join(current)
            current = None
    if current is not None:
        blocks[-1] = "\n".join(current)
    assert len(blocks) >= 8
    path = write(tmp_path / "uncommented.toml", "\n\n".join(blocks) + "\n")
    settings = load_settings(path)
    schemas = load_plugins(settings, entry_points=False).schemas
    configs = resolve_plugin_configs(settings, schemas)
    for name in settings.plugins:
        assert name in configs, name
