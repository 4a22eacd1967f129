"""Ingest files and folders into the vector store (incremental).

Examples:
    python -m ingest ./docs
    python -m ingest ./docs ./more/report.pdf --chunk-size 800 --chunk-overlap 150
    python -m ingest ./hr --collection hr
    python -m ingest ./docs --store pgvector://postgres@127.0.0.1:54329/ragtune --json
    python -m ingest --copy-from ./.ragtune/index --store pgvector://postgres@127.0.0.1:54329/ragtune
    python -m ingest ./docs --engine ray --ray-address 127.0.0.1:6379 --json   # on a Ray cluster

Re-running is incremental: unchanged files are skipped without parsing, changed files are
replaced, and files deleted from the given folders are removed from the index (no flag needed).
All of that is per collection (--collection, default "default"): the same file may live in two
collections, and removing it from one leaves the other.
"""

from __future__ import annotations

import argparse
import sys

from rag.cli import ArgumentParser, add_common, guarded, print_json, settings_from
from rag.settings import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders to ingest (recursively)")
    p.add_argument("--chunk-size", type=int, metavar="N", help=f"chunk size in characters (default {DEFAULT_CHUNK_SIZE})")
    p.add_argument("--chunk-overlap", type=int, metavar="N", help=f"overlap in characters (default {DEFAULT_CHUNK_OVERLAP})")
    p.add_argument("--workers", type=int, metavar="N", help="parser processes (default 1; 0 = parse inline)")
    p.add_argument("--collection", metavar="NAME",
                   help="collection to ingest into (default: default; letters, digits, _ and -)")
    p.add_argument("--password", action="append", metavar="PW",
                   help="password to try on encrypted PDFs (repeatable)")
    p.add_argument("--retry-failed", action="store_true",
                   help="re-parse files whose failure is remembered (by default an unchanged file that failed "
                        "is reported again without parsing)")
    p.add_argument("--copy-from", metavar="URI", help="copy another store's index (vectors included) into --store")
    p.add_argument("--report", metavar="FILE.md",
                   help="write a per-file report (pages, pages with text / OCR'd / without text, tables, chunks, "
                        "warnings) to FILE.md; with --json the same rows are added under \"report\"")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: on when stderr is a terminal and --json is off)")
    p.add_argument("--engine", choices=("local", "ray"),
                   help="local (default): this process; ray: parse and embed on a Ray cluster (needs ragtune[ray])")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="Ray cluster for --engine ray, e.g. 10.0.0.5:6379 (default: RAY_ADDRESS, else a local Ray)")
    add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.copy_from:
        print("error: give at least one PATH (or --copy-from URI)", file=sys.stderr)
        parser.print_usage(sys.stderr)
        return 2
    return guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    from rag.api import RAG

    settings = settings_from(args, **{"ingest.chunk_size": args.chunk_size,
                                      "ingest.chunk_overlap": args.chunk_overlap,
                                      "ingest.workers": args.workers,
                                      "ingest.passwords": args.password,
                                      "ingest.engine": args.engine, "ingest.ray_address": args.ray_address})
    with RAG(settings=settings) as rag:
        if args.copy_from:
            return _copy(rag, args)
        progress = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.json)
        result = rag.ingest(args.paths, progress=progress, retry_failed=args.retry_failed,
                            collection=args.collection)
    rows = report_rows(result) if args.report else None
    if args.report:
        from pathlib import Path

        Path(args.report).write_text(report_markdown(rows), encoding="utf-8")
    if args.json:
        out = result.summary()
        if rows is not None:
            out["report"] = rows
        print_json(out)
    else:
        print(f"added {result.added}, updated {result.updated}, unchanged {result.unchanged}, "
              f"removed {result.removed}, failed {len(result.failed)}; "
              f"{result.chunks} chunks written in {result.seconds:.1f} s")
        for f in result.failed:
            print(f"  failed: {f['path']}: {f['reason']}")
    nothing_ingested = result.ingested == 0 and result.removed == 0
    if nothing_ingested and not result.failed:
        from ingest.loaders import LOADERS

        print(f"error: no supported files found (supported: {', '.join(sorted(LOADERS))})", file=sys.stderr)
        return 1
    return 1 if nothing_ingested else 0


REPORT_FIELDS = ("source", "status", "pages", "text_pages", "ocr_pages", "empty_pages", "tables", "chunks",
                 "warnings", "reason")


def report_rows(result) -> list[dict]:
    """One row per file of the run, with what its loader found (see FileReport)."""
    rows = []
    for f in result.files:
        row = {k: getattr(f, k) for k in REPORT_FIELDS}
        row["path"] = f.path
        rows.append(row)
    return rows


def report_markdown(rows: list[dict]) -> str:
    def cell(x) -> str:
        return str(x).replace("|", "/").replace("\n", " ")

    head = ["file", "status", "pages", "with text", "OCR'd", "no text", "tables", "chunks", "warnings / reason"]
    lines = ["# Ingest report", "", f"{len(rows)} file(s).", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        notes = "; ".join(r["warnings"]) + (("; " if r["warnings"] else "") + r["reason"] if r["reason"] else "")
        lines.append("| " + " | ".join(cell(x) for x in (r["source"], r["status"], r["pages"], r["text_pages"],
                                                         r["ocr_pages"], r["empty_pages"], r["tables"],
                                                         r["chunks"], notes)) + " |")
    totals = {k: sum(r[k] for r in rows) for k in ("pages", "text_pages", "ocr_pages", "empty_pages", "tables",
                                                   "chunks")}
    lines += ["", "Totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()),
              "", "Unchanged files were not parsed in this run: only their status and chunk count are shown."]
    return "\n".join(lines) + "\n"


def _copy(rag, args: argparse.Namespace) -> int:
    from rag.stores import open_store
    from rag.stores.migrate import copy_index

    src = open_store(args.copy_from)
    try:
        moved = copy_index(src, rag.store)
    finally:
        src.close()
    if args.json:
        print_json({"copied": moved, "from": src.uri, "to": rag.store.uri})
    else:
        print(f"copied {moved} chunks from {src.uri} to {rag.store.uri} (no re-embedding)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
