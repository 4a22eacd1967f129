"""Tables in PDFs: cheap detection with PDFium, extraction with pdfplumber, Markdown-like text out.

pdfplumber finds tables from ruling lines, which costs ~40x PDFium's text extraction per page, so
it only runs on pages whose vector drawing has enough line segments to hold a ruled table
(counted through PDFium's object API, well under a millisecond per page). Tables without any
ruling lines are not detected; their text still comes through PDFium in reading order.

A table becomes text blocks, each starting with its caption and header row, so every chunk a
long table is split into still says what its columns mean:

    Table 1 (page 3): NICS Firearm Background Checks November - 2015
    | State / Territory | Permit | Handgun | ... |
    | --- | --- | --- | ... |
    | Alabama | 18,870 | 23,022 | ... |
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

MIN_RULE = 8.0              # pt: shorter straight strokes are ticks, bullets or glyph parts, not rulings
MAX_SEGMENTS = 20000        # give up counting on pages with huge drawings (maps): not a table
BLOCK_CHARS = 600           # a table block (header + rows) stays under this, so it fits the embedder
MIN_FILLED = 0.25           # tables whose cells are mostly empty are decoration, not data
# Word gaps relative to font size for header labels and unsplit lines: small print (5 pt) has word
# gaps that pdfplumber's fixed 3 pt tolerance merges. Cells keep the fixed tolerance, which copes
# with letter-spaced digits.
WORD_SETTINGS = {"x_tolerance_ratio": 0.2}


@dataclass
class Table:
    page: int                                   # 1-based
    bbox: tuple[float, float, float, float]     # pdfplumber coordinates: x0, top, x1, bottom
    page_size: tuple[float, float]              # width, height
    caption: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str] | str] = field(default_factory=list)   # str = a line that kept no cell split
    columns: list[tuple[float, float]] = field(default_factory=list)  # x extent of each kept column

    @property
    def width_share(self) -> float:
        return (self.bbox[2] - self.bbox[0]) / max(1.0, self.page_size[0])


# -- detection --------------------------------------------------------------------------------
def _paths(page):
    """Path objects at top level and one form level down (where table rulings live)."""
    from pypdfium2 import raw

    for i in range(raw.FPDFPage_CountObjects(page.raw)):
        obj = raw.FPDFPage_GetObject(page.raw, i)
        kind = raw.FPDFPageObj_GetType(obj)
        if kind == raw.FPDF_PAGEOBJ_PATH:
            yield obj
        elif kind == raw.FPDF_PAGEOBJ_FORM:
            for j in range(raw.FPDFFormObj_CountObjects(obj)):
                sub = raw.FPDFFormObj_GetObject(obj, j)
                if raw.FPDFPageObj_GetType(sub) == raw.FPDF_PAGEOBJ_PATH:
                    yield sub


def rulings(page, cap: int = MAX_SEGMENTS) -> tuple[int, int]:
    """Distinct horizontal and vertical straight lines (>= MIN_RULE pt) drawn on a pypdfium2 page.

    Rectangles count with their four edges, as they do for pdfplumber. Curves and diagonals (plots,
    logos) do not count, so figures rarely make a page a table candidate.
    """
    import ctypes

    from pypdfium2 import raw

    xs, ys = set(), set()
    x, y = ctypes.c_float(), ctypes.c_float()
    seen = 0
    for obj in _paths(page):
        n = raw.FPDFPath_CountSegments(obj)
        seen += max(0, n)
        if seen > cap:
            break
        first = prev = None
        for k in range(n):
            seg = raw.FPDFPath_GetPathSegment(obj, k)
            if not raw.FPDFPathSegment_GetPoint(seg, x, y):
                continue
            point = (x.value, y.value)
            kind = raw.FPDFPathSegment_GetType(seg)
            if kind == raw.FPDF_SEGMENT_MOVETO:
                first = point
            elif kind == raw.FPDF_SEGMENT_LINETO and prev is not None:
                _rule(prev, point, xs, ys)
            if raw.FPDFPathSegment_GetClose(seg) and first is not None:
                _rule(point, first, xs, ys)
            prev = point
    return len(ys), len(xs)


def _rule(a, b, xs: set, ys: set) -> None:
    if abs(a[1] - b[1]) < 0.5 and abs(a[0] - b[0]) >= MIN_RULE:
        ys.add(round(a[1]))
    elif abs(a[0] - b[0]) < 0.5 and abs(a[1] - b[1]) >= MIN_RULE:
        xs.add(round(a[0]))


def may_have_table(page) -> bool:
    """Cheap test for ruled tables: at least 3 horizontal and 2 vertical rules that form a grid."""
    from ingest.table_candidates import forms_grid

    horizontal, vertical = rulings(page)
    return horizontal >= 3 and vertical >= 2 and forms_grid(page)


# -- extraction -------------------------------------------------------------------------------
def _clean(cell: str | None) -> str:
    return re.sub(r"\s+", " ", cell or "").strip()


def _words_by_line(page, bbox) -> list[list[dict]]:
    words = page.within_bbox(bbox, strict=False).extract_words(**WORD_SETTINGS)
    lines: list[list[dict]] = []
    for w in sorted(words, key=lambda w: (round(w["top"]), w["x0"])):
        if lines and abs(lines[-1][0]["top"] - w["top"]) < 2.5:
            lines[-1].append(w)
        else:
            lines.append([w])
    return [sorted(line, key=lambda w: w["x0"]) for line in lines]


def _column_bounds(table) -> list[tuple[float, float]]:
    # A column's extent is its narrowest cell: merged cells spanning it are wider.
    bounds = []
    for col in table.columns:
        xs = [c for c in col.cells if c is not None]
        narrow = min(xs, key=lambda c: c[2] - c[0]) if xs else (0.0, 0.0, 0.0, 0.0)
        bounds.append((narrow[0], narrow[2]))
    return bounds


def _header_labels(page, table, row, cols: list[tuple[float, float]]) -> list[str]:
    """One label per column for a header row, splitting merged (spanning) header cells by position.

    A spanning cell with two or more lines is read as a group label over per-column labels
    ("Pre-Pawn" over "Handgun | Long Gun | *Other" gives "Pre-Pawn Handgun", ...).
    """
    n = len(cols)
    labels = [""] * n
    cells = row.cells
    j = 0
    while j < n:
        cell = cells[j]
        if cell is None:
            j += 1
            continue
        k = j
        # None after a cell is a horizontal merge only where the cell reaches over that column.
        while k + 1 < n and cells[k + 1] is None and cell[2] > sum(cols[k + 1]) / 2:
            k += 1
        lines = _words_by_line(page, cell)
        if k == j or not lines:
            labels[j] = " ".join(w["text"] for line in lines for w in line)
        else:
            group = " ".join(w["text"] for w in lines[0]) if len(lines) > 1 else ""
            parts = [[] for _ in range(k - j + 1)]
            for line in lines[1:] if group else lines:
                for w in line:
                    mid = (w["x0"] + w["x1"]) / 2
                    best = min(range(j, k + 1), key=lambda c: 0 if cols[c][0] <= mid <= cols[c][1]
                               else min(abs(mid - cols[c][0]), abs(mid - cols[c][1])))
                    parts[best - j].append(w["text"])
            if sum(1 for p in parts if p) <= 1:
                # Everything sits over one column: the cell is one label spanning them all.
                group, parts = " ".join(w["text"] for line in lines for w in line), [[] for _ in parts]
            for c in range(j, k + 1):
                labels[c] = " ".join(x for x in (group, " ".join(parts[c - j])) if x)
        j = k + 1
    return labels


def _is_numeric(text: str) -> bool:
    return bool(text) and bool(re.fullmatch(r"[-+($]*[\d.,%]+\)?[%*]?", text.replace(" ", "")))


def _build(page, table, number: int) -> Table | None:
    raw_rows = table.extract()
    if not raw_rows or len(raw_rows[0]) < 2:
        return None
    n = len(raw_rows[0])
    cols = _column_bounds(table)
    out = Table(number, tuple(table.bbox), (float(page.width), float(page.height)))
    i = 0
    # Title rows: one text cell spanning the whole width above the header.
    while i < len(raw_rows) and sum(1 for c in raw_rows[i] if _clean(c)) == 1 and raw_rows[i][1:].count(None) == n - 1:
        out.caption = " ".join(x for x in (out.caption, _clean(raw_rows[i][0])) if x)
        i += 1
    if i >= len(raw_rows):
        return None
    header = _header_labels(page, table, table.rows[i], cols)
    spans = any(c is None for c in table.rows[i].cells)
    i += 1
    # A second header row under merged cells ("OBLIGATION DATES" over "START | END").
    if spans and i < len(raw_rows):
        nxt = [_clean(c) for c in raw_rows[i]]
        if any(nxt) and not any(_is_numeric(c) for c in nxt) and any(c is None for c in raw_rows[i]):
            sub = _header_labels(page, table, table.rows[i], cols)
            header = [" ".join(x for x in (h, s) if x) for h, s in zip(header, sub)]
            i += 1
    rows: list[list[str] | str] = []
    filled = total = 0
    for r, raw_row in enumerate(raw_rows[i:], start=i):
        cells = [c or "" for c in raw_row]
        texty = [c for c in cells if c.strip()]
        if not texty:
            continue
        if len(texty) == 1 and raw_row[1:].count(None) >= n - 2 and "\n" in texty[0]:
            # One merged cell holding many lines: the ruling did not separate columns. Keep its
            # lines as rows under the header, with the spacing PDF words actually have.
            lines = _words_by_line(page, table.rows[r].bbox)
            rows.extend(" ".join(w["text"] for w in line) for line in lines)
            continue
        heights = {c.count("\n") for c in cells if c.strip()}
        if len(heights) == 1 and (k := heights.pop()) > 0 and len(texty) >= 2:
            # Several records per ruled row (lines every 5 rows): split them back apart.
            split = [c.split("\n") if c.strip() else [""] * (k + 1) for c in cells]
            for line in range(k + 1):
                rows.append([_clean(col[line]) for col in split])
            filled += len(texty) * (k + 1)
            total += n * (k + 1)
            continue
        rows.append([_clean(c) for c in cells])
        filled += len(texty)
        total += n
    if not rows or (total and filled / total < MIN_FILLED):
        return None
    keep = [c for c in range(n) if header[c] or any(isinstance(r, list) and r[c] for r in rows)]
    if len(keep) < 2:
        return None
    out.header = [header[c] or f"column {c + 1}" for c in keep]
    out.rows = [[r[c] for c in keep] if isinstance(r, list) else r for r in rows]
    out.columns = [cols[c] for c in keep]
    return out


def _continues(prev: Table | None, table: Table) -> bool:
    """A table at the top of the page after ``prev``'s page with the same columns is its next part."""
    if prev is None or table.page != prev.page + 1 or table.caption or len(table.columns) != len(prev.columns):
        return False
    if table.bbox[1] > 0.25 * table.page_size[1] or table.header == prev.header:
        return False
    return all(abs(a[0] - b[0]) < 2 and abs(a[1] - b[1]) < 2 for a, b in zip(table.columns, prev.columns))


def extract_tables(path: Path, pages: list[int], password: str | None = None) -> dict[int, list[Table]]:
    """Tables on the given 1-based pages, top to bottom; pages without a real table are left out."""
    import logging

    import pdfplumber

    logging.getLogger("pdfminer").setLevel(logging.ERROR)  # font-descriptor chatter is not for users
    found: dict[int, list[Table]] = {}
    prev: Table | None = None
    with pdfplumber.open(str(path), pages=pages, password=password or None) as pdf:
        for page in pdf.pages:
            tables = []
            for t in sorted(page.find_tables(), key=lambda t: t.bbox[1]):
                # A table nested inside an earlier one is a cell drawn as its own box.
                if any(_inside(t.bbox, o.bbox) for o in tables):
                    continue
                built = _build(page, t, page.page_number)
                if built is None:
                    continue
                if not tables and _continues(prev, built):
                    # Its first row was read as a header; the real header is the earlier page's.
                    built.rows.insert(0, built.header)
                    built.header, built.caption = prev.header, prev.caption or "continued"
                tables.append(built)
            if tables:
                found[page.page_number] = tables
            prev = tables[-1] if tables else None
            page.close()
    return found


def _inside(inner, outer) -> bool:
    return inner[0] >= outer[0] - 1 and inner[1] >= outer[1] - 1 and inner[2] <= outer[2] + 1 and inner[3] <= outer[3] + 1


def from_rows(rows: list[list[str]], caption: str = "", page: int = 0) -> Table | None:
    """A table from plain cell rows (Word, HTML): the first non-empty row is the header."""
    rows = [[_clean(c) for c in r] for r in rows]
    rows = [r for r in rows if any(r)]
    if not rows:
        return None
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    header = [h or f"column {i + 1}" for i, h in enumerate(rows[0])]
    return Table(page, (0.0, 0.0, 0.0, 0.0), (0.0, 0.0), caption, header, rows[1:] or [[""] * width])


def block_chars(chunk_size: int) -> int:
    """Table block budget: a block must fit in one chunk to keep its header."""
    return max(100, min(BLOCK_CHARS, chunk_size - 20))


# -- rendering --------------------------------------------------------------------------------
def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def to_blocks(table: Table, index: int, budget: int = BLOCK_CHARS) -> list[str]:
    """Text blocks of at most ~``budget`` characters, each with the caption and the column names.

    Narrow tables are Markdown rows under a header row. A table whose header row alone would fill
    half a block is written as records instead ("State: Alabama; Permit: 18,870; ..."), so each
    value still sits next to its column name without repeating a very long header.
    """
    title = f"Table {index}" + (f" (page {table.page})" if table.page else "")
    title += f": {table.caption}" if table.caption else ""
    header_row = _md_row(table.header)
    records = len(header_row) > budget // 2
    head = [title] if records else [title, header_row, _md_row(["---"] * len(table.header))]
    head_len = sum(len(x) + 1 for x in head)
    blocks, current, size = [], [], head_len
    for row in table.rows:
        if isinstance(row, str):
            line = row
        elif records:
            line = "; ".join(f"{h}: {v}" for h, v in zip(table.header, row) if v)
        else:
            line = _md_row(row)
        if current and size + len(line) + 1 > budget:
            blocks.append("\n".join(head + current))
            current, size = [], head_len
        current.append(line)
        size += len(line) + 1
    if current:
        blocks.append("\n".join(head + current))
    return blocks
