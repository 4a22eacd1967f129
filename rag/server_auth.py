"""The server's front door: who is calling, may they call now, and the audit record of each call.

:class:`AuthGate` is ASGI middleware in front of every route, so a route added later cannot
forget it. With authentication on (a key exists, ``auth.required``, or ``--auth``), every path but
``/health`` needs ``Authorization: Bearer KEY`` (what the ``openai`` client sends), unknown paths
and ``/docs`` included, so an unauthenticated caller cannot even list the routes. In order:

1. a client address that failed too often gets 429 before its key is looked at (otherwise a
   429 for wrong keys and a 200 for the right one would still let it guess at full speed);
2. the key is verified (:meth:`rag.keys.KeyStore.verify`, constant time); a failure is 401 and
   spends one of the address's failure tokens;
3. the key's own bucket: 429 with ``Retry-After`` when it is empty.

The caller (:class:`rag.access.Principal`) is left in ``scope["ragtune.principal"]``; routes write
what they searched and returned into ``scope["ragtune.audit"]``, and the gate appends one audit
record when the response has been sent (for a stream: after its last event).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rag.access import ANONYMOUS, Principal
from rag.audit import AuditLog
from rag.errors import RagtuneError
from rag.keys import KeyStore
from rag.ratelimit import RateLimiter
from rag.server_http import error_body

PRINCIPAL = "ragtune.principal"
AUDIT = "ragtune.audit"
OPEN_PATHS = ("/health",)
_REASONS = {"missing": "missing API key: send 'Authorization: Bearer KEY' (python -m rag keys create makes one)",
            "invalid": "invalid API key",
            "revoked": "this API key was revoked; ask an admin for a new one",
            "expired": "this API key has expired; ask an admin for a new one"}


class AuthGate:
    """ASGI middleware: authenticate, rate-limit and audit every request.

    Args:
        app: the wrapped ASGI app.
        keys: the data directory's key store.
        settings: the settings tree (``auth`` and ``audit`` sections, ``data_dir``).
        mode: ``"auto"`` (on once a key exists, re-checked on every request), ``"on"`` or
            ``"off"`` (``--insecure-no-auth``).
    """

    def __init__(self, app, *, keys: KeyStore, settings: Any, mode: str = "auto"):
        self.app, self.keys, self.mode = app, keys, mode
        a = settings.auth
        self.per_key = RateLimiter(a.requests_per_minute, a.burst)
        self.failures = RateLimiter(a.failed_per_minute, a.failed_burst)
        self.audit = AuditLog(settings.data_dir / "audit.jsonl", log_questions=settings.audit.log_questions) \
            if settings.audit.enabled else None

    def enabled(self) -> bool:
        if self.mode == "off":
            return False
        return self.mode == "on" or self.keys.exists()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            if scope["type"] == "http":
                scope[PRINCIPAL] = ANONYMOUS if not self.enabled() else None
            return await self.app(scope, receive, send)
        if not self.enabled():
            scope[PRINCIPAL] = ANONYMOUS
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        client = (scope.get("client") or ("unknown", 0))[0]
        record: dict[str, Any] = {"route": scope["path"], "client": client}
        scope[AUDIT] = record

        wait = self.failures.blocked(client)
        if wait:
            return await self._refuse(scope, send, 429, f"too many failed authentications from {client}; "
                                      f"retry in {wait} s", started, record, retry=wait, reason="blocked")
        try:
            who, why = self.keys.verify(_bearer(scope))
        except RagtuneError as e:  # e.g. server.secret readable by others: refuse all, say why in the log only
            print(f"error: {e}", file=sys.stderr)
            return await self._refuse(scope, send, 503, "the server's key store is unusable; its log says why",
                                      started, record, reason="keystore")
        if who is None:
            self.failures.take(client)
            return await self._refuse(scope, send, 401, _REASONS[why], started, record, reason=why)
        record["key"] = who.name
        wait = self.per_key.take(who.name)
        if wait:
            return await self._refuse(scope, send, 429, f"rate limit for key '{who.name}' reached; retry in "
                                      f"{wait} s", started, record, retry=wait, reason="rate_limited")
        scope[PRINCIPAL] = who

        status = [0]

        async def watched(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._write(record, status[0], started)

        try:
            await self.app(scope, receive, watched)
        finally:
            if "status" not in record:  # the client went away mid-stream, or the app failed
                self._write(record, status[0] or 499, started)

    def _write(self, record: dict[str, Any], status: int, started: float) -> None:
        if "status" in record:
            return
        record["status"] = status
        record["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        if self.audit is not None:
            self.audit.record(**{k: v for k, v in record.items() if k != "key"}, key=record.get("key"))

    async def _refuse(self, scope, send, status: int, message: str, started: float, record: dict[str, Any], *,
                      retry: int | None = None, reason: str) -> None:
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        body = error_body(scope["path"], status, message, code=code)
        if status != 400 and "error" in body:  # the openai client maps these types to its exceptions
            body["error"]["type"] = "authentication_error" if status == 401 else "rate_limit_error"
        payload = json.dumps(body, ensure_ascii=True).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="ragtune"'))
        if retry:
            headers.append((b"retry-after", str(retry).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        record["reason"] = reason
        self._write(record, status, started)

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        self.keys.close()


def _bearer(scope) -> str | None:
    """The key from ``Authorization: Bearer KEY`` (the scheme is case-insensitive), else None."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def principal_of(scope) -> Principal:
    """The caller the gate let through (routes never run without one)."""
    who = scope.get(PRINCIPAL)
    if who is None:  # only /health runs ungated; anything else here is a wiring bug: refuse
        raise RuntimeError("no authenticated caller on this request")
    return who


def note(scope, **fields: Any) -> None:
    """Add fields (collections, sources, question) to this request's audit record."""
    record = scope.get(AUDIT)
    if record is not None:
        record.update(fields)
