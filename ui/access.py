"""Sign-in and collections for the UI: who is using it and what they may see.

Authentication follows the server's rule: on as soon as the data directory holds an API key
(``python -m rag keys create``). Then every page first asks for a key (a password field) and
shows nothing else until a valid one is given; the key is checked again on every rerun, so a
revoked or expired key is refused at its next click. A signed-in reader or writer sees only the
collections the key grants (the picker offers nothing else, and every search, count and upload
is limited to them), cannot change the store or the model, and sees only the chat page.
Decisions are :mod:`rag.access`'s; this module only draws them.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from rag.access import ANONYMOUS, Principal
from rag.keys import KeyStore
from rag.ratelimit import RateLimiter
from rag.settings import Settings

_KEY = "_ui_api_key"
_WHO = "_ui_principal"


@st.cache_resource(show_spinner=False)
def _failures(per_minute: float, burst: int) -> RateLimiter:
    """Failed sign-ins per client address, shared by every session of this process."""
    return RateLimiter(per_minute, burst)


def sign_in(settings: Settings) -> Principal:
    """The signed-in caller (``ANONYMOUS`` when the data directory has no keys); otherwise draw
    the sign-in form and stop the page."""
    store = KeyStore(settings.data_dir)
    try:
        if not store.exists():
            st.session_state[_WHO] = ANONYMOUS
            return ANONYMOUS
        key = st.session_state.get(_KEY)
        who, why = store.verify(key) if key else (None, "missing")
        if who is not None:
            st.session_state[_WHO] = who
            _signed_in_box(who)
            return who
        if key:  # revoked or expired since sign-in: drop what it was shown, too
            _forget()
        st.session_state.pop(_KEY, None)
        st.session_state.pop(_WHO, None)
        _form(store, settings, why if key else None)
    finally:
        store.close()
    st.stop()


def _form(store: KeyStore, settings: Settings, why: str | None) -> None:
    st.title("ragtune")
    st.caption("This index needs an API key (ask an admin: python -m rag keys create).")
    if why in ("revoked", "expired"):
        st.error(f"Your key was {why}; sign in with a new one.")
    failures = _failures(settings.auth.failed_per_minute, settings.auth.failed_burst)
    client = getattr(st.context, "ip_address", None) or "local"
    with st.form("sign_in", clear_on_submit=True):
        entered = st.text_input("API key", type="password", key="api_key_field")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    wait = failures.blocked(client)
    if wait:
        st.error(f"Too many failed sign-ins; try again in {wait} s.")
        return
    who, why = store.verify(entered.strip())
    if who is None:
        failures.take(client)
        st.error({"revoked": "This key was revoked.", "expired": "This key has expired."}.get(why, "Invalid API key."))
        return
    st.session_state[_KEY] = entered.strip()
    st.rerun()


def _signed_in_box(who: Principal) -> None:
    sb = st.sidebar
    cols = ", ".join(who.granted() or ["every collection"])
    sb.caption(f"Signed in as **{_plain(who.name)}** ({who.role}) · {_plain(cols)}")
    if sb.button("Sign out", key="sign_out"):
        st.session_state.pop(_KEY, None)
        st.session_state.pop(_WHO, None)
        _forget()
        st.rerun()


def _forget() -> None:
    """Drop what the previous key was shown (answers, the last ingest report), so the next key
    signing in to this browser session does not see it."""
    st.session_state["messages"] = []
    st.session_state.pop("last_ingest", None)


def _plain(text: str) -> str:
    from ui.components import md_escape

    return md_escape(text)


def current() -> Principal:
    """The caller ``sign_in`` let through on this run."""
    return st.session_state.get(_WHO) or ANONYMOUS


def restricted(who: Principal) -> bool:
    """Signed in with a key that is not an admin's: the store and model are fixed for them."""
    return who is not ANONYMOUS and not who.at_least("admin")


def collection_picker(rag: Any, who: Principal) -> list[str] | None:
    """The collections to search, picked among those the key grants (or every collection without
    keys). Returns ``None`` for "all" (nothing to pick, or an unrestricted caller who kept every
    one), else the names; the picker never lists a collection the key does not grant."""
    granted = who.granted()
    if granted is None:
        try:
            options = list(rag.collections())
        except Exception:  # noqa: BLE001 - no index yet: nothing to pick
            options = []
    else:
        options = granted
    if len(options) <= 1 and granted is None:
        return None
    chosen = st.sidebar.multiselect("Collections", options, default=options, key="collections",
                                    help="Search only these collections.")
    if granted is None and set(chosen) == set(options):
        return None
    return sorted(set(chosen) & set(options))  # the widget offers nothing else; checked all the same


def write_collection(who: Principal) -> str | None:
    """The collection uploads go into (writers and admins), or ``None`` = may not upload here.

    Returns ``""`` for an unrestricted caller without keys (the RAG's default collection)."""
    if who is ANONYMOUS:
        return ""
    if not who.at_least("writer"):
        return None
    granted = who.granted()
    if granted is None:
        return st.sidebar.text_input("Upload into collection", value="default", key="upload_collection").strip()
    return st.sidebar.selectbox("Upload into collection", granted, key="upload_collection")
