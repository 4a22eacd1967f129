"""The grid pre-test keeps every table of the shared PDFs: pdfplumber over the pages the old
line-count test picked (pre-test disabled) and over the pages that also pass the grid test find the
same tables, caption, header and rows alike."""

from __future__ import annotations

import pypdfium2 as pdfium
import pytest

from ingest import tables
from ingest.table_candidates import forms_grid
from tests.conftest import shared

pytestmark = pytest.mark.slow


def _candidates(root):
    before, after = {}, {}
    for f in sorted(root.rglob("*.pdf")):
        try:
            doc = pdfium.PdfDocument(str(f))
        except Exception:  # noqa: BLE001 - encrypted/broken files are in the corpus on purpose
            continue
        for i in range(len(doc)):
            page = doc[i]
            horizontal, vertical = tables.rulings(page)
            if horizontal >= 3 and vertical >= 2:          # the test without the grid pre-test
                before.setdefault(f, []).append(i + 1)
                if forms_grid(page):
                    after.setdefault(f, []).append(i + 1)
            assert tables.may_have_table(page) == (f in after and i + 1 in after[f])
            page.close()
        doc.close()
    return before, after


def _listing(path, pages):
    found = tables.extract_tables(path, pages) if pages else {}
    return [(n, t.caption, tuple(t.header), len(t.rows), repr(t.rows[:3])) for n, ts in sorted(found.items())
            for t in ts]


def test_shared_pdf_tables_unchanged_by_the_grid_pretest():
    root = shared("pdfs")
    before, after = _candidates(root)
    listed_before, listed_after = [], []
    for f, pages in before.items():
        assert set(after.get(f, [])) <= set(pages)
        listed_before += [(f.name, *t) for t in _listing(f, pages)]
        listed_after += [(f.name, *t) for t in _listing(f, after.get(f, []))]
    assert listed_after == listed_before
    assert len({(t[0], t[1]) for t in listed_before}) >= 50      # pages holding tables (65 when written)
    assert sum(map(len, after.values())) < sum(map(len, before.values()))   # it does skip pages
