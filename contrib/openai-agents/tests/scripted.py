"""A scripted model: a real ``agents.models.interface.Model`` that the SDK's Runner drives like OpenAI's, answering
by rule, no network, streamed or not.

- ``recall <query>`` is answered with a call of ``recall_memory``; ``remember <text>`` with one of ``remember_memory``;
- a tool's output is answered with ``tool said: <output>``;
- anything else with ``noted: <the user's text>``.

Every call is kept (``calls``: system instructions and input), so a test can say what the model was shown.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from agents.items import ModelResponse, TResponseInputItem, TResponseOutputItem, TResponseStreamEvent
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or () if isinstance(p, dict))


class ScriptedModel(Model):
    def __init__(self) -> None:
        self.calls: list[tuple[str | None, list[TResponseInputItem]]] = []
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def _say(self, text: str) -> TResponseOutputItem:
        return ResponseOutputMessage(
            id=self._id("msg"),
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
        )

    def _call(self, name: str, **arguments: str) -> TResponseOutputItem:
        return ResponseFunctionToolCall(
            id=self._id("fc"),
            call_id=self._id("call"),
            type="function_call",
            name=name,
            arguments=json.dumps(arguments),
        )

    def _answer(self, system: str | None, input: str | list[TResponseInputItem]) -> list[TResponseOutputItem]:
        items: list[Any] = [{"role": "user", "content": input}] if isinstance(input, str) else list(input)
        self.calls.append((system, items))
        last = items[-1]
        if last.get("type") == "function_call_output":
            return [self._say(f"tool said: {last.get('output')}")]
        text = _text(last.get("content")).strip()
        if text.startswith("recall "):
            return [self._call("recall_memory", query=text[len("recall ") :])]
        if text.startswith("remember "):
            return [self._call("remember_memory", text=text[len("remember ") :], kind="preference")]
        return [self._say(f"noted: {text}")]

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        return ModelResponse(output=self._answer(system_instructions, input), usage=Usage(), response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: list[Any],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> AsyncIterator[TResponseStreamEvent]:
        response = Response(
            id=self._id("resp"),
            created_at=time.time(),
            model="scripted",
            object="response",
            output=self._answer(system_instructions, input),
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
        )
        yield ResponseCompletedEvent(type="response.completed", response=response, sequence_number=0)
