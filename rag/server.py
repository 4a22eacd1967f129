"""The HTTP API: one :class:`rag.api.RAG` behind REST and OpenAI-compatible endpoints.

=====================================  ===========================================================
``GET /health``                        liveness + what is configured (no model is loaded)
``POST /ask``                          ``{"question", "k"?, "mode"?, "filter"?, "history"?, "stream"?,
                                       "collections"?}`` -> ``Answer.to_dict()``; ``stream: true`` ->
                                       server-sent events
``POST /retrieve``                     ``{"question", "k"?, "mode"?, "filter"?, "collections"?}`` -> hits
``GET /stats``, ``GET /collections``   what the index holds, within the caller's collections
``POST /ingest``                       ``{"paths": [...]}`` inside an ingest root (traversal -> 403; admin
                                       only with auth), or ``{"texts": [...], "metadatas"?: [...]}``;
                                       ``"collection"?`` to write into
``POST /ingest/upload?filename=NAME``  the raw file as the body (``&collection=C``); saved under
                                       DATA_DIR/uploads, ingested
``GET|POST /keys``, ``DELETE /keys/N``  key management, admins only, with authentication on
``GET /v1/models``                     one model, ``ragtune``
``POST /v1/chat/completions``          OpenAI chat format, stream or not; the last user message is the
                                       question, earlier turns are history; ``sources`` is added, and
                                       the ``X-Ragtune-Sources`` header (see docs/http.md)
=====================================  ===========================================================

Bodies are checked by the models in rag/server_models.py: a bad one gets a 4xx whose ``detail``
names the field (under ``/v1/`` also OpenAI's ``error`` object), never a 500.

With authentication on (rag/server_auth.py) every route but ``/health`` needs a key, and each
route reads and writes only the collections the key is granted (rag/access.py): naming another
one is 403. Bodies over ``settings.server.max_request_bytes`` get 413 before any handler runs. Requests are
served from a thread pool: retrieval and store writes are serialised by one lock, and each LLM
backend serialises its own generation, so one RAG instance is shared safely.
"""

from __future__ import annotations

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

from rag.access import ANONYMOUS, Principal, require_admin, resolve, write_target
from rag.errors import RagtuneError, redact
from rag.keys import KeyStore, redact_keys
from rag.server_auth import AuthGate, note, principal_of
from rag.server_http import BodyLimit, error_reply, field_message, sources_header, sse, status_of, usage
from rag.server_keys import add_key_routes
from rag.server_models import AskIn, ChatIn, ErrorOut, IngestIn, RetrieveIn, text_of

MODEL_NAME = "ragtune"
_INVALID = {422: {"model": ErrorOut, "description": "Invalid field: `detail` names it"}}  # not FastAPI's list


def create_app(rag: Any, *, ingest_root: str | Path | list[str | Path] | None = None, auth: str = "auto") -> FastAPI:
    """The FastAPI app serving one RAG instance.

    Args:
        rag: a :class:`rag.api.RAG` (its settings give the body limit, keys, limits and audit).
        ingest_root: ``POST /ingest`` paths must resolve inside this folder (or one of these);
            default ``server.ingest_roots``, else, with authentication off, the current folder at
            start-up. Uploads are written under ``DATA_DIR/uploads``.
        auth: ``"auto"`` (on once a key exists in the data directory), ``"on"``, or ``"off"``.
    """
    settings = rag.settings
    given = ingest_root if isinstance(ingest_root, list) else [ingest_root] if ingest_root else []
    configured = [Path(p).expanduser().resolve() for p in given or settings.server.ingest_roots]
    cwd = Path.cwd().resolve()
    uploads = Path(settings.data_dir).resolve() / "uploads"
    lock = threading.Lock()  # retrieval, store writes and non-streamed answers, one at a time

    app = FastAPI(title="ragtune", version="0.1.0",
                  description="Ask questions over your documents; OpenAI-compatible chat endpoint.")
    app.add_middleware(BodyLimit, limit=int(settings.server.max_request_bytes))
    mode = "on" if auth == "on" or settings.auth.required else auth
    app.add_middleware(AuthGate, keys=KeyStore(settings.data_dir), settings=settings, mode=mode)  # outermost
    add_key_routes(app, KeyStore(settings.data_dir))  # GET/POST /keys, DELETE /keys/{name}
    app.state.rag = rag

    @app.exception_handler(RagtuneError)
    async def _ragtune_error(request: Request, e: RagtuneError):
        return error_reply(request, status_of(e), redact(str(e)), kind=type(e).__name__)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        # FastAPI's own reply echoes the input, and cannot encode a NaN or a lone surrogate in it
        # (a 500); ours names each field and says what is accepted, without the input.
        errors = [{"loc": list(err.get("loc") or []), "msg": field_message(err), "type": err.get("type")}
                  for err in e.errors()]
        return error_reply(request, 422, "; ".join(err["msg"] for err in errors), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        return error_reply(request, e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        if request.scope.get("ragtune.principal") is not ANONYMOUS:  # auth on: say nothing about the setup
            return {"status": "ok", "auth": True}
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

    def _scope(request: Request, body: Any, question: str) -> tuple[Principal, dict[str, Any]]:
        """The caller and the ``collections`` keyword for the RAG call: what the body names
        (top level and inside ``filter``), checked against the key's grant (403 otherwise)."""
        who = principal_of(request.scope)
        flt = getattr(body, "filter", None)
        cols = resolve(who, body.collections, flt.collections if flt else None)
        note(request.scope, collections=cols if cols is not None else ["*"], question=question)
        return who, ({} if cols is None else {"collections": cols})

    def _filter(body: AskIn | RetrieveIn) -> dict[str, Any] | None:
        return body.filter.model_dump(exclude_none=True, exclude={"collections"}) or None if body.filter else None

    def _returned(request: Request, ids: list[str]) -> None:
        note(request.scope, sources=ids)

    @app.post("/ask", responses=_INVALID)
    def ask(body: AskIn, request: Request):
        _, scoped = _scope(request, body, body.question)
        history = [{"role": t.role, "content": text_of(t.content)} for t in body.history or []]
        kw = dict(k=body.k, mode=body.mode, filter=_filter(body), history=history or None, **_gen(body), **scoped)
        if not body.stream:
            with lock:
                a = rag.ask(body.question, **kw)
            _returned(request, [s.id for s in a.sources])
            return a.to_dict()
        with lock:  # retrieval now; generation below runs under the LLM's own lock
            streaming = rag.stream(body.question, **kw)
        _returned(request, [s.id for s in streaming.sources])

        def events() -> Iterator[str]:
            try:
                for piece in streaming:
                    yield sse({"text": piece}, "token")
                yield sse(streaming.answer.to_dict(), "answer")
            except RagtuneError as e:
                yield sse({"detail": redact_keys(redact(str(e))), "type": type(e).__name__}, "error")

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/retrieve", responses=_INVALID)
    def retrieve(body: RetrieveIn, request: Request):
        _, scoped = _scope(request, body, body.question)
        with lock:
            hits = rag.retrieve(body.question, k=body.k, mode=body.mode, filter=_filter(body), **scoped)
        _returned(request, [h.id for h in hits])
        return {"hits": [h.to_dict() for h in hits]}

    @app.get("/stats")
    def stats(request: Request):
        who = principal_of(request.scope)
        note(request.scope, collections=who.granted() or ["*"])
        with lock:
            return rag.stats() if who.collections is None else rag.stats(collections=who.granted())

    @app.get("/collections")
    def collections(request: Request):
        who = principal_of(request.scope)
        with lock:
            counts = rag.collections()
        return {"collections": {name: n for name, n in sorted(counts.items()) if who.grants(name)}}

    def _roots(who: Principal) -> list[Path]:
        if who is ANONYMOUS:
            return configured or [cwd]
        require_admin(who, "paths: ingesting files from the server's disk")
        if not configured:
            raise HTTPException(403, "paths: no ingest root is configured; start the server with --ingest-root DIR "
                                     "(or set server.ingest_roots), or send texts or uploads")
        return configured

    def _inside_root(raw: str, i: int, roots: list[Path]) -> Path:
        try:
            p = Path(raw).expanduser()
            found = [(p if p.is_absolute() else root / p).resolve() for root in roots]
            inside = [r for r, root in zip(found, roots) if r.is_relative_to(root)]
            exists = bool(inside) and inside[0].exists()
        except (OSError, ValueError, RuntimeError) as e:  # RuntimeError: a symlink loop
            why = getattr(e, "strerror", None) or e
            raise HTTPException(400, f"paths[{i}]: not a usable path ({why})") from e
        if not inside:
            raise HTTPException(403, f"paths[{i}]: '{raw}' is outside the ingest root")
        if not exists:
            raise HTTPException(404, f"paths[{i}]: '{raw}' does not exist")
        return inside[0]

    def _summary(result: Any) -> Any:
        return result.summary() if hasattr(result, "summary") else result

    def _into(collection: str | None) -> dict[str, Any]:
        return {} if collection is None else {"collection": collection}

    @app.post("/ingest", responses=_INVALID)
    def ingest(body: IngestIn, request: Request):
        who = principal_of(request.scope)
        target = write_target(who, body.collection, auth=who is not ANONYMOUS)
        note(request.scope, collections=[target] if target else None)
        out: dict[str, Any] = {}
        if body.paths:
            roots = _roots(who)
            paths = [_inside_root(p, i, roots) for i, p in enumerate(body.paths)]  # check all before any
            with lock:
                out = dict(_summary(rag.ingest(paths, **_into(target))))
        if body.texts:
            with lock:
                ids = rag.add_texts(body.texts, metadatas=body.metadatas, **_into(target))
            out["texts"] = len(body.texts)
            out["chunk_ids"] = ids
        return out

    @app.post("/ingest/upload", responses=_INVALID)
    async def upload(request: Request, filename: str, collection: str | None = None):
        who = principal_of(request.scope)
        target = write_target(who, collection, auth=who is not ANONYMOUS)
        note(request.scope, collections=[target] if target else None)
        name = Path(filename.replace("\\", "/")).name
        if redact_keys(name) != name:  # saved on disk and echoed back: never under a key's name
            raise HTTPException(400, "filename: looks like an API key; rename the file")
        if not name or name.startswith(".") or not re.fullmatch(r"[\w.\- ()]{1,200}", name):
            raise HTTPException(400, f"filename: '{filename[:200]}' is not a usable file name (letters, "
                                     "digits, '.', '-', '_' only; at most 200 characters)")
        data = await request.body()
        if not data:
            raise HTTPException(422, "body: empty upload; send the file's bytes as the request body")
        folder = uploads / target if target else uploads  # one folder per collection: no overwrites across
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / name
        dest.write_bytes(data)

        def work():
            with lock:
                return _summary(rag.ingest([dest], **_into(target)))

        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(work)
        return {"file": name, **dict(result)}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0,
                                            "owned_by": "ragtune"}]}

    @app.post("/v1/chat/completions", responses=_INVALID)
    def chat_completions(body: ChatIn, request: Request):
        if body.n is not None and body.n > 1:
            # one answer per question: n identical (greedy) choices would only look like a choice
            raise HTTPException(400, f"n: only n=1 is supported (got {body.n}); send separate requests "
                                     "for more answers")
        turns = body.turns()  # the validator checked that the last one is a non-blank user message
        question, history = turns[-1]["content"], turns[:-1]
        _, scoped = _scope(request, body, question)
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), body.model or MODEL_NAME
        gen = {**_gen(body), **scoped}
        if not body.stream:
            with lock:
                a = rag.ask(question, history=history or None, **gen)
            _returned(request, [s.id for s in a.sources])
            return JSONResponse(
                {"id": cid, "object": "chat.completion", "created": created, "model": model,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": a.text},
                              "finish_reason": a.finish_reason}],
                 "usage": usage(a), "sources": a.to_dict()["sources"], "citations": a.citations,
                 "flags": a.flags},
                headers=sources_header(a.sources, final=True))
        with lock:
            streaming = rag.stream(question, history=history or None, **gen)
        _returned(request, [s.id for s in streaming.sources])
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
            # OpenAI: with include_usage every chunk has "usage": null, then one last chunk holds
            # the usage and no choices
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": choices, **({"usage": None} if include_usage else {}), **extra}
            return sse(payload)

        def events() -> Iterator[str]:
            yield chunk({"role": "assistant", "content": ""})
            try:
                for piece in streaming:
                    yield chunk({"content": piece})
                a = streaming.answer
                yield chunk({}, a.finish_reason, sources=a.to_dict()["sources"], citations=a.citations,
                            flags=a.flags)
                if include_usage:
                    yield chunk(None, usage=usage(a))
            except RagtuneError as e:
                error = {"message": redact_keys(redact(str(e))), "type": type(e).__name__}
                yield sse({"error": error})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers=sources_header(streaming.sources, final=False))

    return app
