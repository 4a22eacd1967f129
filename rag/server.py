"""The HTTP API: one :class:`rag.api.RAG` behind REST and OpenAI-compatible endpoints.

=====================================  ===========================================================
``GET /health``                        liveness + what is configured (no model is loaded)
``POST /ask``                          ``{"question", "k"?, "mode"?, "filter"?, "history"?, "stream"?}``
                                       -> ``Answer.to_dict()``; ``stream: true`` -> server-sent events
``POST /ingest``                       ``{"paths": [...]}`` inside the ingest root (traversal -> 403),
                                       or ``{"texts": [...], "metadatas"?: [...]}``
``POST /ingest/upload?filename=NAME``  the raw file as the body; saved under DATA_DIR/uploads, ingested
``GET /v1/models``                     one model, ``ragtune``
``POST /v1/chat/completions``          OpenAI chat format, stream or not; the last user message is the
                                       question, earlier turns are history; ``sources`` is added
=====================================  ===========================================================

Bodies over ``settings.server.max_request_bytes`` get 413 before any handler runs. Requests are
served from a thread pool: retrieval and store writes are serialised by one lock, and each LLM
backend serialises its own generation, so one RAG instance is shared safely.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from rag.errors import ConfigError, DataError, LLMError, ModelNotFoundError, RagtuneError, StoreError, redact

MODEL_NAME = "ragtune"


class FilterIn(BaseModel):
    source: str | list[str] | None = None
    page_min: int | None = None
    page_max: int | None = None


class Turn(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = ""


class AskIn(BaseModel):
    question: str = Field(min_length=1)
    k: int | None = Field(None, gt=0, le=100)
    mode: Literal["dense", "bm25", "hybrid", "mmr"] | None = None
    filter: FilterIn | None = None
    history: list[Turn] | None = None
    stream: bool = False
    max_new_tokens: int | None = Field(None, gt=0, le=8192)
    temperature: float | None = Field(None, ge=0, le=2)


class IngestIn(BaseModel):
    paths: list[str] | None = None
    texts: list[str] | None = None
    metadatas: list[dict[str, Any]] | None = None


class ChatIn(BaseModel):
    model: str | None = None
    messages: list[Turn] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0, le=8192)
    max_completion_tokens: int | None = Field(None, gt=0, le=8192)
    stop: str | list[str] | None = None


class _BodyLimit:
    """ASGI middleware: buffer the body up to ``limit`` bytes; more -> 413 before the app runs."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        chunks, size, more = [], 0, True
        while more:  # chunked bodies carry no length: count as we read
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._too_large(send)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send):
        payload = json.dumps({"detail": f"request body larger than {self.limit} bytes "
                                        "(raise server.max_request_bytes to allow)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def _status(e: RagtuneError) -> int:
    if isinstance(e, (ConfigError, DataError)):
        return 400
    if isinstance(e, ModelNotFoundError):
        return 404
    if isinstance(e, LLMError):
        return 502
    if isinstance(e, StoreError):
        return 503
    return 500


def _text(content: Any) -> str:
    """OpenAI content: a string or a list of parts; only text parts count."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(rag: Any, *, ingest_root: str | Path | None = None) -> FastAPI:
    """The FastAPI app serving one RAG instance.

    Args:
        rag: a :class:`rag.api.RAG` (its settings give the body limit).
        ingest_root: ``POST /ingest`` paths must resolve inside this folder (default: the current
            folder at start-up). Uploads are written under ``DATA_DIR/uploads``.
    """
    settings = rag.settings
    root = Path(ingest_root or Path.cwd()).resolve()
    uploads = Path(settings.data_dir).resolve() / "uploads"
    lock = threading.Lock()  # retrieval, store writes and non-streamed answers, one at a time

    app = FastAPI(title="ragtune", version="0.1.0",
                  description="Ask questions over your documents; OpenAI-compatible chat endpoint.")
    app.add_middleware(_BodyLimit, limit=int(settings.server.max_request_bytes))
    app.state.rag = rag

    @app.exception_handler(RagtuneError)
    async def _ragtune_error(request: Request, e: RagtuneError):
        return JSONResponse({"detail": redact(str(e)), "type": type(e).__name__}, status_code=_status(e))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "llm": settings.llm.spec or "default (packaged SmolLM2)",
                "store": redact(settings.store_uri), "embedder": settings.embedder}

    def _gen(body: AskIn | ChatIn) -> dict[str, Any]:
        gen = {"temperature": body.temperature}
        if isinstance(body, AskIn):
            gen["max_new_tokens"] = body.max_new_tokens
        else:
            gen.update(max_new_tokens=body.max_completion_tokens or body.max_tokens, top_p=body.top_p,
                       stop=body.stop)
        return {k: v for k, v in gen.items() if v is not None}

    @app.post("/ask")
    def ask(body: AskIn):
        flt = body.filter.model_dump(exclude_none=True) if body.filter else None
        history = [{"role": t.role, "content": _text(t.content)} for t in body.history or []]
        kw = dict(k=body.k, mode=body.mode, filter=flt or None, history=history or None, **_gen(body))
        if not body.stream:
            with lock:
                return rag.ask(body.question, **kw).to_dict()
        with lock:  # retrieval now; generation below runs under the LLM's own lock
            streaming = rag.stream(body.question, **kw)

        def events() -> Iterator[str]:
            try:
                for piece in streaming:
                    yield _sse({"text": piece}, "token")
                yield _sse(streaming.answer.to_dict(), "answer")
            except RagtuneError as e:
                yield _sse({"detail": redact(str(e)), "type": type(e).__name__}, "error")

        return StreamingResponse(events(), media_type="text/event-stream")

    def _inside_root(raw: str) -> Path:
        p = Path(raw).expanduser()
        resolved = (p if p.is_absolute() else root / p).resolve()
        if not resolved.is_relative_to(root):
            raise HTTPException(403, f"path '{raw}' is outside the ingest root")
        if not resolved.exists():
            raise HTTPException(404, f"path '{raw}' does not exist")
        return resolved

    def _summary(result: Any) -> Any:
        return result.summary() if hasattr(result, "summary") else result

    @app.post("/ingest")
    def ingest(body: IngestIn):
        if not body.paths and not body.texts:
            raise HTTPException(422, "give 'paths' (inside the ingest root) or 'texts'")
        out: dict[str, Any] = {}
        if body.paths:
            paths = [_inside_root(p) for p in body.paths]  # check all before ingesting any
            with lock:
                out = dict(_summary(rag.ingest(paths)))
        if body.texts:
            if body.metadatas is not None and len(body.metadatas) != len(body.texts):
                raise HTTPException(422, f"{len(body.texts)} texts but {len(body.metadatas)} metadatas")
            with lock:
                ids = rag.add_texts(body.texts, metadatas=body.metadatas)
            out["texts"] = len(body.texts)
            out["chunk_ids"] = ids
        return out

    @app.post("/ingest/upload")
    async def upload(request: Request, filename: str):
        name = Path(filename.replace("\\", "/")).name
        if not name or name.startswith(".") or not re.fullmatch(r"[\w.\- ()]{1,200}", name):
            raise HTTPException(400, f"bad file name '{filename[:200]}' (letters, digits, '.', '-', '_' only; "
                                     "at most 200 characters)")
        data = await request.body()
        if not data:
            raise HTTPException(422, "empty upload")
        uploads.mkdir(parents=True, exist_ok=True)
        target = uploads / name
        target.write_bytes(data)

        def work():
            with lock:
                return _summary(rag.ingest([target]))

        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(work)
        return {"file": name, **dict(result)}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0,
                                            "owned_by": "ragtune"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatIn):
        turns = [{"role": t.role, "content": _text(t.content)} for t in body.messages]
        # system messages from the client cannot replace the chain's fixed system prompt
        turns = [t for t in turns if t["role"] in ("user", "assistant")]
        if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
            raise HTTPException(422, "the last message must be a non-empty user message")
        question, history = turns[-1]["content"], turns[:-1]
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), body.model or MODEL_NAME
        gen = _gen(body)
        if not body.stream:
            with lock:
                a = rag.ask(question, history=history or None, **gen)
            return {"id": cid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": a.tokens.get("prompt", 0),
                              "completion_tokens": a.tokens.get("completion", 0),
                              "total_tokens": a.tokens.get("prompt", 0) + a.tokens.get("completion", 0)},
                    "sources": a.to_dict()["sources"], "citations": a.citations, "flags": a.flags}
        with lock:
            streaming = rag.stream(question, history=history or None, **gen)

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return "data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                                          "model": model, "choices": [{"index": 0, "delta": delta,
                                                                       "finish_reason": finish}], **extra},
                                         ensure_ascii=False) + "\n\n"

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                for piece in streaming:
                    yield chunk({"content": piece})
                a = streaming.answer
                yield chunk({}, "stop", sources=a.to_dict()["sources"], citations=a.citations, flags=a.flags)
            except RagtuneError as e:
                yield "data: " + json.dumps({"error": {"message": redact(str(e)), "type": type(e).__name__}}) \
                    + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app
