"""python -m rag keys: API keys for `python -m rag serve` (stored hashed in DATA_DIR/keys.db).

Roles: reader (ask and retrieve within its collections), writer (also ingest texts and uploads
into them), admin (also ingest server-side paths; --collection optional, default every one).
The key is printed once, on stdout, when it is created: store it then. Authentication is on for
a server on this data directory as soon as one key exists, revoked ones included.

Examples:
    python -m rag keys create --name alice --role reader --collection hr --collection handbook --expires 30d
    python -m rag keys create --name ops --role admin
    python -m rag keys list [--json]
    python -m rag keys revoke alice
"""

from __future__ import annotations

import argparse
import sys

from rag.cli import add_common, print_json, settings_from

HELP = "create, list and revoke API keys for the HTTP server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what holds the key (unique among active keys)")
    create.add_argument("--role", required=True, choices=["reader", "writer", "admin"])
    create.add_argument("--collection", action="append", default=[], metavar="NAME",
                        help="a collection the key may use (repeatable; '*' = every collection; "
                             "admins default to '*')")
    create.add_argument("--expires", metavar="WHEN", help="30d, 12h, 90m, 2w, or a date such as 2027-01-31")
    add_common(create)
    listing = sub.add_parser("list", help="the keys: name, role, collections, status (never the secret)")
    add_common(listing)
    revoke = sub.add_parser("revoke", help="revoke a key; a running server refuses it from its next request")
    revoke.add_argument("name")
    add_common(revoke)


def run(args: argparse.Namespace) -> int:
    from rag.errors import RagtuneError
    from rag.keys import KeyStore, parse_expiry

    settings = settings_from(args)
    store = KeyStore(settings.data_dir)
    try:
        if args.action == "create":
            info, key = store.create(args.name, args.role, args.collection, parse_expiry(args.expires))
            if args.json:
                print_json({**info.to_dict(), "key": key})
            else:
                print(key)
                print(f"created key '{info.name}' ({info.role}; collections: {', '.join(info.collections)}; "
                      f"expires: {info.to_dict()['expires'] or 'never'}). It is shown only now: store it.",
                      file=sys.stderr)
            return 0
        if args.action == "list":
            rows = [k.to_dict() for k in store.list()]
            if args.json:
                print_json({"keys": rows})
            elif not rows:
                print("no keys (the server runs without authentication, on loopback only)", file=sys.stderr)
            else:
                print(f"{'NAME':<20} {'ROLE':<7} {'STATUS':<8} {'EXPIRES':<26} {'ID':<11} COLLECTIONS")
                for r in rows:
                    print(f"{r['name']:<20} {r['role']:<7} {r['status']:<8} {r['expires'] or 'never':<26} "
                          f"{r['id']:<11} {','.join(r['collections'])}")
            return 0
        if not store.revoke(args.name):
            raise RagtuneError(f"no active key named '{args.name}' (python -m rag keys list shows them)")
        print(f"revoked key '{args.name}'", file=sys.stderr)
        return 0
    finally:
        store.close()
