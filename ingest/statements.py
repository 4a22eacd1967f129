"""Financial tables from text geometry: statement-style tables with or without ruling lines.

A financial statement is a column of line items with figures in right-aligned period columns,
under a header of one to four lines ("Three Months Ended" over "September 30," over "2022 2023")
and a title ("CONSOLIDATED STATEMENTS OF OPERATIONS (in millions)"). pdfplumber reads such tables
from their rulings, when there are any, and then takes the first data row for the header and lets
``$`` cells push figures one column over. Here the table is rebuilt from the lines PDFium gives
(``ingest.pdf_lines``):

- a data row is a label followed by figures (``$`` and ``%`` joined to their numbers, ``(1,234)``
  negatives and ``—`` kept as written);
- columns are the clusters of the figures' right edges (figures are right-aligned);
- header lines above the rows are split over the columns they overlap, stacked top-down into one
  label per column ("Three Months Ended September 30, 2022");
- short lines above the header make the caption, and a label line ending in ``:`` (or an
  outdented one) prefixes the indented line items under it ("Operating expenses: Fulfillment").
"""

from __future__ import annotations

import re

from ingest.pdf_lines import Line, Segment
from ingest.tables import Table

_FIGURE = re.compile(r"^[-+]?\(?[$€£¥]?\s?\(?-?\d[\d,]*(\.\d+)?\)?\s?%?\)?$|^[—–-]+$|^n/?m$", re.IGNORECASE)
_YEAR = re.compile(r"^(19|20)\d\d$")
COLUMN_TOLERANCE = 12.0    # pt: right edges of one column's figures differ by less (")" hangs out)
MIN_ROWS = 3               # data rows a statement needs
MAX_HEADER_LINES = 5
MAX_CAPTION_LINES = 4


_DATE_END = re.compile(r"\b\d{1,2}, ?(19|20)\d\d$")
_ROW_END = re.compile(r"\S\s+\(?[$€£¥]?\s?\(?-?\d[\d,.]*\)?%?\s+\(?[$€£¥]?\s?\(?-?\d[\d,.]*\)?%?\s*$|\s[—–-]\s*$")


def may_hold(text: str) -> bool:
    """Cheap test on a page's plain text: three or more lines ending in two figures (or a dash), not
    counting sentences and dates ("dated June 12, 2020.")."""
    rows = 0
    for line in text.splitlines():
        line = line.rstrip()
        if _ROW_END.search(line) and not line.endswith(".") and not _DATE_END.search(line):
            rows += 1
    return rows >= MIN_ROWS


def _figure(text: str) -> bool:
    return bool(_FIGURE.match(text.replace(" ", ""))) and not _YEAR.match(text.strip())


def _cells(line: Line) -> tuple[list[Segment], list[Segment]] | None:
    """(label segments, figure segments) for a data row, else None. Currency signs and percent
    signs standing alone are joined to the figure next to them."""
    segs = list(line.segments)
    merged: list[Segment] = []
    for s in segs:
        t = s.text.strip()
        if merged and merged[-1].text in ("$", "€", "£", "¥", "(", "$(") and _figure(t) or merged and t in ("%", ")%", "%)") and _figure(merged[-1].text):
            prev = merged.pop()
            merged.append(Segment(prev.x0, s.x1, prev.text + t))
        else:
            merged.append(Segment(s.x0, s.x1, t))
    first = next((i for i, s in enumerate(merged) if _figure(s.text)), None)
    if first is None or first == 0:
        return None
    figures = merged[first:]
    if not all(_figure(s.text) for s in figures):
        return None   # words after the figures: prose or a text table, not a statement row
    return merged[:first], figures


def _columns(rows: list[list[Segment]]) -> list[tuple[float, float]]:
    """(left, right) extent of each figure column, from clusters of right edges."""
    edges = sorted((s.x1, s.x0) for row in rows for s in row)
    clusters: list[list[tuple[float, float]]] = []
    for x1, x0 in edges:
        if clusters and x1 - clusters[-1][-1][0] <= COLUMN_TOLERANCE:
            clusters[-1].append((x1, x0))
        else:
            clusters.append([(x1, x0)])
    return [(min(x0 for _, x0 in c), max(x1 for x1, _ in c)) for c in clusters]


def _nearest(cols: list[tuple[float, float]], seg: Segment) -> int:
    return min(range(len(cols)), key=lambda c: abs(cols[c][1] - seg.x1))


def find(lines: list[Line], page: int, page_size: tuple[float, float], prev: Table | None = None) -> list[Table]:
    """Statement tables on one page, top to bottom. A table without a header of its own whose columns
    line up with ``prev`` (the last one found before: on this page or the page before) continues it."""
    out: list[Table] = []
    i = 0
    while i < len(lines):
        block, j = _block(lines, i)
        if block is None:
            i += 1
            continue
        # Group labels right above the first figures ("Assets", "Current assets:") are part of it.
        label_right = min(c[0] for c in _columns([c[1] for _, c in block if c]))
        while (i > 0 and len(lines[i - 1].segments) == 1 and lines[i - 1].x1 < label_right - 8
               and len(lines[i - 1].text) <= 90 and not lines[i - 1].text.endswith(".")
               and lines[i].top - lines[i - 1].bottom <= 2.2 * max(lines[i].size, 6.0)):
            i -= 1
            block.insert(0, (lines[i], None))
        table = _table(lines, i, j, block, page, page_size)
        if table is not None:
            last = out[-1] if out else prev
            if last is not None and not any(table.header[1:]) and _aligned(last, table):
                table.header = list(last.header)
                table.caption = table.caption or (last.caption if last.caption.endswith("(continued)")
                                                  else f"{last.caption} (continued)".strip())
            out.append(table)
        i = j
    return out


def _aligned(a: Table, b: Table) -> bool:
    return len(a.columns) == len(b.columns) and all(abs(x[1] - y[1]) <= COLUMN_TOLERANCE
                                                    for x, y in zip(a.columns[1:], b.columns[1:]))


def _block(lines: list[Line], i: int):
    """The data rows starting at line ``i`` (label-only lines between them included), and the index
    after the block; (None, i) when line ``i`` does not start a statement."""
    if _cells(lines[i]) is None:
        return None, i
    rows: list[tuple[Line, tuple | None]] = []
    j = i
    data = 0
    while j < len(lines):
        ln = lines[j]
        cells = _cells(ln)
        if rows and ln.top - rows[-1][0].bottom > 2.2 * max(ln.size, 6.0):
            break   # a wide vertical gap ends the table
        if cells is None:
            text = ln.text
            # A label line (group heading, or a wrapped label) belongs to the table; prose does not.
            if len(ln.segments) != 1 or len(text) > 90 or text.rstrip().endswith("."):
                break
            nxt = _cells(lines[j + 1]) if j + 1 < len(lines) else None
            if nxt is None and not text.rstrip().endswith(":"):
                break
        else:
            data += 1
        rows.append((ln, cells))
        j += 1
    while rows and rows[-1][1] is None:
        rows.pop()
        j -= 1
    width = max((len(c[1]) for _, c in rows if c), default=0)
    if data < MIN_ROWS or width < 1 or sum(1 for _, c in rows if c and len(c[1]) >= 2) < 2 and width < 2:
        return None, i
    return rows, j


def _table(lines: list[Line], start: int, end: int, rows, page: int, page_size) -> Table | None:
    cols = _columns([c[1] for _, c in rows if c])
    if len(cols) < 1:
        return None
    label_right = min(c[0] for c in cols)
    # Header lines above the first row: text over the figure columns (years allowed, no amounts).
    header = [[] for _ in cols]
    units: list[str] = []
    top = rows[0][0].top
    k = start - 1
    used = 0
    while k >= 0 and used < MAX_HEADER_LINES:
        ln = lines[k]
        if lines[k + 1].top - ln.bottom > 2.2 * max(ln.size, 6.0):
            break
        over = [s for s in ln.segments if s.x1 > label_right - 2]
        left = [s for s in ln.segments if s.x1 <= label_right - 2]
        # A line reaching from the label side over the figures is a title, not a column header.
        if not over or any(_figure(s.text) or s.x0 < label_right - 8 for s in over):
            break
        for s in reversed(over):
            hit = [c for c, (x0, x1) in enumerate(cols) if min(s.x1, x1 + 4) - max(s.x0, x0 - 4) > 0]
            for c in hit or [_nearest(cols, s)]:
                header[c].insert(0, s.text)
        units[:0] = [s.text for s in left]
        top = ln.top
        used += 1
        k -= 1
    # Caption: short lines right above (a title, the company, the units).
    caption: list[str] = []
    while k >= 0 and len(caption) < MAX_CAPTION_LINES:
        ln = lines[k]
        text = ln.text.strip()
        if (len(ln.segments) != 1 or len(text) > 100 or (text.endswith(".") and len(text.split()) > 6)
                or lines[k + 1].top - ln.bottom > 2.2 * max(ln.size, 6.0)):
            break
        caption.insert(0, text)
        top = ln.top
        k -= 1
    return Table(page, (min(ln.x0 for ln, _ in rows), top, page_size[0] if not rows else max(ln.x1 for ln, _ in rows),
                        rows[-1][0].bottom), page_size, " ".join(caption + units),
                 [" ".join(units)] + [" ".join(h) for h in header], _rows(rows, cols), [(0.0, label_right), *cols])


def _rows(rows, cols) -> list[list[str]]:
    out: list[list[str]] = []
    group, group_x, nested, pending = "", 0.0, False, ""
    for ln, cells in rows:
        if cells is None:
            text = ln.text.strip()
            if text.endswith(":"):
                group, group_x, nested, pending = text, ln.x0, False, ""
            else:
                pending = f"{pending} {text}".strip()   # a label wrapped onto the next line
            continue
        label_segs, figures = cells
        label = " ".join(s.text for s in label_segs)
        if pending:
            label, pending = f"{pending} {label}", ""
        if group:
            # Items indented under the group label belong to it; back at its level the group is over
            # (in layouts without indents, a "Total ..." row closes it).
            x0 = label_segs[0].x0
            if label.lower().startswith("total"):
                pass    # "Total current assets" names itself
            elif x0 > group_x + 2:
                nested = True
                label = f"{group} {label}"
            elif nested or label.lower().startswith("total"):
                group = ""
            else:
                label = f"{group} {label}"
        row = [label] + [""] * len(cols)
        for seg in figures:
            c = _nearest(cols, seg)
            row[c + 1] = f"{row[c + 1]} {seg.text}".strip()
        out.append(row)
    return out


def broken(t: Table) -> bool:
    """A pdfplumber table that took a data row for its header or split ``$`` into its own column."""
    if any(_figure(h) or h.strip() in ("$", "%") for h in t.header):
        return True
    # A currency sign alone in a cell: its figure went to the next column.
    return any(isinstance(r, list) and any(x.strip() in ("$", "€", "£") for x in r) for r in t.rows)


def _overlap(a: Table, b: Table) -> bool:
    return min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1]) > 0 and min(a.bbox[2], b.bbox[2]) - max(a.bbox[0], b.bbox[0]) > 0


def merge(plumber: list[Table], mine: list[Table]) -> list[Table]:
    """One page's tables, top to bottom: a sound pdfplumber table wins over a statement read where it
    is (its cells come from the rulings); a broken one gives way to the statement."""
    keep = [t for t in plumber if not (broken(t) and any(_overlap(t, m) for m in mine))]
    keep += [m for m in mine if not any(_overlap(m, t) for t in keep)]
    return sorted(keep, key=lambda t: t.bbox[1])
