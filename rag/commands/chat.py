"""python -m rag chat: an interactive conversation over the index.

Follow-up questions are rewritten into standalone ones (using the conversation) before retrieval.
Type /exit (or Ctrl-D) to leave, /reset to forget the conversation, /sources to list the last
answer's sources.

Examples:
    python -m rag chat
    python -m rag chat --collection hr --collection handbook
    python -m rag chat --llm hf:smollm2+adapter:.ragtune/adapters/run1 --k 4
"""

from __future__ import annotations

import argparse
import sys

from rag.cli import add_common, settings_from
from rag.commands.ask import add_llm_arguments, format_sources, llm_flags, print_answer_stream, print_notes

HELP = "chat with the index (follow-up questions keep context); /exit to leave"
MAX_TURNS = 10  # user+assistant pairs kept for rewriting follow-ups


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_llm_arguments(parser)
    add_common(parser, json_flag=False)


def run(args: argparse.Namespace, stdin=None, stdout=None) -> int:
    from rag.api import RAG
    from rag.stores import require_index

    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    interactive = stdin.isatty()
    settings = settings_from(args, **llm_flags(args))
    flt = {"source": args.source} if args.source else None
    history: list[dict[str, str]] = []
    last = None
    require_index(settings.store_uri)  # a read-only command creates nothing
    with RAG(settings=settings) as rag:
        if interactive:
            print("Ask a question (/exit to leave, /reset to start over, /sources for the last sources).",
                  file=out)
        while True:
            if interactive:
                out.write("> ")
                out.flush()
            line = stdin.readline()
            if not line:
                break
            message = line.strip()
            if not message:
                continue
            if message in ("/exit", "/quit"):
                break
            if message == "/reset":
                history, last = [], None
                print("(conversation cleared)", file=out)
                continue
            if message == "/sources":
                print(format_sources(last) if last else "(no answer yet)", file=out)
                continue
            streaming = rag.stream(message, filter=flt, history=history, collections=args.collection)
            if streaming.standalone_question != message:
                print(f"(searching for: {streaming.standalone_question})", file=sys.stderr)
            last = print_answer_stream(streaming, out)
            print_notes(last)
            cited = [f"[{s.n}] {s.source}" + (f" p.{s.page}" if s.page else "")
                     for s in last.sources if s.cited or s.implicit]
            if cited:
                print("  sources: " + "; ".join(cited), file=out)
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": last.text}]
            history = history[-2 * MAX_TURNS:]
    return 0
