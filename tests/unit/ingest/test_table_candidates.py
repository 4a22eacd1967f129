"""The grid pre-test on PDFs drawn here with ReportLab: a ruled table passes; a frame, underlines
and separators that never meet do not; lines drawn inside a form XObject or a transformed
graphics state are placed in page space."""

from __future__ import annotations

import pypdfium2 as pdfium
import pytest

from ingest.table_candidates import forms_grid, merge

pytest.importorskip("reportlab")


def _pdf(tmp_path, draw) -> pdfium.PdfPage:
    from reportlab.lib.pagesizes import letter
    from reportlab.pdfgen import canvas

    path = tmp_path / "p.pdf"
    c = canvas.Canvas(str(path), pagesize=letter)
    draw(c)
    c.showPage()
    c.save()
    return pdfium.PdfDocument(str(path))[0]


def _grid(c, x0=72, y0=400, cols=3, rows=3, w=80, h=20):
    for r in range(rows + 1):
        c.line(x0, y0 + r * h, x0 + cols * w, y0 + r * h)
    for k in range(cols + 1):
        c.line(x0 + k * w, y0, x0 + k * w, y0 + rows * h)


def test_ruled_table_passes(tmp_path):
    assert forms_grid(_pdf(tmp_path, _grid))


def test_grid_of_rectangles_passes(tmp_path):
    def draw(c):
        for r in range(3):
            for k in range(2):
                c.rect(100 + 90 * k, 500 + 25 * r, 90, 25)
    assert forms_grid(_pdf(tmp_path, draw))


def test_grid_inside_a_form_and_a_transform_passes(tmp_path):
    def draw(c):
        c.beginForm("tbl")
        _grid(c, x0=0, y0=0)
        c.endForm()
        c.saveState()
        c.translate(100, 300)
        c.scale(0.8, 0.8)
        c.doForm("tbl")
        c.restoreState()
    assert forms_grid(_pdf(tmp_path, draw))


def test_lines_meet_only_in_page_space(tmp_path):
    """Horizontals drawn under a translation, verticals without: they cross only once the
    transformation is applied (ignoring it would put the horizontals 300 pt away)."""
    def draw(c):
        c.saveState()
        c.translate(100, 300)
        for r in range(4):
            c.line(0, r * 20, 240, r * 20)
        c.restoreState()
        for k in range(4):
            c.line(100 + k * 80, 300, 100 + k * 80, 360)
    assert forms_grid(_pdf(tmp_path, draw))


def test_lines_that_do_not_meet_fail(tmp_path):
    def draw(c):
        c.rect(36, 36, 540, 720)                      # a page frame: one cell, no table
        for y in (600, 560, 520, 480):                # underlines / separators
            c.line(100, y, 300, y)
        for x in (400, 450, 500):                     # vertical rules beside them, never crossing
            c.line(x, 100, x, 200)
    assert not forms_grid(_pdf(tmp_path, draw))


def test_one_row_of_cells_fails(tmp_path):
    assert not forms_grid(_pdf(tmp_path, lambda c: _grid(c, rows=1)))


def test_merge_joins_pieces_and_snaps():
    # one line drawn in three pieces with 2 pt gaps and 1 pt of jitter: one line, as in pdfplumber
    assert merge([(100.0, 0.0, 50.0), (101.0, 52.0, 100.0), (100.5, 101.0, 150.0)]) == [(100.5, 0.0, 150.0)]
    assert len(merge([(100.0, 0.0, 50.0), (100.0, 60.0, 100.0)])) == 2   # a 10 pt gap stays a gap
    assert merge([(5.0, 0.0, 2.0)]) == []                                  # shorter than pdfplumber keeps
