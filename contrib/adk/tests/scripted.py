"""A scripted model: a real ``BaseLlm`` subclass that ADK's flow drives like Gemini, answering by rule, no network.

- a user message ``recall <query>`` is answered with a call of ADK's ``load_memory`` tool for ``<query>``;
- a ``load_memory`` response is answered with ``recalled: `` and the texts of the memories it holds;
- ``tool <text>`` calls the test's ``note`` tool; its response is answered with ``done``;
- anything else with ``noted: <the user's text>``.

Every request is kept (``requests``) with its whole text (``seen``), so a test can say what the model was shown.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import BaseModel, Field

PRELOAD = "The following content is from your previous conversations"


def _reply(parts: list[types.Part]) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=parts))


def _texts(value: Any) -> list[str]:
    """Every string inside a tool's response (memories come as nested dicts)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _texts(v)]
    if isinstance(value, BaseModel):
        return _texts(value.model_dump(exclude_none=True))
    return []


class ScriptedLlm(BaseLlm):
    model: str = "scripted"
    requests: list[LlmRequest] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(llm_request)
        system = str(llm_request.config.system_instruction or "") if llm_request.config else ""
        texts = [p.text for c in llm_request.contents for p in c.parts or () if p.text]
        self.seen.append("\n".join([system, *texts]))
        yield self._answer(llm_request)

    def _answer(self, request: LlmRequest) -> LlmResponse:
        # The latest user message (memory preloaded by preload_memory is not one) and what came after it.
        contents = request.contents
        start = max(
            (
                i
                for i, c in enumerate(contents)
                if c.role == "user" and any(p.text and not p.text.startswith(PRELOAD) for p in c.parts or ())
            ),
            default=0,
        )
        user_text = " ".join(p.text or "" for p in contents[start].parts or ()).strip()
        for content in contents[start + 1 :]:
            for part in content.parts or ():
                response = part.function_response
                if response is None:
                    continue
                if response.name == "load_memory":
                    return _reply([types.Part(text="recalled: " + " | ".join(_texts(response.response)))])
                return _reply([types.Part(text="done")])
        if user_text.startswith("recall "):
            call = types.Part.from_function_call(name="load_memory", args={"query": user_text[len("recall ") :]})
            return _reply([call])
        if user_text.startswith("tool "):
            return _reply([types.Part.from_function_call(name="note", args={"text": user_text[len("tool ") :]})])
        return _reply([types.Part(text="noted: " + user_text)])
