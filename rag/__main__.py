"""ragtune's question-answering CLI.

Examples:
    python -m rag ask "What does the warranty cover?"
    python -m rag ask "..." --store pgvector://postgres@127.0.0.1:54329/ragtune --llm openai:gpt-4o-mini --json
    python -m rag chat
    python -m rag stats --json
    python -m rag serve --port 8000
    python -m rag keys create --name alice --role reader --collection hr
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rag.cli import ArgumentParser, guarded

# name -> module under rag.commands (each has HELP, add_arguments(parser), run(args) -> int)
COMMANDS: dict[str, str] = {
    "ask": "rag.commands.ask",
    "chat": "rag.commands.chat",
    "stats": "rag.commands.stats",
    "serve": "rag.commands.serve",
    "models": "rag.commands.models",
    "keys": "rag.commands.keys",
}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m rag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=getattr(module, "HELP", None), description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return guarded(lambda: args._run(args))


if __name__ == "__main__":
    sys.exit(main())
