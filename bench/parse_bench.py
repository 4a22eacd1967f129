"""Parsing speed and table quality on the shared PDFs: plain PDFium text vs the full loader.

    python bench/parse_bench.py                      # the three table PDFs of docs/documents.md
    python bench/parse_bench.py --all                # every PDF under ../shared/data/pdfs
    python bench/parse_bench.py FILE.pdf ...

For each file: pages, plain PDFium text extraction (pages/s), the full loader with table
detection + pdfplumber extraction + running-line removal (pages/s, OCR off), pages that were
table candidates and tables found, and for the first tables a sample block showing a cell
value next to its column names.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PDFS = ROOT.parent / "shared" / "data" / "pdfs"
DEFAULT = ["pdfplumber/nics-background-checks-2015-11.pdf", "pdfplumber/senate-expenditures.pdf",
           "pdfplumber/chelsea_pdta.pdf"]


def plain(path: Path) -> tuple[int, float]:
    import pypdfium2 as pdfium

    t0 = time.perf_counter()
    doc = pdfium.PdfDocument(str(path))
    n = len(doc)
    for i in range(n):
        page = doc[i]
        tp = page.get_textpage()
        tp.get_text_bounded()
        tp.close()
        page.close()
    doc.close()
    return n, time.perf_counter() - t0


def candidates(path: Path) -> int:
    import pypdfium2 as pdfium

    from ingest.tables import may_have_table

    doc = pdfium.PdfDocument(str(path))
    try:
        return sum(may_have_table(doc[i]) for i in range(len(doc)))
    finally:
        doc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--all", action="store_true", help="every PDF under ../shared/data/pdfs")
    ap.add_argument("--samples", type=int, default=1, help="table blocks shown per file")
    args = ap.parse_args(argv)

    from ingest.loaders import LoadError, load
    from rag.settings import IngestSettings

    settings = IngestSettings(ocr="off")
    files = [Path(f) for f in args.files] or (sorted(PDFS.rglob("*.pdf")) if args.all else [PDFS / f for f in DEFAULT])
    tot = {"pages": 0, "plain": 0.0, "full": 0.0, "cand": 0, "tables": 0}
    print(f"{'file':48} {'pages':>5} {'plain p/s':>10} {'full p/s':>9} {'ratio':>6} {'cand':>5} {'tables':>6}")
    for f in files:
        try:
            n, t_plain = plain(f)
            t0 = time.perf_counter()
            doc = load(f, settings)
            t_full = time.perf_counter() - t0
        except (LoadError, Exception) as e:  # noqa: BLE001 - a benchmark reports and moves on
            print(f"{f.name:48} skipped: {str(e)[:60]}")
            continue
        cand, found = candidates(f), doc.metadata.get("stats", {}).get("tables", 0)
        tot["pages"] += n
        tot["plain"] += t_plain
        tot["full"] += t_full
        tot["cand"] += cand
        tot["tables"] += found
        name = str(f.relative_to(PDFS)) if f.is_relative_to(PDFS) else f.name
        print(f"{name[-48:]:48} {n:5d} {n / t_plain:10.0f} {n / t_full:9.1f} {t_full / t_plain:6.0f} {cand:5d} {found:6d}")
        shown = 0
        for page in doc.pages:
            for block in page.text.split("\n\n"):
                if block.startswith("Table ") and shown < args.samples:
                    lines = block.splitlines()
                    print("    " + "\n    ".join(x[:160] for x in lines[:5]) + ("\n    ..." if len(lines) > 5 else ""))
                    shown += 1
    if tot["pages"]:
        print(f"\nall: {tot['pages']} pages; plain {tot['pages'] / tot['plain']:.0f} pages/s; full loader "
              f"{tot['pages'] / tot['full']:.1f} pages/s ({tot['full'] / tot['plain']:.0f}x); "
              f"{tot['cand']} table-candidate pages; {tot['tables']} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
