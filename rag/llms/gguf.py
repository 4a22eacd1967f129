"""``gguf:PATH``: a GGUF file through llama.cpp (``pip install 'ragtune[llamacpp]'``).

Also the default backend for the packaged SmolLM2 when ``llama_cpp`` is importable: about 3x
the tokens/s of transformers on CPU. The chat template is the one stored in the GGUF.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp

from rag.errors import LLMError, ModelNotFoundError
from rag.llms import BaseLLM, Completion, Message
from rag.llms.threads import cores, threads_for, threads_now

REMEASURE_S = 2.0  # how long a thread-count decision is reused (each measurement costs 0.15 s)
DEFAULT_N_CTX = 8192  # cap when neither the settings nor a smaller trained context says otherwise
_LIVE: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Freed at interpreter shutdown, Llama.__del__ runs after its own modules are gone and prints
    # a TypeError; closing while everything is still importable avoids that noise.
    for llm in list(_LIVE):
        llm.close()


def default_threads() -> int:
    """The count a model is loaded with: all cores but one (at least one), the safe fixed choice
    (see :mod:`rag.llms.threads`); with ``llm.threads`` unset each request then adapts it."""
    return threads_for(cores(), None)


class LlamaCppLLM(BaseLLM):
    """A GGUF model through llama-cpp-python, chat completion with streaming."""

    def __init__(self, rest: str, settings: Any):
        super().__init__(settings)
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: '{rest}' (expected gguf:PATH/TO/MODEL.gguf)")
        self.name = "gguf:" + rest
        self.path = path
        # llm.threads unset: adapt per request to what other processes leave free (rag.llms.threads)
        self.auto_threads = not settings.llm.threads
        threads = int(settings.llm.threads or default_threads())
        self.threads = threads  # what the last (or next) generation uses
        self._measured_at = -REMEASURE_S
        n_ctx = int(settings.llm.context_window or 0)
        try:
            # llama.cpp prints its load log to stderr at C level even with verbose=False on some
            # builds; keep ours quiet at the Python level at least.
            with contextlib.redirect_stderr(io.StringIO()):
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx or DEFAULT_N_CTX,
                                           n_threads=threads, n_threads_batch=threads, verbose=False)
        except (ValueError, RuntimeError) as e:
            raise LLMError(f"llama.cpp could not load '{path}': {e}") from e
        meta = getattr(self.llm, "metadata", {}) or {}
        self.family = str(meta.get("general.architecture", ""))  # picks the chain's answer style
        trained = next((int(v) for k, v in meta.items() if k.endswith(".context_length")), DEFAULT_N_CTX)
        if not n_ctx and trained < self.llm.n_ctx():  # never promise more than the model saw
            with contextlib.redirect_stderr(io.StringIO()):
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=trained, n_threads=threads,
                                           n_threads_batch=threads, verbose=False)
        self.context_window = int(self.llm.n_ctx())
        self._lock = threading.Lock()  # a Llama object must not decode from two threads at once
        _LIVE.add(self)

    def close(self) -> None:
        """Free the model now (also done at exit)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _kwargs(self, opts: dict[str, Any]) -> dict[str, Any]:
        o = self.gen_options(opts)
        kw: dict[str, Any] = {"max_tokens": int(o["max_new_tokens"]), "temperature": float(o["temperature"]),
                              "top_p": float(o["top_p"]), "repeat_penalty": float(o["repeat_penalty"])}
        if float(o["temperature"]) <= 0:
            kw.update(temperature=0.0, top_k=1)  # greedy
        if o.get("stop"):
            kw["stop"] = [o["stop"]] if isinstance(o["stop"], str) else list(o["stop"])
        return kw

    def _adapt_threads(self) -> None:
        """Before a generation (lock held): take the cores other processes leave free now. Requests
        in quick succession (an eval, a busy server) reuse a decision up to REMEASURE_S old."""
        if not self.auto_threads or self.llm is None or time.monotonic() - self._measured_at < REMEASURE_S:
            return
        n = threads_now()
        self._measured_at = time.monotonic()
        if n != self.threads:
            llama_cpp.llama_set_n_threads(self.llm.ctx, n, n)
            self.threads = n

    def generate(self, messages: list[Message], **opts: Any) -> str:
        with self._lock:
            self._adapt_threads()
            try:
                out = self.llm.create_chat_completion(messages=messages, stream=False, **self._kwargs(opts))
            except (ValueError, RuntimeError) as e:
                raise LLMError(f"{self.name}: generation failed: {e}") from e
        choice = out["choices"][0]
        return Completion((choice["message"].get("content") or "").strip(), choice.get("finish_reason"))

    def stream(self, messages: list[Message], **opts: Any) -> Iterator[str]:
        reason = None
        with self._lock:
            self._adapt_threads()
            try:
                chunks = self.llm.create_chat_completion(messages=messages, stream=True, **self._kwargs(opts))
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    reason = choice.get("finish_reason") or reason  # set on the last chunk only
                    piece = choice.get("delta", {}).get("content")
                    if piece:
                        yield piece
            except (ValueError, RuntimeError) as e:
                raise LLMError(f"{self.name}: generation failed: {e}") from e
        return reason
