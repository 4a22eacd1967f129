"""Key management over HTTP, for admins: ``GET /keys``, ``POST /keys``, ``DELETE /keys/{name}``.

Only on a server with authentication on: the first key is made with ``python -m rag keys
create`` on the server (a single-user loopback server has no admin to speak of, and a key made
over HTTP would silently turn authentication on under its other clients). An admin whose own key
is limited to some collections manages only keys within them: it cannot grant a collection it
does not hold, nor ``*``, and keys beyond its grant are neither listed nor revocable (404, as for
a name that does not exist).
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request

from rag.access import ALL, ANONYMOUS, AccessDenied, Principal, require_admin
from rag.keys import KeyStore, parse_expiry
from rag.server_auth import note, principal_of
from rag.server_models import KeyIn


def _admin(request: Request) -> Principal:
    who = principal_of(request.scope)
    if who is ANONYMOUS:
        raise AccessDenied("keys: managing keys over HTTP needs authentication on; create the first key on the "
                           "server with python -m rag keys create --name NAME --role admin")
    require_admin(who, "keys: managing keys")
    return who


def _within(who: Principal, collections: list[str]) -> bool:
    return who.collections is None or (ALL not in collections and all(who.grants(c) for c in collections))


def add_key_routes(app: FastAPI, store: KeyStore) -> None:
    """Register the routes on ``app`` itself (an included APIRouter is listed lazily in
    ``app.routes`` by this FastAPI, which hides the routes from the route-coverage test)."""

    @app.get("/keys")
    def list_keys(request: Request):
        who = _admin(request)
        return {"keys": [k.to_dict() for k in store.list() if _within(who, k.collections)]}

    @app.post("/keys", status_code=201)
    def create_key(body: KeyIn, request: Request):
        who = _admin(request)
        wanted = body.collections or ([ALL] if body.role == "admin" else [])
        if wanted and not _within(who, wanted):
            raise AccessDenied(f"collections: this admin key may grant only {', '.join(who.granted() or [])}")
        info, key = store.create(body.name, body.role, wanted, parse_expiry(body.expires))
        note(request.scope, collections=info.collections)
        return {**info.to_dict(), "key": key}  # shown once, as by the command

    @app.delete("/keys/{name}")
    def revoke_key(name: str, request: Request):
        who = _admin(request)
        mine = [k for k in store.list() if k.name == name and k.status != "revoked" and _within(who, k.collections)]
        if not mine or not store.revoke(name):
            raise HTTPException(404, f"name: no active key named '{name[:64]}' that this key manages")
        return {"revoked": name}
