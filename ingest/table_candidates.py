"""Cheap pre-test for ruled tables: do the page's ruling lines actually form a grid?

pdfplumber (``ingest.tables.extract_tables``) costs ~0.1 s per page and finds tables only where
horizontal and vertical edges cross into cells. ``ingest.tables.rulings`` counts distinct lines,
which also passes pages with a frame, underlines and a few separators that never meet (half of
the candidate pages of the shared PDFs held no table). This test rebuilds the straight segments in
page space with pdfplumber's tolerances (3 pt snap, join and intersection) and asks for what
``ingest.tables`` keeps at the least: two cells side by side (two horizontal lines crossed by three
common verticals) and three horizontal lines meeting verticals (a header and a data row). It reads PDFium's path
objects only (well under a millisecond on most pages).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

TOL = 3.0               # pt: pdfplumber's snap / join / intersection tolerance (table_settings defaults)
MIN_EDGE = 3.0          # pt: pdfplumber's edge_min_length
MAX_SEGMENTS = 20000    # huge drawings (maps, plots): give up and let pdfplumber decide
MAX_LINES = 400         # per direction; more merged lines than this: also let pdfplumber decide

Matrix = tuple[float, float, float, float, float, float]
_IDENTITY: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


def _compose(inner: Matrix, outer: Matrix) -> Matrix:
    a, b, c, d, e, f = inner
    A, B, C, D, E, F = outer
    return (a * A + b * C, a * B + b * D, c * A + d * C, c * B + d * D, e * A + f * C + E, e * B + f * D + F)


def _matrix(obj) -> Matrix:
    from pypdfium2 import raw

    m = raw.FS_MATRIX()
    if not raw.FPDFPageObj_GetMatrix(obj, ctypes.byref(m)):
        return _IDENTITY
    return (m.a, m.b, m.c, m.d, m.e, m.f)


def _paths(page) -> Iterator[tuple[object, Matrix]]:
    """Path objects with their page-space matrix, at top level and inside (nested) forms."""
    from pypdfium2 import raw

    def walk(count, get, outer: Matrix, depth: int):
        for i in range(count):
            obj = get(i)
            kind = raw.FPDFPageObj_GetType(obj)
            if kind == raw.FPDF_PAGEOBJ_PATH:
                yield obj, _compose(_matrix(obj), outer)
            elif kind == raw.FPDF_PAGEOBJ_FORM and depth < 4:
                yield from walk(raw.FPDFFormObj_CountObjects(obj), lambda j, o=obj: raw.FPDFFormObj_GetObject(o, j),
                                _compose(_matrix(obj), outer), depth + 1)

    yield from walk(raw.FPDFPage_CountObjects(page.raw), lambda i: raw.FPDFPage_GetObject(page.raw, i),
                    _IDENTITY, 0)


def segments(page, cap: int = MAX_SEGMENTS) -> tuple[list, list] | None:
    """Horizontal ``(y, x0, x1)`` and vertical ``(x, y0, y1)`` straight segments in page space;
    None when the page draws more than ``cap`` segments."""
    from pypdfium2 import raw

    hs, vs = [], []
    x, y = ctypes.c_float(), ctypes.c_float()
    seen = 0
    for obj, (a, b, c, d, e, f) in _paths(page):
        n = raw.FPDFPath_CountSegments(obj)
        seen += max(0, n)
        if seen > cap:
            return None
        first = prev = None
        for k in range(n):
            seg = raw.FPDFPath_GetPathSegment(obj, k)
            if not raw.FPDFPathSegment_GetPoint(seg, x, y):
                continue
            point = (a * x.value + c * y.value + e, b * x.value + d * y.value + f)
            kind = raw.FPDFPathSegment_GetType(seg)
            if kind == raw.FPDF_SEGMENT_MOVETO:
                first = point
            elif prev is not None:
                # Bezier pieces count too: pdfplumber turns a curve's points into edges as well.
                _add(prev, point, hs, vs)
            if raw.FPDFPathSegment_GetClose(seg) and first is not None:
                _add(point, first, hs, vs)
            prev = point
    return hs, vs


def _add(p, q, hs: list, vs: list) -> None:
    if abs(p[1] - q[1]) < 0.5 and p[0] != q[0]:
        hs.append(((p[1] + q[1]) / 2, min(p[0], q[0]), max(p[0], q[0])))
    elif abs(p[0] - q[0]) < 0.5 and p[1] != q[1]:
        vs.append(((p[0] + q[0]) / 2, min(p[1], q[1]), max(p[1], q[1])))


def merge(lines: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Snap collinear segments (positions within TOL) and join overlapping or near ones (gap <= TOL),
    dropping what stays shorter than MIN_EDGE, as pdfplumber does before intersecting."""
    out = []
    rows: list[list] = []
    for pos, a, b in sorted(lines):
        if rows and pos - rows[-1][0][0] <= TOL:
            rows[-1].append((pos, a, b))
        else:
            rows.append([(pos, a, b)])
    for row in rows:
        pos = sum(p for p, _, _ in row) / len(row)
        spans = sorted((a, b) for _, a, b in row)
        start, end = spans[0]
        for a, b in spans[1:]:
            if a <= end + TOL:
                end = max(end, b)
            else:
                out.append((pos, start, end))
                start, end = a, b
        out.append((pos, start, end))
    return [line for line in out if line[2] - line[1] >= MIN_EDGE]


def forms_grid(page) -> bool:
    """True when the ruling lines could hold a table ``ingest.tables`` keeps (>= 2 rows x 2 columns
    of cells); True as well when the page is too busy to tell (pdfplumber then decides)."""
    found = segments(page)
    if found is None:
        return True
    hs, vs = merge(found[0]), merge(found[1])
    if len(hs) < 3 or len(vs) < 3:
        return False
    if len(hs) > MAX_LINES or len(vs) > MAX_LINES:
        return True
    # crosses[i]: bitmask of the vertical lines horizontal line i meets (within TOL at both ends).
    crosses = []
    for y, x0, x1 in hs:
        mask = 0
        for j, (x, y0, y1) in enumerate(vs):
            if x0 - TOL <= x <= x1 + TOL and y0 - TOL <= y <= y1 + TOL:
                mask |= 1 << j
        crosses.append(mask)
    # Two cells side by side: two horizontal lines sharing >= 3 verticals. A kept table also has a
    # header and a data row, so >= 3 horizontal lines must each meet >= 2 verticals.
    if sum(1 for m in crosses if m.bit_count() >= 2) < 3:
        return False
    return any((crosses[i] & crosses[k]).bit_count() >= 3
               for i in range(len(hs)) for k in range(i + 1, len(hs)))
