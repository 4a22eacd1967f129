"""HTTP plumbing shared by rag/server.py and rag/server_auth.py: the body limit, error replies
(``detail``, plus OpenAI's ``error`` object under ``/v1/``), the sources header and server-sent
events. No routes here."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from rag.access import AccessDenied
from rag.errors import ConfigError, DataError, LLMError, ModelNotFoundError, RagtuneError, StoreError
from rag.keys import redact_keys

SOURCES_HEADER = "X-Ragtune-Sources"
SOURCES_HEADER_BYTES = 4096  # proxies refuse larger header blocks (nginx buffers 4-8 KiB by default)


class BodyLimit:
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


def status_of(e: RagtuneError) -> int:
    if isinstance(e, AccessDenied):
        return 403
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


class AsciiJSON(JSONResponse):
    """Error replies: ASCII-escaped, so a message quoting odd input can always be encoded."""

    def render(self, content: Any) -> bytes:
        # every field, not only the message: validators quote what the client sent
        return redact_keys(json.dumps(content, ensure_ascii=True, default=str)).encode("ascii")


def error_body(path: str, status: int, message: str, *, kind: str | None = None, code: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """``{"detail": message}`` (plus ``type`` for ragtune errors); under ``/v1/`` also OpenAI's
    ``{"error": {"message", "type", "param", "code"}}``, which the openai client reads into
    ``e.message``, ``e.param`` and ``e.type``."""
    message = redact_keys(message)  # messages quote fields, and a client may have pasted its key into one
    body: dict[str, Any] = {"detail": message, **({"type": kind} if kind else {}), **extra}
    if path.startswith("/v1/"):
        field = _FIELD.match(message)
        body["error"] = {"message": message, "param": field.group(1) if field else None, "code": code,
                         "type": "invalid_request_error" if status < 500 else (kind or "server_error")}
    return body


def error_reply(request: Request, status: int, message: str, *, kind: str | None = None,
                headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """An error reply shaped by :func:`error_body`."""
    return AsciiJSON(error_body(request.url.path, status, message, kind=kind, **extra), status_code=status,
                     headers=headers)


def field_message(err: dict[str, Any]) -> str:
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


def usage(a: Any) -> dict[str, int]:
    prompt, completion = a.tokens.get("prompt", 0), a.tokens.get("completion", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sources_header(sources: list[Any], *, final: bool) -> dict[str, str]:
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


def json_line(data: Any) -> str:
    """JSON on one line for every reader: ``str.splitlines`` (and so ``httpx``'s ``iter_lines``)
    also breaks on U+0085/U+2028/U+2029, which ``json.dumps`` leaves raw inside strings."""
    text = json.dumps(data, ensure_ascii=False)
    for raw, escaped in _LINE_BREAKS.items():
        text = text.replace(raw, escaped)
    return text


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json_line(data)}\n\n"
