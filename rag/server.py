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
                                       question, earlier turns are history; ``sources`` is added, and
                                       the ``X-Ragtune-Sources`` header (see docs/http.md)
=====================================  ===========================================================

Bodies are checked by the models in rag/server_models.py: a bad one gets a 4xx whose ``detail``
names the field (under ``/v1/`` also OpenAI's ``error`` object), never a 500.

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
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import ConfigError, DataError, LLMError, ModelNotFoundError, RagtuneError, StoreError, redact
from rag.server_models import AskIn, ChatIn, ErrorOut, IngestIn, text_of

MODEL_NAME = "ragtune"
SOURCES_HEADER = "X-Ragtune-Sources"
SOURCES_HEADER_BYTES = 4096  # proxies refuse larger header blocks (nginx buffers 4-8 KiB by default)
_INVALID = {422: {"model": ErrorOut, "description": "Invalid field: `detail` names it"}}  # not FastAPI's list


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


_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]-]*): ")


class _AsciiJSON(JSONResponse):
    """Error replies: ASCII-escaped, so a message quoting odd input can always be encoded."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, default=str).encode("ascii")


def _error(request: Request, status: int, message: str, *, kind: str | None = None,
           headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """``{"detail": message}`` (plus ``type`` for ragtune errors); under ``/v1/`` also OpenAI's
    ``{"error": {"message", "type", "param", "code"}}``, which the openai client reads into
    ``e.message``, ``e.param`` and ``e.type``."""
    body: dict[str, Any] = {"detail": message, **({"type": kind} if kind else {}), **extra}
    if request.url.path.startswith("/v1/"):
        field = _FIELD.match(message)
        body["error"] = {"message": message, "param": field.group(1) if field else None, "code": None,
                         "type": "invalid_request_error" if status < 500 else (kind or "server_error")}
    return _AsciiJSON(body, status_code=status, headers=headers)


def _field_message(err: dict[str, Any]) -> str:
    """One pydantic error as ``field: what is wrong`` (``metadatas[0].page: ...``)."""
    loc = list(err.get("loc") or [])
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "json_invalid":
        return f"body: not valid JSON ({(err.get('ctx') or {}).get('error', 'parse error')}) at character " \
               f"{loc[0] if loc else '?'}"
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if _FIELD.match(msg) and (not field or msg.startswith(field)):  # our validators name the field
        return msg
    return f"{field or 'body'}: {msg}"


def _usage(a: Any) -> dict[str, int]:
    prompt, completion = a.tokens.get("prompt", 0), a.tokens.get("completion", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sources_header(sources: list[Any], *, final: bool) -> dict[str, str]:
    """The passages as one ASCII JSON header, for clients that only surface headers (LangChain's
    ``ChatOpenAI(include_response_headers=True)`` puts them in ``response_metadata["headers"]``).

    Without passage text, and cut to the first passages that fit ``SOURCES_HEADER_BYTES``: the
    body carries the full list. ``cited``/``implicit`` only when ``final`` (a stream's headers
    leave before the answer exists).
    """
    items: list[dict[str, Any]] = []
    size = 2
    for s in sources:
        item = {"n": s.n, "source": s.source if len(s.source) <= 300 else s.source[:300] + "...",
                "page": s.page, "score": round(s.score, 6), "id": s.id}
        if final:
            item.update(cited=s.cited, implicit=s.implicit)
        cost = len(json.dumps(item)) + 1
        if size + cost > SOURCES_HEADER_BYTES:
            break
        items.append(item)
        size += cost
    return {SOURCES_HEADER: json.dumps(items, separators=(",", ":"))}


_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_line(data: Any) -> str:
    """JSON on one line for every reader: ``str.splitlines`` (and so ``httpx``'s ``iter_lines``)
    also breaks on U+0085/U+2028/U+2029, which ``json.dumps`` leaves raw inside strings."""
    text = json.dumps(data, ensure_ascii=False)
    for raw, escaped in _LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {_json_line(data)}\n\n"


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
        return _error(request, _status(e), redact(str(e)), kind=type(e).__name__)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        # FastAPI's own reply echoes the input, and cannot encode a NaN or a lone surrogate in it
        # (a 500); ours names each field and says what is accepted, without the input.
        errors = [{"loc": list(err.get("loc") or []), "msg": _field_message(err), "type": err.get("type")}
                  for err in e.errors()]
        return _error(request, 422, "; ".join(err["msg"] for err in errors), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return _error(request, e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "llm": settings.llm.spec or "default (the best installed model: python -m rag models list)",
                "store": redact(settings.store_uri), "embedder": settings.embedder}

    def _gen(body: AskIn | ChatIn) -> dict[str, Any]:
        gen = {"temperature": body.temperature}
        if isinstance(body, AskIn):
            gen["max_new_tokens"] = body.max_new_tokens
        else:
            gen.update(max_new_tokens=body.max_completion_tokens or body.max_tokens, top_p=body.top_p,
                       stop=body.stop)
        return {k: v for k, v in gen.items() if v is not None}

    @app.post("/ask", responses=_INVALID)
    def ask(body: AskIn):
        flt = body.filter.model_dump(exclude_none=True) if body.filter else None
        history = [{"role": t.role, "content": text_of(t.content)} for t in body.history or []]
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

    def _inside_root(raw: str, i: int) -> Path:
        try:
            p = Path(raw).expanduser()
            resolved = (p if p.is_absolute() else root / p).resolve()
            inside, exists = resolved.is_relative_to(root), resolved.exists()
        except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: a symlink loop
            why = getattr(e, "strerror", None) or e
            raise HTTPException(400, f"paths[{i}]: not a usable path ({why})") from e
        if not inside:
            raise HTTPException(403, f"paths[{i}]: '{raw}' is outside the ingest root")
        if not exists:
            raise HTTPException(404, f"paths[{i}]: '{raw}' does not exist")
        return resolved

    def _summary(result: Any) -> Any:
        return result.summary() if hasattr(result, "summary") else result

    @app.post("/ingest", responses=_INVALID)
    def ingest(body: IngestIn):
        out: dict[str, Any] = {}
        if body.paths:
            paths = [_inside_root(p, i) for i, p in enumerate(body.paths)]  # check all before ingesting any
            with lock:
                out = dict(_summary(rag.ingest(paths)))
        if body.texts:
            with lock:
                ids = rag.add_texts(body.texts, metadatas=body.metadatas)
            out["texts"] = len(body.texts)
            out["chunk_ids"] = ids
        return out

    @app.post("/ingest/upload", responses=_INVALID)
    async def upload(request: Request, filename: str):
        name = Path(filename.replace("\\", "/")).name
        if not name or name.startswith(".") or not re.fullmatch(r"[\w.\- ()]{1,200}", name):
            raise HTTPException(400, f"filename: '{filename[:200]}' is not a usable file name (letters, "
                                     "digits, '.', '-', '_' only; at most 200 characters)")
        data = await request.body()
        if not data:
            raise HTTPException(422, "body: empty upload; send the file's bytes as the request body")
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

    @app.post("/v1/chat/completions", responses=_INVALID)
    def chat_completions(body: ChatIn):
        if body.n is not None and body.n > 1:
            # one answer per question: n identical (greedy) choices would only look like a choice
            raise HTTPException(400, f"n: only n=1 is supported (got {body.n}); send separate requests "
                                     "for more answers")
        turns = body.turns()  # the validator checked that the last one is a non-blank user message
        question, history = turns[-1]["content"], turns[:-1]
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), body.model or MODEL_NAME
        gen = _gen(body)
        if not body.stream:
            with lock:
                a = rag.ask(question, history=history or None, **gen)
            return JSONResponse(
                {"id": cid, "object": "chat.completion", "created": created, "model": model,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text},
                              "finish_reason": a.finish_reason}],
                 "usage": _usage(a), "sources": a.to_dict()["sources"], "citations": a.citations,
                 "flags": a.flags},
                headers=_sources_header(a.sources, final=True))
        with lock:
            streaming = rag.stream(question, history=history or None, **gen)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
            # OpenAI: with include_usage every chunk has "usage": null, then one last chunk holds
            # the usage and no choices
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": choices, **({"usage": None} if include_usage else {}), **extra}
            return _sse(payload)

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                for piece in streaming:
                    yield chunk({"content": piece})
                a = streaming.answer
                yield chunk({}, a.finish_reason, sources=a.to_dict()["sources"], citations=a.citations,
                            flags=a.flags)
                if include_usage:
                    yield chunk(None, usage=_usage(a))
            except RagtuneError as e:
                error = {"message": redact(str(e)), "type": type(e).__name__}
                yield _sse({"error": error})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers=_sources_header(streaming.sources, final=False))

    return app
