"""python -m rag stats: what the index holds."""

from __future__ import annotations

import argparse

from rag.cli import add_common, print_json, settings_from

HELP = "show what the index holds (files, chunks, store, embedder)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from rag.api import RAG
    from rag.stores import require_index

    settings = settings_from(args)
    require_index(settings.store_uri)  # a read-only command creates nothing
    with RAG(settings=settings) as rag:
        stats = rag.stats()
    if args.json:
        print_json(stats)
    else:
        for key, value in stats.items():
            print(f"{key:>9}: {value}")
    return 0
