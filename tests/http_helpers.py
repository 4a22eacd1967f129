"""Shared by the HTTP API tests: a fake LLM and a real uvicorn server in a thread.

``EchoLLM`` is a fake for the transport and the chain's plumbing only (the real models take
seconds an answer on a CPU; they are tested in tests/integration/test_llm_backends.py,
test_finish_reason.py and test_openai_clients.py): words are tokens, and it repeats the prompt's
last message after "As passage [1] says:", cut to ``max_new_tokens`` words, reporting why it
stopped (``"length"`` or ``"stop"``) the way the real backends do. Register it with
``rag.llms.register("echo", EchoLLM)`` and open it as ``llm="echo:"``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from rag.llms import BaseLLM, Completion


class EchoLLM(BaseLLM):
    context_window = 512

    def __init__(self, rest: str = "", settings=None):
        super().__init__(settings)
        self.name = "echo:" + rest

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, **opts) -> str:
        limit = int(self.gen_options(opts)["max_new_tokens"])
        words = ("As passage [1] says: " + messages[-1]["content"]).split()
        return Completion(" ".join(words[:limit]), "length" if len(words) > limit else "stop")

    def stream(self, messages, **opts) -> Iterator[str]:
        text = self.generate(messages, **opts)
        for i, word in enumerate(text.split(" ")):
            yield word if i == 0 else " " + word
        return text.finish_reason


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY: see serve._listen
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
