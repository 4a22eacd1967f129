"""OCR of image-only pages with Tesseract: upright and rotated scans, page numbers and chunk flags."""

from __future__ import annotations

import shutil

import pytest

from ingest.loaders import LoadError, load
from rag.chunking import split_document
from rag.settings import IngestSettings
from tests.conftest import shared

LINES = ["The quarterly report shows revenue grew by twelve percent.",
         "Customer retention improved across every region we measured.",
         "Shipping delays fell after the new warehouse opened in March."]
WORDS = {"quarterly", "revenue", "retention", "region", "warehouse", "March"}

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract not installed (scripts/system-deps.sh installs it)")


def _scanned_pdf(path, pages: list[tuple[list[str], int]]):
    """An image-only PDF: text drawn with reportlab, rasterised by PDFium, turned, saved as images."""
    import pypdfium2 as pdfium
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    src = path.with_suffix(".src.pdf")
    c = canvas.Canvas(str(src), pagesize=A4)
    for lines, _ in pages:
        c.setFont("Helvetica", 14)
        for i, line in enumerate(lines):
            c.drawString(72, 760 - 24 * i, line)
        c.showPage()
    c.save()
    doc = pdfium.PdfDocument(str(src))
    images = [doc[i].render(scale=200 / 72, grayscale=True).to_pil().rotate(rot, expand=True)
              for i, (_, rot) in enumerate(pages)]
    images[0].save(path, "PDF", resolution=200, save_all=True, append_images=images[1:])
    return path


@needs_tesseract
def test_scanned_pages_are_ocrd_in_place(tmp_path):
    pdf = _scanned_pdf(tmp_path / "scan.pdf", [(LINES, 0), (["Page two says the board approved a dividend."], 0)])
    doc = load(pdf, IngestSettings())
    assert [p.number for p in doc.pages] == [1, 2] and all(p.ocr for p in doc.pages)
    found = {w for w in WORDS if w in doc.pages[0].text}
    assert len(found) >= 5, doc.pages[0].text
    assert "dividend" in doc.pages[1].text
    assert doc.metadata["stats"]["ocr_pages"] == 2
    pieces = split_document(doc, 1000, 0)
    assert pieces and all(p.meta.get("ocr") is True for p in pieces)


@needs_tesseract
@pytest.mark.parametrize("rotation", [90, 180])
def test_rotated_scan_is_turned_upright(tmp_path, rotation):
    pdf = _scanned_pdf(tmp_path / "rot.pdf", [(LINES, rotation)])
    doc = load(pdf, IngestSettings())
    found = {w for w in WORDS if w in doc.pages[0].text}
    assert len(found) >= 5, doc.pages[0].text
    assert doc.pages[0].ocr


@needs_tesseract
def test_text_layer_pages_are_not_ocrd_and_mixed_doc_keeps_numbers(tmp_path):
    from pypdf import PdfReader, PdfWriter
    from reportlab.pdfgen import canvas

    text_pdf = tmp_path / "text.pdf"
    c = canvas.Canvas(str(text_pdf))
    c.drawString(72, 720, "This page has a real text layer with enough characters.")
    c.save()
    scan = _scanned_pdf(tmp_path / "scan.pdf", [(LINES, 0)])
    w = PdfWriter()
    for f in (text_pdf, scan):
        w.append(PdfReader(str(f)))
    w.write(tmp_path / "mixed.pdf")
    doc = load(tmp_path / "mixed.pdf", IngestSettings())
    assert [(p.number, p.ocr) for p in doc.pages] == [(1, False), (2, True)]
    pieces = split_document(doc, 60, 0)
    assert all(p.meta.get("ocr") is (True if p.page == 2 else None) for p in pieces)


def test_without_ocr_scanned_pages_are_reported_not_dropped(tmp_path):
    pytest.importorskip("reportlab")
    pdf = _scanned_pdf(tmp_path / "scan.pdf", [(LINES, 0)])
    with pytest.raises(LoadError, match="no text layer.*OCR is off"):
        load(pdf, IngestSettings(ocr="off"))


def test_missing_tesseract_is_named(tmp_path, monkeypatch):
    from ingest import ocr

    monkeypatch.setattr(ocr, "tesseract_path", lambda: None)
    pdf = _scanned_pdf(tmp_path / "scan.pdf", [(LINES, 0)])
    with pytest.raises(LoadError, match="install tesseract-ocr"):
        load(pdf, IngestSettings())
    with pytest.raises(LoadError, match="'force' but tesseract is not installed"):
        load(pdf, IngestSettings(ocr="force"))


@needs_tesseract
def test_shared_image_only_files_finish_with_a_reason():
    # The ImageMagick samples are 16x16 pixel images: OCR runs, finds nothing, says so.
    pdf = shared("pdfs", "sample-files", "imagemagick-images.pdf")
    with pytest.raises(LoadError, match="no text layer on any of its 6 page.*OCR found no readable text"):
        load(pdf, IngestSettings())
