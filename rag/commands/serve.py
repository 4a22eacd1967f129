"""python -m rag serve: the HTTP API (REST and OpenAI-compatible), on loopback by default.

Endpoints: GET /health, POST /ask, POST /ingest, POST /ingest/upload?filename=NAME,
POST /v1/chat/completions (stream or not), GET /v1/models. See rag/server.py.

Examples:
    python -m rag serve                        # http://127.0.0.1:8000
    python -m rag serve --port 8080 --llm openai:gpt-4o-mini --ingest-root ./docs
    curl -s localhost:8000/ask -H 'content-type: application/json' -d '{"question": "..."}'
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python -m rag ask "..." --llm openai:ragtune
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys

from rag.cli import add_common, settings_from
from rag.errors import RagtuneError

HELP = "serve the HTTP API (REST + OpenAI-compatible /v1/chat/completions)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (default: 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, help="port (default: 8000)")
    parser.add_argument("--llm", metavar="SPEC", help="LLM spec (see docs/llms.md)")
    parser.add_argument("--ingest-root", metavar="DIR",
                        help="POST /ingest may only read paths inside this folder (default: current folder)")
    parser.add_argument("--max-request-bytes", type=int, metavar="N", help="larger request bodies get 413")
    add_common(parser, json_flag=False)


def _listen(host: str, port: int) -> socket.socket:
    """Bind now, so a taken port is one ``error:`` line before anything claims to be serving
    (left to uvicorn, it is a logged traceback-less error *after* our "serving on" line).

    Raises:
        RagtuneError: the address cannot be bound (exit 1: the command was right, the machine
            is not ready for it).
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
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
    sock = _listen(host, port)
    rag = RAG(settings=settings)
    try:
        app = create_app(rag, ingest_root=args.ingest_root)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {host}: anyone who can reach this machine can query the index",
                  file=sys.stderr)
        print(f"serving on http://{host}:{port} (docs at /docs)", file=sys.stderr)
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
        rag.close()
    return 0
