"""Prices without litellm: the dated snapshot shipped with Chainsight, and
which table wins when litellm is installed too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from chainsight.framework.cli import main
from chainsight.plugins import price_table
from chainsight.plugins.price_table import (
    PRICE_FIELDS,
    SNAPSHOT_FILE,
    SNAPSHOT_KEY,
    PriceTable,
    default_source,
    load_table,
    snapshot_source,
)

REPO = Path(__file__).resolve().parents[2]

# A sys.meta_path finder that makes litellm unimportable (as on an install
# without the litellm extra), for a subprocess.
BLOCK_LITELLM = textwrap.dedent('''
    import sys

    class NoLitellm:
        def find_spec(self, name, path=None, target=None):
            if name == "litellm" or name.startswith("litellm."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoLitellm())
''')


def test_snapshot_is_dated_small_and_keeps_only_what_pricing_reads() -> None:
    data = json.loads(SNAPSHOT_FILE.read_text(encoding="utf-8"))
    meta = data.pop(SNAPSHOT_KEY)
    assert meta["built"] and meta["litellm_version"]
    assert meta["models"] == len(data) > 1000
    assert SNAPSHOT_FILE.stat().st_size < 1_000_000  # litellm's whole map is ~3.5 MB
    for entry in data.values():
        assert set(entry) <= set(PRICE_FIELDS)
        assert entry.get("input_cost_per_token") or entry.get("output_cost_per_token")
    # it is shipped in the wheel, not only in the checkout
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert SNAPSHOT_FILE.name in config["tool"]["setuptools"]["package-data"]["chainsight.plugins"]


def test_snapshot_script_keeps_chat_models_priced_by_the_token(tmp_path: Path) -> None:
    source = tmp_path / "map.json"
    source.write_text(json.dumps({
        "sample_spec": {"mode": "one of: chat, embedding", "input_cost_per_token": 0},
        "chat-model": {"mode": "chat", "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                       "max_tokens": 10, "litellm_provider": "acme"},
        "free-chat": {"mode": "chat", "input_cost_per_token": 0, "output_cost_per_token": 0},
        "an-embedding": {"mode": "embedding", "input_cost_per_token": 1e-7},
        "an-image-model": {"mode": "image_generation", "output_cost_per_image": 0.04},
    }))
    out = tmp_path / "snap.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_price_snapshot.py"),
                    "--source", str(source), "--litellm-version", "1.2.3", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=60)
    data = json.loads(out.read_text())
    assert data.pop(SNAPSHOT_KEY)["litellm_version"] == "1.2.3"
    assert data == {"chat-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}
    assert snapshot_source(out) is not None
    assert PriceTable(table_path=out).lookup("chat-model") is not None  # litellm's format


def test_without_litellm_gpt_4o_mini_is_priced_from_the_snapshot(tmp_path: Path) -> None:
    """A subprocess where litellm cannot be imported, as with `pip install chainsight[langchain]`."""
    script = BLOCK_LITELLM + textwrap.dedent('''
        import json, sys
        from chainsight.plugins import price_table, pricing
        from chainsight.framework.model import Span

        assert price_table.bundled_table_path() is None
        span = Span("call", "llm")
        span.model, span.input_tokens, span.output_tokens = "gpt-4o-mini", 1000, 100
        source = price_table.default_source()
        print(json.dumps({"cost": pricing.PricingPlugin().price(span), "kind": source and source.kind,
                          "litellm_imported": "litellm" in sys.modules}))
    ''')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["kind"] == "snapshot" and not result["litellm_imported"]
    assert result["cost"] == pytest.approx(1000 * 0.15e-6 + 100 * 0.6e-6)

    # the command a user runs: `chainsight pricing show gpt-4o-mini`
    cli = BLOCK_LITELLM + "from chainsight.framework.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    done = subprocess.run([sys.executable, "-c", cli, "pricing", "show", "gpt-4o-mini", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["priced"] and shown["per_1m"]["input"] == pytest.approx(0.15)
    assert shown["table"].startswith("Chainsight's price snapshot of ")


def test_litellm_map_wins_only_when_it_is_no_older_than_the_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if price_table.bundled_table_path() is None:
        pytest.skip("litellm is not installed")  # the subprocess test covers that case
    snapshot = snapshot_source()
    assert snapshot is not None and snapshot.version
    monkeypatch.setattr(price_table, "litellm_version", lambda: snapshot.version)
    assert default_source().kind == "litellm"  # type: ignore[union-attr]
    monkeypatch.setattr(price_table, "litellm_version", lambda: "99.0.0")
    assert default_source().kind == "litellm"  # type: ignore[union-attr]
    monkeypatch.setattr(price_table, "litellm_version", lambda: "1.0.0")
    older = default_source()
    assert older is not None and older.kind == "snapshot" and older.path == SNAPSHOT_FILE
    assert load_table()["gpt-4o-mini"].input == pytest.approx(0.15e-6)


@pytest.fixture
def no_price_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither litellm's map nor the snapshot (as if the package data were lost)."""
    monkeypatch.setattr(price_table, "bundled_table_path", lambda: None)
    monkeypatch.setattr(price_table, "SNAPSHOT_FILE", tmp_path / "missing.json")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHAINSIGHT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.mark.usefixtures("no_price_table")
def test_a_pricing_plugin_without_a_table_says_so(capsys: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    assert PriceTable().lookup("gpt-4o-mini") is None
    assert main(["plugins", "--json"]) == 0
    info = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert info["pricing"]["status"] == "active"
    assert info["pricing"]["problems"][0].startswith("no price table: litellm is not installed")
    assert main(["plugins"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pricing"))
    assert "active: no price table" in row

    assert main(["config", "check"]) == 0
    out, err = capsys.readouterr()
    assert "warning: plugin 'pricing': no price table" in err
    assert "(1 warning above)" in out

    assert main(["pricing", "show", "gpt-4o-mini"]) == 1
    assert "no price for 'gpt-4o-mini': no price table" in capsys.readouterr().err

    # an observer that configures it logs the same, once
    import chainsight.plugins.pricing as pricing

    with caplog.at_level("WARNING", logger="chainsight.pricing"):
        pricing.PricingPlugin().configure({})
    assert [r.getMessage() for r in caplog.records] == [
        "pricing: " + PriceTable().problems()[0]]


@pytest.mark.usefixtures("no_price_table")
def test_overrides_only_and_a_bad_table_path_are_reported_too(tmp_path: Path) -> None:
    assert PriceTable(use_table=False).problems() == [
        "use_table = false and no overrides: no call will be priced"]
    assert PriceTable(use_table=False, overrides=[
        {"model": "m", "input_per_1m": 1, "output_per_1m": 1}]).problems() == []
    problems = PriceTable(table_path=tmp_path / "nope.json").problems()
    assert problems and "cannot be read" in problems[0]
