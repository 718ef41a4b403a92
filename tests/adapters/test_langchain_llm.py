"""LLM span details: model, provider, params, usage, tool calls, finish reason."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from langchain_core.language_models import FakeListLLM, GenericFakeChatModel
from langchain_core.messages import AIMessage

from chainsight.framework.adapters.langchain import CallbackHandler
from chainsight.framework.observer import Observer

sys.path.insert(0, str(Path(__file__).parent))
from langchain_helpers import trace_spans, tree


class NamedModel(GenericFakeChatModel):
    """A fake that reports model/provider/params the way real integrations do."""

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params: dict[str, Any] = dict(super()._get_ls_params(stop=stop, **kwargs))
        params.update(ls_provider="openai", ls_model_name="gpt-4o-mini",
                      ls_temperature=0.3, ls_max_tokens=256)
        return params


def test_usage_model_provider_params_tool_calls(lc_observer: Observer,
                                                handler: CallbackHandler) -> None:
    reply = AIMessage(
        content="calling the weather tool",
        tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call-1"}],
        usage_metadata={
            "input_tokens": 120, "output_tokens": 30, "total_tokens": 150,
            "input_token_details": {"cache_read": 100},
            "output_token_details": {"reasoning": 12},
        },
        response_metadata={"finish_reason": "tool_calls"},
    )
    model = NamedModel(messages=iter([reply]))
    run_id = uuid.uuid4()
    out = model.invoke("weather in Paris?", config={"callbacks": [handler], "run_id": run_id})
    assert out.tool_calls[0]["name"] == "weather"

    (span,) = trace_spans(lc_observer, run_id.hex)
    assert (span.name, span.kind, span.status) == ("NamedModel", "llm", "ok")
    assert (span.model, span.provider) == ("gpt-4o-mini", "openai")
    assert (span.input_tokens, span.output_tokens) == (120, 30)
    assert (span.cached_tokens, span.reasoning_tokens) == (100, 12)
    assert span.tokens_estimated is False
    attrs = span.attributes or {}
    assert (attrs["temperature"], attrs["max_tokens"]) == (0.3, 256)
    assert attrs["finish_reason"] == "tool_calls"
    assert attrs["tool_calls"][0]["args"] == {"city": "Paris"}
    assert span.inputs[0]["content"] == "weather in Paris?"
    assert span.outputs["content"] == "calling the weather tool"


def test_plain_llm_goes_through_on_llm_start(lc_observer: Observer,
                                             handler: CallbackHandler) -> None:
    run_id = uuid.uuid4()
    text = FakeListLLM(responses=["plain completion"]).invoke(
        "complete this", config={"callbacks": [handler], "run_id": run_id})
    assert text == "plain completion"
    spans = trace_spans(lc_observer, run_id.hex)
    assert tree(spans) == ("FakeListLLM", "llm", [])
    assert spans[0].inputs == "complete this" and spans[0].outputs == "plain completion"
    assert spans[0].tokens_estimated and spans[0].output_tokens == 4
