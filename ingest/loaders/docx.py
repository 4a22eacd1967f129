"""Word .docx via python-docx: paragraphs and tables in document order, headings as sections."""

from __future__ import annotations

import re
from pathlib import Path

from ingest import tables
from ingest.loaders import LoadError
from ingest.loaders._outline import Outline
from rag.settings import IngestSettings
from rag.types import Document, Page

_LEVEL = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _heading_level(paragraph) -> int | None:
    """0 for the Title style, 1-9 for Heading N, None for body text."""
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    if name.lower() == "title":
        return 0
    m = _LEVEL.match(name.strip())
    return int(m.group(1)) if m else None


def load_docx(path: Path, settings: IngestSettings) -> Document:
    try:
        import docx
        from docx.table import Table as DocxTable
        from docx.text.paragraph import Paragraph
    except ImportError as e:
        raise LoadError("reading .docx needs python-docx (pip install python-docx)") from e
    try:
        document = docx.Document(str(path))
    except Exception as e:  # noqa: BLE001 - zip and XML errors from damaged files
        raise LoadError(f"not a readable .docx ({e.__class__.__name__}: {str(e)[:120]})") from None
    outline = Outline()
    parts: list[str] = []
    offset, n_tables, title = 0, 0, None
    budget = tables.block_chars(settings.chunk_size)
    for block in document.element.body.iterchildren():
        tag = block.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(block, document)
            text = para.text.strip()
            if not text:
                continue
            level = _heading_level(para)
            if level is not None:
                outline.heading(level, text, offset)
                title = title or (text if level <= 1 else None)
        elif tag == "tbl":
            rows = [[cell.text for cell in row.cells] for row in DocxTable(block, document).rows]
            table = tables.from_rows(_dedupe_merged(rows))
            if table is None:
                continue
            n_tables += 1
            text = "\n\n".join(tables.to_blocks(table, n_tables, budget))
        else:
            continue
        parts.append(text)
        offset += len(text) + 2
    body = "\n\n".join(parts)
    if not body.strip():
        raise LoadError("no text (the document is empty)")
    meta = {"format": "docx", "stats": {"pages": 1, "text_pages": 1, "tables": n_tables}}
    core_title = (document.core_properties.title or "").strip()
    if core_title or title:
        meta["title"] = core_title or title
    return Document(str(path), [Page(0, body)], outline.into(meta), [])


def _dedupe_merged(rows: list[list[str]]) -> list[list[str]]:
    # python-docx repeats a horizontally merged cell once per grid column; keep it once.
    out = []
    for row in rows:
        out.append([c if i == 0 or c != row[i - 1] else "" for i, c in enumerate(row)])
    return out
