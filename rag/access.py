"""Who may do what: a key's role and collection grants, and what a request may touch.

Roles are ordered: a ``reader`` asks and retrieves within its collections, a ``writer`` may also
ingest texts and uploads into them, an ``admin`` may also ingest files from the server's disk
(inside the configured roots) and manage keys. A grant of ``*`` covers every collection.

A request that names collections gets exactly those, if every one is granted; naming one that is
not granted is refused (:class:`AccessDenied`, HTTP 403) rather than quietly dropped, so a client
never mistakes "you may not see it" for "there is nothing there". The refusal reads the same
whether or not the collection exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rag.errors import ConfigError, RagtuneError

ROLES = ("reader", "writer", "admin")
ALL = "*"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # as rag.types.check_collection


class AccessDenied(RagtuneError):
    """The key is valid but may not do this (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a key's name, role and granted collections (``None`` = all collections)."""

    name: str
    role: str
    collections: frozenset[str] | None

    def at_least(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def grants(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def granted(self) -> list[str] | None:
        """The granted collections, sorted (``None`` = all)."""
        return None if self.collections is None else sorted(self.collections)


# Who calls when auth is off: the single user of a loopback server, allowed everything.
ANONYMOUS = Principal(name="", role="admin", collections=None)


def principal(name: str, role: str, collections: Iterable[str]) -> Principal:
    """Build a principal from stored grants; ``*`` among the collections means all of them."""
    cols = list(collections)
    return Principal(name, role, None if ALL in cols else frozenset(cols))


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise ConfigError(f"role: {role!r} is not a role (known: {', '.join(ROLES)})")
    return role


def check_names(names: Iterable[Any], field: str = "collections") -> list[str]:
    """Collection names as given, each checked (letters, digits, ``_``, ``-``; or ``*``)."""
    out = []
    for i, name in enumerate(names):
        if name != ALL and (not isinstance(name, str) or not _NAME.match(name)):
            raise ConfigError(f"{field}[{i}]: {str(name)[:80]!r} is not a collection name (1-64 letters, "
                               "digits, _ or -, starting with a letter or digit)")
        out.append(name)
    return out


def resolve(who: Principal, *requested: list[str] | None) -> list[str] | None:
    """The collections a read may search: the named ones if all are granted, else the grant.

    Args:
        who: the caller.
        requested: each place the request named collections (``None`` = not named there); when
            several name them, the search covers the collections named in all of them.

    Returns:
        Sorted collection names, or ``None`` for "every collection" (a ``*`` grant that named
        none).

    Raises:
        AccessDenied: a named collection is not granted (403), naming it.
    """
    named = [check_names(r) for r in requested if r is not None]
    for names in named:
        for name in names:
            if name == ALL:
                if who.collections is not None:
                    raise AccessDenied("collections: '*' (every collection) is not granted to this key; "
                                       f"it may read {', '.join(who.granted() or [])}")
            elif not who.grants(name):
                raise AccessDenied(f"collections: '{name}' is not granted to this key; it may read "
                                   f"{', '.join(who.granted() or [])}")
    named = [n for n in named if ALL not in n]  # '*' (granted) narrows nothing
    if not named:
        return who.granted()
    chosen = set(named[0]).intersection(*named[1:])
    return sorted(chosen)


def write_target(who: Principal, collection: str | None, *, auth: bool) -> str | None:
    """The collection an ingest writes into.

    Raises:
        AccessDenied: a reader, or a collection not granted to this writer.
    """
    if not who.at_least("writer"):
        raise AccessDenied("ingest: this key is a reader's; ingesting needs a writer or admin key")
    if collection is not None:
        check_names([collection], "collection")
        if collection == ALL:
            raise AccessDenied("collection: name one collection to ingest into, not '*'")
        if not who.grants(collection):
            raise AccessDenied(f"collection: '{collection}' is not granted to this key; it may write "
                               f"{', '.join(who.granted() or [])}")
        return collection
    granted = who.granted()
    if auth and granted is not None and len(granted) != 1:
        raise AccessDenied(f"collection: name the collection to ingest into (one of: {', '.join(granted)})")
    return granted[0] if auth and granted else None


def require_admin(who: Principal, what: str) -> None:
    if not who.at_least("admin"):
        raise AccessDenied(f"{what} needs an admin key")
