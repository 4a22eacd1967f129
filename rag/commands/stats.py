"""python -m rag stats: what the index holds, per collection.

Examples:
    python -m rag stats
    python -m rag stats --collection hr --json
"""

from __future__ import annotations

import argparse

from rag.cli import add_common, print_json, settings_from

HELP = "show what the index holds (files, chunks, store, embedder, per collection)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--collection", action="append", metavar="NAME",
                        help="count only this collection (repeatable; default: every collection)")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from rag.api import RAG
    from rag.stores import require_index

    settings = settings_from(args)
    require_index(settings.store_uri)  # a read-only command creates nothing
    with RAG(settings=settings) as rag:
        stats = rag.stats(collections=args.collection)
    if args.json:
        print_json(stats)
    else:
        per = stats.pop("collections")
        for key, value in stats.items():
            print(f"{key:>9}: {value}")
        for name, c in per.items():
            print(f"  {name}: {c['files']} files, {c['chunks']} chunks")
    return 0
