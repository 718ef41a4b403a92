"""Offline stand-ins for real chat models: fake text, real names, real-looking usage.

They report ``ls_model_name``/``ls_provider`` the way real integrations do (so
pricing can price them) and attach ``usage_metadata`` to every answer, on the
final streamed chunk too (as OpenAI's ``stream_usage`` does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _prompt_tokens(messages: list[BaseMessage]) -> int:
    return sum(_tokens(str(m.content)) for m in messages)


def _usage(messages: list[BaseMessage], output_tokens: int) -> Any:
    prompt = _prompt_tokens(messages)
    return {"input_tokens": prompt, "output_tokens": output_tokens,
            "total_tokens": prompt + output_tokens}


def _named(params: dict[str, Any], model: str, provider: str) -> dict[str, Any]:
    params.update(ls_model_name=model, ls_provider=provider, ls_temperature=0.2, ls_max_tokens=512)
    return params


class _Labelled:
    """Reports ``model_label``/``provider_label`` (pydantic fields declared by
    each model) the way real integrations report their model."""

    model_label: str
    provider_label: str

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)  # type: ignore[misc]
        return _named(dict(params), self.model_label, self.provider_label)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model_label, "temperature": 0.2, "max_tokens": 512}


class StreamingDemoModel(_Labelled, FakeListChatModel):
    """Streams its answer one character per chunk, ``sleep`` seconds apart."""

    model_label: str = "gpt-4o-mini"
    provider_label: str = "openai"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        result = super()._generate(messages, stop, run_manager, **kwargs)
        message = result.generations[0].message
        message.usage_metadata = _usage(messages, _tokens(str(message.content)))  # type: ignore[attr-defined]
        return result

    def _final(self, messages: list[BaseMessage], count: int) -> ChatGenerationChunk:
        return ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=_usage(messages, count),
            response_metadata={"finish_reason": "stop", "model_name": self.model_label}))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        count = 0
        for chunk in super()._stream(messages, stop, run_manager, **kwargs):
            count += 1
            yield chunk
        yield self._final(messages, count)

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        count = 0
        async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
            count += 1
            yield chunk
        yield self._final(messages, count)


class ScriptedDemoModel(_Labelled, GenericFakeChatModel):
    """Replays scripted ``AIMessage``s (tool calls included) with usage set."""

    model_label: str = "gpt-4o"
    provider_label: str = "openai"
