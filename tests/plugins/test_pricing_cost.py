"""Cost queries, repricing and the pricing / cost / reprice commands."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import chainsight.plugins.pricing as pricing
from chainsight.framework.cli import main
from chainsight.framework.config import Settings
from chainsight.framework.observer import Observer
from chainsight.plugins.price_table import PriceTable, bundled_table_path
from chainsight.storage.cost import PricedCall, cost_report, reprice, unpriced_models
from chainsight.storage.engine import open_engine

pytestmark = pytest.mark.skipif(bundled_table_path() is None, reason="litellm is not installed")

IN_4O, OUT_4O = 2.5e-6, 10e-6  # gpt-4o in litellm's bundled map
DAY1 = dt.datetime(2025, 3, 1, 12, 0)  # local time
DAY2 = dt.datetime(2025, 3, 2, 12, 0)


def ns(when: dt.datetime, seconds: float = 0) -> int:
    return int((when.timestamp() + seconds) * 1e9)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def record(url: str, tmp_path: Path, calls: list[dict[str, Any]],
           plugins_config: dict[str, Any] | None = None) -> list[str]:
    """Record each call as a root chain span with one llm child; returns trace ids."""
    settings = Settings(plugins={"pricing": plugins_config or {}})
    obs = Observer(url, settings=settings, strict=True, entry_points=False,
                   builtins=[("pricing", "chainsight.plugins.pricing")], spill_path=tmp_path / "spill.jsonl")
    traces = []
    try:
        for call in calls:
            start = call["start_ns"]
            root = obs.start_span("chat", "chain", start_ns=start, user_id=call.get("user"),
                                  tags=call.get("tags"))
            llm = obs.start_span("llm", "llm", parent=root, start_ns=start + 1000,
                                 model=call["model"])
            llm.input_tokens, llm.output_tokens = call["inp"], call["out"]
            obs.end_span(llm, end_ns=start + 2000)
            obs.end_span(root, end_ns=start + 3000)
            traces.append(root.trace_id)
        assert obs.flush(10)
    finally:
        obs.shutdown()
    return traces


CALLS = [
    {"model": "gpt-4o", "inp": 1000, "out": 100, "user": "alice", "tags": ["prod"], "start_ns": ns(DAY1)},
    {"model": "gpt-4o", "inp": 2000, "out": 200, "user": "bob", "tags": ["prod", "rag"],
     "start_ns": ns(DAY1, 60)},
    {"model": "my-model", "inp": 500, "out": 500, "user": "alice", "tags": ["dev"],
     "start_ns": ns(DAY2)},
    {"model": "unknown-x", "inp": 10, "out": 10, "user": "bob", "start_ns": ns(DAY2, 60)},
]
MY_MODEL = {"overrides": [{"model": "my-model", "input_per_1m": 1.0, "output_per_1m": 3.0}]}
COST_A = 1000 * IN_4O + 100 * OUT_4O  # 0.0035
COST_B = 2000 * IN_4O + 200 * OUT_4O  # 0.007
COST_C = 500 * 1e-6 + 500 * 3e-6  # 0.002


def test_cost_report_by_model(url: str, tmp_path: Path) -> None:
    record(url, tmp_path, CALLS, MY_MODEL)
    report = cost_report(open_engine(url), by="model")
    rows = {r.key: r for r in report.rows}
    assert [r.key for r in report.rows] == ["gpt-4o", "my-model", "unknown-x"]  # by cost, unpriced last
    assert rows["gpt-4o"].requests == 2
    assert rows["gpt-4o"].cost_usd == pytest.approx(COST_A + COST_B)
    assert rows["gpt-4o"].cost_per_request == pytest.approx((COST_A + COST_B) / 2)
    assert rows["gpt-4o"].cost_per_1k_tokens == pytest.approx((COST_A + COST_B) / 3300 * 1000)
    assert rows["unknown-x"].cost_usd is None
    assert rows["unknown-x"].unpriced_requests == 1
    assert rows["unknown-x"].cost_per_request is None
    total = report.total
    assert (total.requests, total.priced_requests) == (4, 3)
    assert total.cost_usd == pytest.approx(COST_A + COST_B + COST_C)
    # unpriced calls count neither as $0 nor in the per-1K denominator
    assert total.cost_per_1k_tokens == pytest.approx((COST_A + COST_B + COST_C) / 4300 * 1000)


def test_cost_report_by_user_tag_day_and_window(url: str, tmp_path: Path) -> None:
    record(url, tmp_path, CALLS, MY_MODEL)
    engine = open_engine(url)
    by_user = {r.key: r for r in cost_report(engine, by="user").rows}
    assert by_user["alice"].cost_usd == pytest.approx(COST_A + COST_C)
    assert by_user["bob"].cost_usd == pytest.approx(COST_B)
    assert by_user["bob"].requests == 2 and by_user["bob"].unpriced_requests == 1

    by_tag = {r.key: r for r in cost_report(engine, by="tag").rows}
    assert by_tag["prod"].cost_usd == pytest.approx(COST_A + COST_B)
    assert by_tag["rag"].cost_usd == pytest.approx(COST_B)
    assert by_tag["dev"].cost_usd == pytest.approx(COST_C)
    assert by_tag[None].requests == 1  # untagged

    by_day = cost_report(engine, by="day").rows
    assert [r.key for r in by_day] == ["2025-03-01", "2025-03-02"]
    assert by_day[0].cost_usd == pytest.approx(COST_A + COST_B)
    assert by_day[1].cost_usd == pytest.approx(COST_C)
    by_month = cost_report(engine, by="month").rows
    assert [(r.key, r.requests) for r in by_month] == [("2025-03", 4)]

    window = cost_report(engine, by="model", since_ns=ns(DAY2))
    assert {r.key for r in window.rows} == {"my-model", "unknown-x"}
    with pytest.raises(ValueError, match="cannot group"):
        cost_report(engine, by="colour")


def test_unpriced_models_are_listed(url: str, tmp_path: Path) -> None:
    record(url, tmp_path, CALLS, MY_MODEL)
    [row] = unpriced_models(open_engine(url))
    assert (row.model, row.calls, row.input_tokens, row.output_tokens) == ("unknown-x", 1, 10, 10)


def _trace_costs(url: str) -> dict[str, float | None]:
    with open_engine(url).connect() as conn:
        return dict(conn.execute(sa.text("SELECT trace_id, cost_usd FROM traces")).all())


def test_reprice_changes_span_costs_and_trace_totals(url: str, tmp_path: Path) -> None:
    traces = record(url, tmp_path, CALLS, MY_MODEL)
    before = _trace_costs(url)
    assert before[traces[2]] == pytest.approx(COST_C)
    assert before[traces[3]] is None

    table = pricing.table_from_config({"overrides": [
        {"model": "my-model", "input_per_1m": 10.0, "output_per_1m": 30.0},
        {"model": "unknown-x", "input_per_1k": 1.0, "output_per_1k": 1.0},
    ]})

    def price(call: PricedCall) -> float | None:
        found = table.lookup(call.model, call.provider)
        return None if found is None else found.cost(
            call.input_tokens, call.output_tokens, call.cached_tokens, call.reasoning_tokens)

    engine = open_engine(url)
    dry = reprice(engine, price, dry_run=True)
    assert (dry.checked, dry.changed, dry.traces) == (4, 2, 2)
    assert _trace_costs(url) == before

    result = reprice(engine, price, since_ns=ns(DAY2))
    assert (result.checked, result.changed) == (2, 2)
    assert result.models == {"my-model": 1, "unknown-x": 1}
    after = _trace_costs(url)
    assert after[traces[2]] == pytest.approx(10 * COST_C)
    assert after[traces[3]] == pytest.approx(0.02)
    assert after[traces[0]] == pytest.approx(COST_A)  # outside the window: untouched
    assert unpriced_models(engine) == []
    with engine.connect() as conn:
        unpriced = conn.execute(sa.text("SELECT SUM(unpriced_count) FROM traces")).scalar()
    assert unpriced == 0


def test_reprice_keeps_or_clears_costs_of_models_with_no_price(url: str, tmp_path: Path) -> None:
    traces = record(url, tmp_path, CALLS, MY_MODEL)
    engine = open_engine(url)
    table = PriceTable()  # my-model no longer has an override

    def price(call: PricedCall) -> float | None:
        found = table.lookup(call.model, call.provider)
        return None if found is None else found.cost(call.input_tokens, call.output_tokens)

    kept = reprice(engine, price)
    assert (kept.changed, kept.now_unpriced) == (0, 2)
    assert _trace_costs(url)[traces[2]] == pytest.approx(COST_C)
    cleared = reprice(engine, price, clear_unknown=True)
    assert cleared.changed == 1
    assert _trace_costs(url)[traces[2]] is None  # unpriced again, never $0


# ---- commands ----------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "plugins.toml"
    path.write_text(
        "[plugins.pricing]\n"
        'overrides = [{ model = "my-model", input_per_1m = 1.0, output_per_1m = 3.0 }]\n'
        'aliases = { "azure/my-deployment" = "gpt-4o" }\n'
    )
    return str(path)


def test_pricing_show(capsys: pytest.CaptureFixture[str], config: str) -> None:
    code, out, _ = run_cli(capsys, "pricing", "show", "openrouter/openai/gpt-4o", "--config", config)
    assert code == 0
    assert "table 'gpt-4o'" in out
    assert "$2.5 per 1M" in out and "$10 per 1M" in out and "$1.25 per 1M" in out

    code, out, _ = run_cli(capsys, "pricing", "show", "azure/my-deployment", "--json", "--config", config)
    doc = json.loads(out)
    assert (doc["source"], doc["key"], doc["alias"]) == ("table", "gpt-4o", "azure/my-deployment")

    code, out, _ = run_cli(capsys, "pricing", "show", "my-model", "--json", "--config", config)
    doc = json.loads(out)
    assert doc["source"] == "override"
    assert doc["per_1m"]["input"] == pytest.approx(1.0) and doc["per_1m"]["output"] == pytest.approx(3.0)

    code, _, err = run_cli(capsys, "pricing", "show", "no-such-model", "--config", config)
    assert code == 1 and "no price for 'no-such-model'" in err


def test_pricing_unpriced_cost_and_reprice_commands(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path, config: str
) -> None:
    record(url, tmp_path, CALLS, MY_MODEL)
    since = "2025-02-01"

    code, out, _ = run_cli(capsys, "pricing", "unpriced", "--db", url, "--json", "--config", config)
    assert code == 0
    assert [m["model"] for m in json.loads(out)["models"]] == ["unknown-x"]
    code, out, _ = run_cli(capsys, "pricing", "unpriced", "--db", url, "--config", config)
    assert "unknown-x" in out

    code, out, _ = run_cli(capsys, "cost", "--db", url, "--since", since, "--by", "user", "--json",
                           "--config", config)
    assert code == 0
    doc = json.loads(out)
    assert {r["key"]: r["cost_usd"] for r in doc["rows"]} == pytest.approx(
        {"alice": COST_A + COST_C, "bob": COST_B})
    code, out, _ = run_cli(capsys, "cost", "--db", url, "--since", since, "--config", config)
    assert code == 0 and "gpt-4o" in out and "TOTAL" in out

    code, _, err = run_cli(capsys, "reprice", "--db", url, "--config", config)
    assert code == 1 and "--since" in err

    path = Path(config)
    path.write_text(path.read_text().replace("input_per_1m = 1.0", "input_per_1m = 2.0"))
    code, out, _ = run_cli(capsys, "reprice", "--db", url, "--since", since, "--json",
                           "--config", config)
    assert code == 0
    doc = json.loads(out)
    assert doc["changed"] == 1 and doc["models"] == {"my-model": 1}
    code, out, _ = run_cli(capsys, "cost", "--db", url, "--since", since, "--json", "--config", config)
    rows = {r["key"]: r for r in json.loads(out)["rows"]}
    assert rows["my-model"]["cost_usd"] == pytest.approx(500 * 2e-6 + 500 * 3e-6)


def test_cost_by_tag_leaves_out_the_tags_langchain_adds(url: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A real chain tags its steps ``seq:step:N``; only the user's tags are groups."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate

    from chainsight.framework.adapters.langchain import CallbackHandler
    from chainsight.plugins.demo.models import StreamingDemoModel
    from chainsight.storage.cost import is_internal_tag

    obs = Observer(url, settings=Settings(), strict=True, entry_points=False,
                   builtins=[("pricing", "chainsight.plugins.pricing")], spill_path=tmp_path / "spill.jsonl")
    chain = (ChatPromptTemplate.from_messages([("human", "{q}")])
             | StreamingDemoModel(responses=["fine"], sleep=0, model_label="gpt-4o-mini")
             | StrOutputParser())
    try:
        chain.invoke({"q": "hi"}, config={"callbacks": [CallbackHandler(obs)], "tags": ["prod"]})
        assert obs.flush(10)
    finally:
        obs.shutdown()
    with open_engine(url).connect() as conn:
        stored = [t for (tags,) in conn.execute(sa.text("SELECT tags FROM spans WHERE kind = 'llm'"))
                  for t in (json.loads(tags) if isinstance(tags, str) else tags or [])]
    assert "seq:step:2" in stored  # what LangChain gives the model's run

    report = cost_report(open_engine(url), by="tag")
    assert [r.key for r in report.rows] == ["prod"]
    assert report.rows[0].cost_usd and report.rows[0].cost_usd > 0
    assert main(["cost", "--by", "tag", "--db", url]) == 0
    assert "seq:step" not in capsys.readouterr().out
    assert is_internal_tag("map:key:context") and is_internal_tag("graph:step:3")
    assert is_internal_tag("langsmith:hidden") and not is_internal_tag("seq:steps")
