"""python -m rag serve: the HTTP API (REST and OpenAI-compatible), on loopback by default.

Endpoints: GET /health, POST /ask, POST /ingest, POST /ingest/upload?filename=NAME,
POST /v1/chat/completions (stream or not), GET /v1/models. See rag/server.py.

With no API key in the data directory it is a single-user server and binds only to loopback;
once a key exists (python -m rag keys create), every route but /health needs
"Authorization: Bearer KEY", and it may listen on the network.

Examples:
    python -m rag serve                        # http://127.0.0.1:8000
    python -m rag keys create --name admin --role admin && python -m rag serve --host 0.0.0.0
    python -m rag serve --port 8080 --llm openai:gpt-4o-mini --ingest-root ./docs
    curl -s localhost:8000/ask -H 'content-type: application/json' -d '{"question": "..."}'
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python -m rag ask "..." --llm openai:ragtune
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys

from rag.cli import add_common, settings_from
from rag.errors import RagtuneError

HELP = "serve the HTTP API (REST + OpenAI-compatible /v1/chat/completions)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, help="port (default: 8000)")
    parser.add_argument("--llm", metavar="SPEC", help="LLM spec (see docs/llms.md)")
    parser.add_argument("--ingest-root", metavar="DIR", action="append",
                        help="POST /ingest may only read paths inside this folder (repeatable; default: the "
                             "current folder, or none when authentication is on)")
    parser.add_argument("--auth", action="store_true",
                        help="require an API key even before any exists (on anyway once a key exists)")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="serve without authentication even on a network address (trusted networks only)")
    parser.add_argument("--max-request-bytes", type=int, metavar="N", help="larger request bodies get 413")
    add_common(parser, json_flag=False)


def _listen(host: str, port: int) -> socket.socket:
    """Bind now, so a taken port is one ``error:`` line before anything claims to be serving
    (left to uvicorn, it is a logged traceback-less error *after* our "serving on" line).

    Raises:
        RagtuneError: the address cannot be bound (exit 1: the command was right, the machine
            is not ready for it).
    """
    # IPPROTO_TCP given, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every keep-alive response (the openai client's) waited ~40 ms for a delayed ACK
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: rebind right after a stop
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = ("another program is listening there: stop it or pick another --port"
                if e.errno == errno.EADDRINUSE
                else "check --host (an address of this machine, e.g. 127.0.0.1) and --port")
        raise RagtuneError(f"cannot listen on {host}:{port}: {e.strerror or e}; {hint}") from None
    return sock


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _auth_mode(args: argparse.Namespace, settings, host: str) -> str:
    """``on``, ``auto`` or ``off``; refuses a network address without authentication.

    Raises:
        ConfigError: a non-loopback ``host`` with no key, no ``--auth`` and no ``--insecure-no-auth``.
    """
    from rag.errors import ConfigError
    from rag.keys import KeyStore

    if args.auth and args.insecure_no_auth:
        raise ConfigError("--auth and --insecure-no-auth contradict each other: give one")
    if args.insecure_no_auth:
        return "off"
    if args.auth or settings.auth.required:
        return "on"
    if not _loopback(host) and not KeyStore(settings.data_dir).exists():
        raise ConfigError(
            f"refusing to listen on {host} without authentication: anyone who can reach this machine could "
            "read every document and run the LLM. Create a key first (python -m rag keys create --name admin "
            "--role admin), or start with --auth; on a trusted network only, --insecure-no-auth")
    return "auto"


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as e:
        from rag.errors import MissingDependencyError

        raise MissingDependencyError("python -m rag serve", "server", "uvicorn") from e
    from rag.api import RAG
    from rag.server import create_app

    settings = settings_from(args, **{"server.host": args.host, "server.port": args.port,
                                      "llm.spec": args.llm, "server.max_request_bytes": args.max_request_bytes})
    host, port = settings.server.host, settings.server.port
    mode = _auth_mode(args, settings, host)
    sock = _listen(host, port)
    rag = RAG(settings=settings)
    try:
        app = create_app(rag, ingest_root=args.ingest_root, auth=mode)
        if mode == "off" and not _loopback(host):
            print(f"WARNING: --insecure-no-auth: listening on {host} WITHOUT AUTHENTICATION. Anyone who can "
                  "reach this machine can read every document, ingest files and run the LLM.", file=sys.stderr)
        elif mode == "off":
            print("warning: --insecure-no-auth: authentication is off, even for keys that exist", file=sys.stderr)
        auth = {"on": "on (every route but /health needs a key)", "off": "OFF"}.get(
            mode, "on (keys exist)" if _keys_exist(settings) else "off (no keys: loopback only)")
        print(f"serving on http://{host}:{port} (docs at /docs); authentication {auth}", file=sys.stderr)
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
        rag.close()
    return 0


def _keys_exist(settings) -> bool:
    from rag.keys import KeyStore

    return KeyStore(settings.data_dir).exists()
