"""CSV (and TSV): one record per line, "column: value; column: value", so that every value sits
next to its column name in whichever chunk it lands."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ingest.loaders import LoadError
from ingest.loaders.text import _read
from rag.settings import IngestSettings
from rag.types import Document, Page


def load_csv(path: Path, settings: IngestSettings) -> Document:
    text, warnings = _read(path)
    sample = text[:16384]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r)]
    if not rows:
        raise LoadError("no rows in the CSV")
    header = [h.strip() or f"column {i + 1}" for i, h in enumerate(rows[0])]
    records, short = [], 0
    for row in rows[1:]:
        if len(row) > len(header):
            header += [f"column {i + 1}" for i in range(len(header), len(row))]
        short += len(row) < len(header)
        records.append("; ".join(f"{h}: {v.strip()}" for h, v in zip(header, row) if v.strip()))
    if short:
        warnings.append(f"{short} row(s) have fewer fields than the header")
    if not records:   # a header-only file still says what it would hold
        records = ["; ".join(header)]
    meta = {"format": "csv", "columns": header, "rows": len(rows) - 1,
            "stats": {"pages": 1, "text_pages": 1, "tables": 1}}
    return Document(str(path), [Page(0, "\n".join(records))], meta, warnings)
