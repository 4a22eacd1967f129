"""HTML: visible text only (scripts, styles and other non-content dropped), headings as sections,
tables as Markdown-like rows under their header."""

from __future__ import annotations

import re
from pathlib import Path

from ingest import tables
from ingest.loaders import LoadError
from ingest.loaders._outline import Outline
from ingest.loaders.text import _read
from rag.settings import IngestSettings
from rag.types import Document, Page

_DROP = ["script", "style", "noscript", "template", "svg", "canvas", "iframe", "head", "nav", "form"]
_MARK = re.compile(r"^\x01(\d)\x02(.*)$")
_BLOCKS = ["p", "div", "li", "tr", "section", "article", "header", "footer", "main", "aside", "blockquote",
           "pre", "dd", "dt", "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table"]


def _parser() -> str:
    try:
        import lxml  # noqa: F401
    except ImportError:
        return "html.parser"
    return "lxml"


def load_html(path: Path, settings: IngestSettings) -> Document:
    try:
        from bs4 import BeautifulSoup
    except ImportError as e:
        raise LoadError("reading HTML needs beautifulsoup4 (pip install beautifulsoup4)") from e
    raw, warnings = _read(path)
    soup = BeautifulSoup(raw, _parser())
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP):
        tag.decompose()
    n_tables = 0
    for el in soup.find_all("table"):
        if el.find_parent("table") is not None:
            continue   # nested tables are read as cell text of their outer table
        rows = [[c.get_text(" ", strip=True) for c in tr.find_all(["th", "td"])] for tr in el.find_all("tr")]
        table = tables.from_rows(rows, caption=el.caption.get_text(" ", strip=True) if el.caption else "")
        if table is None:
            el.decompose()
            continue
        n_tables += 1
        blocks = tables.to_blocks(table, n_tables, tables.block_chars(settings.chunk_size))
        el.replace_with("\n\n" + "\n\n".join(blocks) + "\n\n")
    for h in soup.find_all(re.compile(r"^h[1-6]$")):
        # Mark headings so their offsets can be found once whitespace is tidied.
        h.insert_before(f"\n\x01{h.name[1]}\x02")
    for el in soup.find_all(_BLOCKS):
        el.insert_after("\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    outline = Outline()
    out: list[str] = []
    offset, blank = 0, True
    for line in soup.get_text("").splitlines():
        line = line.strip() if line.lstrip().startswith("|") else " ".join(line.split())
        if not line:
            blank = True
            continue
        if out and blank:
            out.append("")
            offset += 1
        blank = False
        m = _MARK.match(line)
        if m:
            line = m.group(2).strip()
            if not line:
                continue
            outline.heading(int(m.group(1)), line, offset)
            title = title or line
            blank = True   # a heading is a paragraph of its own
        out.append(line)
        offset += len(line) + 1
    text = "\n".join(out)
    if not text.strip():
        raise LoadError("no visible text in the HTML")
    meta = {"format": "html", "stats": {"pages": 1, "text_pages": 1, "tables": n_tables}}
    if title:
        meta["title"] = title
    return Document(str(path), [Page(0, text)], outline.into(meta), warnings)
