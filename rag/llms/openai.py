"""``openai:MODEL``: any OpenAI-compatible chat API (``pip install 'ragtune[openai]'``).

``OPENAI_BASE_URL`` points it at vLLM, Ollama, llama.cpp's server or a hosted provider;
``OPENAI_API_KEY`` is read from the environment only and never appears in a message. Each call
has ``settings.llm.timeout_s`` and is retried ``settings.llm.max_retries`` times with exponential
backoff (the SDK's own retry loop: connection errors, 408, 409, 429 and 5xx).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import openai

from rag.errors import LLMError, redact
from rag.llms import BaseLLM, Completion, Message

# Context windows of well-known hosted models (prefix match); anything else: settings or 8192.
KNOWN_WINDOWS = {"gpt-4.1": 1_000_000, "gpt-4o": 128_000, "gpt-4-turbo": 128_000, "gpt-5": 272_000,
                 "o1": 200_000, "o3": 200_000, "o4": 200_000, "gpt-3.5-turbo": 16_385}
DEFAULT_WINDOW = 8192
FAMILY_BY_NAME = {"qwen2": "qwen2"}   # served-model-name prefix -> architecture
NO_KEY = "sk-no-key-needed"  # local servers (llama.cpp, vLLM, Ollama) accept any key


class OpenAILLM(BaseLLM):
    """Chat completions over HTTP with timeout, retries and clear errors."""

    def __init__(self, rest: str, settings: Any, env: Mapping[str, str] | None = None):
        super().__init__(settings)
        env = os.environ if env is None else env
        if not rest.strip():
            raise LLMError("openai: no model given (expected openai:MODEL, e.g. openai:gpt-4o-mini)")
        self.model = rest.strip()
        self.name = "openai:" + self.model
        self.base_url = env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = env.get("OPENAI_API_KEY")
        if not key and not env.get("OPENAI_BASE_URL"):
            raise LLMError("openai: OPENAI_API_KEY is not set (or set OPENAI_BASE_URL to a local "
                           "OpenAI-compatible server)")
        self._key = key or NO_KEY
        self.client = openai.OpenAI(api_key=self._key, base_url=self.base_url,
                                    timeout=float(settings.llm.timeout_s),
                                    max_retries=int(settings.llm.max_retries))
        window = settings.llm.context_window
        if not window:
            window = next((w for p, w in KNOWN_WINDOWS.items() if self.model.startswith(p)), DEFAULT_WINDOW)
        self.context_window = int(window)
        # The chain's per-family answer style (rag/chain.py ANSWER_STYLE) by the served model's name:
        # a server hosting a Qwen2 model (e.g. llama.cpp's `--model_alias qwen2.5-coder-1.5b`) gets
        # the line measured for Qwen2; any other model keeps the shared prompt.
        self.family = next((f for p, f in FAMILY_BY_NAME.items() if self.model.lower().startswith(p)), "")

    def count_tokens(self, text: str) -> int:
        # No tokenizer for a remote model: a cautious estimate (~3.5 characters a token for
        # English; a little over rather than under, so packed prompts never overflow).
        return math.ceil(len(text.encode("utf-8")) / 3.5)

    def _kwargs(self, opts: dict[str, Any]) -> dict[str, Any]:
        o = self.gen_options(opts)
        kw: dict[str, Any] = {"model": self.model, "max_tokens": int(o["max_new_tokens"]),
                              "temperature": float(o["temperature"])}
        if float(o["temperature"]) > 0 and float(o["top_p"]) < 1:
            kw["top_p"] = float(o["top_p"])
        if o.get("stop"):
            kw["stop"] = o["stop"]
        return kw

    def _error(self, e: Exception) -> LLMError:
        """Map SDK errors to one clear message that never holds the key."""
        where = redact(self.base_url)
        if isinstance(e, openai.AuthenticationError):
            msg = f"authentication failed (401) at {where}: check OPENAI_API_KEY"
        elif isinstance(e, openai.PermissionDeniedError):
            msg = f"permission denied (403) for model '{self.model}' at {where}"
        elif isinstance(e, openai.NotFoundError):
            msg = f"model '{self.model}' not found (404) at {where}: check the model name and OPENAI_BASE_URL"
        elif isinstance(e, openai.RateLimitError):
            msg = (f"rate limited or out of quota (429) at {where} after {self.client.max_retries} "
                   "retries: wait, lower the request rate, or check the account's quota")
        elif isinstance(e, openai.APITimeoutError):
            msg = f"no answer from {where} within {self.client.timeout}s (after retries)"
        elif isinstance(e, openai.APIConnectionError):
            msg = f"cannot connect to {where}: is the server running and OPENAI_BASE_URL right?"
        elif isinstance(e, openai.APIStatusError):
            detail = str(getattr(e, "message", "") or "")[:300]
            msg = f"server error {e.status_code} from {where}: {detail}"
        else:
            msg = f"request to {where} failed: {str(e)[:300]}"
        return LLMError("openai: " + self._scrub(msg))

    def _scrub(self, text: str) -> str:
        text = redact(text)
        if self._key and self._key != NO_KEY:
            text = text.replace(self._key, "***")
        return text

    def generate(self, messages: list[Message], **opts: Any) -> str:
        try:
            resp = self.client.chat.completions.create(messages=messages, **self._kwargs(opts))
        except openai.OpenAIError as e:
            raise self._error(e) from None  # the SDK's exception text may quote the key
        if not resp.choices:
            raise LLMError(f"openai: empty response from {redact(self.base_url)}")
        return Completion((resp.choices[0].message.content or "").strip(), resp.choices[0].finish_reason)

    def stream(self, messages: list[Message], **opts: Any) -> Iterator[str]:
        reason = None
        try:
            chunks = self.client.chat.completions.create(messages=messages, stream=True, **self._kwargs(opts))
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].finish_reason:
                    reason = chunk.choices[0].finish_reason
                if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as e:
            raise self._error(e) from None
        return reason
