"""The pricing plugin: the offline price table, overrides, aliases, prefixes, price_span."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import chainsight.plugins.pricing as pricing
from chainsight.framework.config import ConfigError, Settings, resolve_plugin_configs
from chainsight.framework.hookspecs import hookimpl
from chainsight.framework.model import Span
from chainsight.framework.observer import Observer
from chainsight.plugins.price_table import PriceTable, bundled_table_path, candidates, load_table

pytestmark = pytest.mark.skipif(bundled_table_path() is None, reason="litellm is not installed")


@pytest.fixture
def plugin() -> pricing.PricingPlugin:
    """One pricing instance with the default table, as an observer has."""
    return pricing.PricingPlugin(PriceTable())


def llm_span(model: str, inp: int | None = 1000, out: int | None = 100, *, cached: int | None = None,
             reasoning: int | None = None, provider: str | None = None) -> Span:
    span = Span("call", "llm")
    span.model, span.provider = model, provider
    span.input_tokens, span.output_tokens = inp, out
    span.cached_tokens, span.reasoning_tokens = cached, reasoning
    return span


# ---- the bundled table --------------------------------------------------------


def test_gpt4o_priced_to_the_fraction_of_a_cent(plugin: pricing.PricingPlugin) -> None:
    # litellm's map: gpt-4o $2.50/1M input, $1.25/1M cached input, $10/1M output.
    # 1234 input tokens of which 200 cached, 567 output tokens, by hand:
    #   1034 * 2.50e-6 = 0.002585
    #    200 * 1.25e-6 = 0.000250
    #    567 * 10.0e-6 = 0.005670
    #                    0.008505
    cost = plugin.price(llm_span("gpt-4o", 1234, 567, cached=200))
    assert cost == pytest.approx(0.008505, abs=1e-12)
    assert plugin.price(llm_span("gpt-4o", 1234, 567)) == pytest.approx(
        1234 * 2.5e-6 + 567 * 1e-5, abs=1e-12
    )


def test_reasoning_tokens_use_their_rate_or_the_output_rate(plugin: pricing.PricingPlugin) -> None:
    table = load_table()
    with_rate = next(k for k, p in table.items()
                     if p.reasoning and p.reasoning != p.output and not p.is_zero)
    price = table[with_rate]
    assert price.reasoning is not None
    cost = plugin.price(llm_span(with_rate, 100, 50, reasoning=30))
    assert cost == pytest.approx(100 * price.input + 20 * price.output + 30 * price.reasoning)
    # o1 has no separate reasoning price: reasoning tokens are output tokens
    o1 = table["o1"]
    assert o1.reasoning is None
    assert plugin.price(llm_span("o1", 100, 50, reasoning=30)) == pytest.approx(
        100 * o1.input + 50 * o1.output
    )


def test_table_is_read_without_litellm_and_is_large() -> None:
    table = load_table()
    assert len(table) > 1000
    assert table["gpt-4o"].per_million()["input"] == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("model", "provider", "key"),
    [
        ("openrouter/openai/gpt-4o", None, "gpt-4o"),
        ("openai/gpt-4o", None, "gpt-4o"),
        ("GPT-4o", None, "gpt-4o"),
        ("gpt-4o", "azure", "azure/gpt-4o"),
        ("azure/gpt-4o", None, "azure/gpt-4o"),
        ("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", None,
         "anthropic.claude-3-5-sonnet-20240620-v1:0"),
        ("bedrock/us-east-1/anthropic.claude-3-5-sonnet-20240620-v1:0", None,
         "anthropic.claude-3-5-sonnet-20240620-v1:0"),
    ],
)
def test_provider_prefixes_are_normalised(model: str, provider: str | None, key: str) -> None:
    price = PriceTable().lookup(model, provider)
    assert price is not None
    assert (price.source, price.key) == ("table", key)


def test_candidates_order() -> None:
    assert list(candidates("openrouter/openai/gpt-4o")) == [
        "openrouter/openai/gpt-4o", "openai/gpt-4o", "gpt-4o"]
    assert list(candidates("gpt-4o", "azure")) == ["azure/gpt-4o", "gpt-4o"]
    assert list(candidates("azure/gpt-4o", "azure")) == ["azure/gpt-4o", "gpt-4o"]


def test_unknown_model_is_unpriced_and_counted(plugin: pricing.PricingPlugin) -> None:
    assert plugin.price(llm_span("acme/totally-unknown-model")) is None
    assert plugin.price(llm_span("acme/totally-unknown-model")) is None
    assert plugin.unpriced_counts() == {"acme/totally-unknown-model": 2}


def test_table_price_of_zero_is_unpriced_but_an_explicit_zero_override_is_free(
    plugin: pricing.PricingPlugin,
) -> None:
    zero = [k for k, p in load_table().items() if p.is_zero]
    assert zero, "the bundled map has no 0/0 model any more; pick another test model"
    model = zero[0]
    assert plugin.price(llm_span(model)) is None
    plugin.set_table(pricing.table_from_config(
        {"overrides": [{"model": model, "input_per_1m": 0, "output_per_1m": 0}]}))
    assert plugin.price(llm_span(model)) == 0.0


# ---- overrides, aliases, fees -----------------------------------------------------


def test_override_wins_over_the_table_per_1m_and_per_1k(plugin: pricing.PricingPlugin) -> None:
    plugin.set_table(pricing.table_from_config({"overrides": [
        {"model": "gpt-4o", "input_per_1m": 1.0, "output_per_1m": 2.0},
        {"model": "gpt-4o-mini", "input_per_1k": 0.001, "output_per_1k": 0.002,
         "cached_input_per_1k": 0.0005},
    ]}))
    assert plugin.price(llm_span("gpt-4o", 1000, 100)) == pytest.approx(0.0012)
    # the override covers prefixed names too
    assert plugin.price(llm_span("openrouter/openai/gpt-4o", 1000, 100)) == pytest.approx(0.0012)
    assert plugin.price(llm_span("gpt-4o-mini", 1000, 100, cached=400)) == pytest.approx(
        600 * 1e-6 + 400 * 0.5e-6 + 100 * 2e-6)
    price = plugin.lookup("gpt-4o")
    assert price is not None and price.source == "override"


def test_custom_model_alias_and_per_request_fee(plugin: pricing.PricingPlugin) -> None:
    plugin.set_table(pricing.table_from_config({
        "overrides": [{"model": "my-finetune", "input_per_1m": 0.5, "output_per_1m": 1.5,
                       "per_request": 0.001}],
        "aliases": {"azure/my-deployment": "gpt-4o", "ft": "my-finetune"},
        "per_request": {"gpt-4o": 0.01},
    }))
    assert plugin.price(llm_span("my-finetune", 1_000_000, 1_000_000)) == pytest.approx(2.001)
    assert plugin.price(llm_span("ft", 1_000_000, 0)) == pytest.approx(0.501)
    alias = plugin.lookup("azure/my-deployment")
    assert alias is not None
    assert (alias.source, alias.key, alias.alias) == ("table", "gpt-4o", "azure/my-deployment")
    assert "alias" in alias.describe()
    assert plugin.price(llm_span("azure/my-deployment", 1000, 0)) == pytest.approx(
        1000 * 2.5e-6 + 0.01)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": "m", "input_per_1k": 1, "input_per_1m": 1, "output_per_1m": 1}, "not both"),
        ({"model": "m", "per_request": 0.1}, "input or an output"),
    ],
)
def test_inconsistent_overrides_are_errors(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pricing.table_from_config({"overrides": [entry]})


def test_schema_rejects_unknown_keys_and_negative_prices() -> None:
    settings = Settings(plugins={"pricing": {
        "overrides": [{"model": "m", "input_per_1m": -1, "outptu_per_1m": 2}],
        "aliases": {"x": 3},
    }})
    with pytest.raises(ConfigError) as err:
        resolve_plugin_configs(settings, {"pricing": pricing.CONFIG_SCHEMA})
    text = str(err.value)
    assert "plugins.pricing.overrides[0]" in text
    assert "outptu_per_1m" in text
    assert "plugins.pricing.aliases.x" in text


def test_schema_accepts_the_documented_example_in_plugins_toml() -> None:
    import re
    import tomllib

    text = (Path(__file__).resolve().parents[2] / "plugins.toml").read_text(encoding="utf-8")
    block = re.search(r"^# \[plugins\.pricing\]\n((?:#.*\n)+)", text, re.M)
    assert block, "plugins.toml has no commented [plugins.pricing] section"
    lines = [line[2:] if line.startswith("# ") else line[1:] for line in block.group(1).splitlines()]
    config = tomllib.loads("\n".join(ln for ln in lines if not ln.lstrip().startswith("#")))
    config.pop("enabled", None)
    resolved = resolve_plugin_configs(Settings(plugins={"pricing": config}),
                                      {"pricing": pricing.CONFIG_SCHEMA})
    pricing.table_from_config(resolved["pricing"])


def test_custom_table_path(tmp_path: Path, plugin: pricing.PricingPlugin) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"house-model": {"input_cost_per_token": 1e-6,
                                                "output_cost_per_token": 2e-6}}))
    plugin.set_table(pricing.table_from_config({"table_path": str(path)}))
    assert plugin.price(llm_span("house-model", 10, 10)) == pytest.approx(30e-6)
    assert plugin.price(llm_span("gpt-4o")) is None


# ---- through the observer pipeline --------------------------------------------------


def _stored_costs(url: str) -> dict[str, float | None]:
    import sqlalchemy as sa

    from chainsight.storage.engine import open_engine

    with open_engine(url).connect() as conn:
        return {r.name: r.cost_usd for r in conn.execute(sa.text("SELECT name, cost_usd FROM spans"))}


def test_pipeline_prices_spans_and_another_plugin_wins(tmp_path: Path) -> None:
    class HousePrices:
        name = "house"

        @hookimpl
        def price_span(self, span: Span) -> float | None:
            return 42.0 if span.model == "house-special" else None

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    settings = Settings(plugins={"pricing": {"overrides": [
        {"model": "gpt-4o-mini", "input_per_1m": 100, "output_per_1m": 100}]}})
    obs = Observer(url, settings=settings, strict=True, entry_points=False,
                   builtins=[("pricing", "chainsight.plugins.pricing")], plugins=[HousePrices()],
                   spill_path=tmp_path / "spill.jsonl")
    try:
        for name, model in [("a", "gpt-4o"), ("b", "gpt-4o-mini"), ("c", "house-special"),
                            ("d", "nobody-knows-this")]:
            span = obs.start_span(name, "llm", model=model)
            span.input_tokens, span.output_tokens = 1000, 100
            obs.end_span(span)
        preset = obs.start_span("e", "llm", model="gpt-4o")
        preset.input_tokens, preset.cost_usd = 10, 0.5  # already priced: left alone
        obs.end_span(preset)
        assert obs.flush(10)
        instance = obs.plugins.pm.get_plugin("pricing")
        assert isinstance(instance, pricing.PricingPlugin)
        assert instance.unpriced_counts() == {"nobody-knows-this": 1}
    finally:
        obs.shutdown()
    costs = _stored_costs(url)
    assert costs["a"] == pytest.approx(1000 * 2.5e-6 + 100 * 1e-5)
    assert costs["b"] == pytest.approx(1100 * 100e-6)
    assert costs["c"] == 42.0
    assert costs["d"] is None
    assert costs["e"] == 0.5


def test_two_observers_price_with_their_own_configuration(tmp_path: Path) -> None:
    def observer(n: int, price: float) -> Observer:
        settings = Settings(plugins={"pricing": {"overrides": [
            {"model": "m", "input_per_1m": price, "output_per_1m": price}]}})
        return Observer(f"sqlite:///{tmp_path / f'{n}.db'}", settings=settings, strict=True,
                        entry_points=False, builtins=[("pricing", "chainsight.plugins.pricing")],
                        spill_path=tmp_path / f"spill{n}.jsonl")

    first, second = observer(1, 1.0), observer(2, 2.0)
    try:
        for obs in (first, second):
            span = obs.start_span("call", "llm", model="m")
            span.input_tokens, span.output_tokens = 1_000_000, 0
            obs.end_span(span)
            assert obs.flush(10)
    finally:
        first.shutdown()
        second.shutdown()
    assert _stored_costs(f"sqlite:///{tmp_path / '1.db'}")["call"] == pytest.approx(1.0)
    assert _stored_costs(f"sqlite:///{tmp_path / '2.db'}")["call"] == pytest.approx(2.0)


def test_pipeline_rejects_a_bad_override_in_strict_mode(tmp_path: Path) -> None:
    settings = Settings(plugins={"pricing": {"overrides": [
        {"model": "m", "input_per_1k": 1, "input_per_1m": 1}]}})
    with pytest.raises(ValueError, match="not both"):
        Observer(f"sqlite:///{tmp_path / 'x.db'}", settings=settings, strict=True,
                 entry_points=False, builtins=[("pricing", "chainsight.plugins.pricing")],
                 spill_path=tmp_path / "spill.jsonl")
