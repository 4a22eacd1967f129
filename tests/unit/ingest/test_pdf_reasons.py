"""A PDF page's failure reason is the true one: short text is kept, blank is blank, "scanned" only after
OCR ran and found nothing, unmapped fonts are named, and an encrypted file says it was opened."""

from __future__ import annotations

import pytest

from ingest.loaders import LoadError, load
from rag.settings import IngestSettings
from tests.conftest import shared
from tests.pdf_helpers import make_pdf

pytest.importorskip("reportlab")


_pdf = make_pdf


def _unmapped_pdf(path):
    """One page of text in a Type3 font whose glyphs have made-up names and no ToUnicode map:
    PDFium extracts control characters, not words (as with subset fonts stripped of their maps)."""
    glyph = b"0 0 0 0 10 10 d1 0 0 10 10 re f"   # every glyph a filled square
    content = b"BT /F1 12 Tf 20 100 Td (" + b"\x01\x02\x03" * 10 + b") Tj ET"
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Resources << /Font << /F1 4 0 R >> >> "
         b"/Contents 6 0 R >>"),
        (b"<< /Type /Font /Subtype /Type3 /FontBBox [0 0 10 10] /FontMatrix [0.1 0 0 0.1 0 0] "
         b"/CharProcs << /g1 5 0 R /g2 5 0 R /g3 5 0 R >> /Encoding << /Type /Encoding /Differences [1 /g1 /g2 /g3] >> "
         b"/FirstChar 1 /LastChar 3 /Widths [12 12 12] >>"),
        b"<< /Length %d >>\nstream\n" % len(glyph) + glyph + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def test_short_text_page_is_kept(tmp_path):
    doc = load(_pdf(tmp_path / "s.pdf", ["Secret!"]), IngestSettings())
    assert [p.text.strip() for p in doc.pages] == ["Secret!"]
    assert not doc.warnings


def test_password_file_with_short_text_opens_and_says_so(tmp_path):
    doc = load(_pdf(tmp_path / "p.pdf", ["Secret!"], password="pw"), IngestSettings(passwords=["pw"]))
    assert doc.pages[0].text.strip() == "Secret!"
    assert any(w.startswith("encrypted: opened with password") for w in doc.warnings)


def test_empty_user_password_is_a_note(tmp_path):
    doc = load(_pdf(tmp_path / "e.pdf", ["quarterly figures on this page"], password=""), IngestSettings())
    assert "encrypted: opened with the empty password" in doc.warnings


def test_encrypted_note_survives_a_failure(tmp_path):
    with pytest.raises(LoadError, match=r"^encrypted: opened with the empty password; blank"):
        load(_pdf(tmp_path / "eb.pdf", [None], password=""), IngestSettings(ocr="off"))


def test_fonts_without_unicode_map_are_named(tmp_path):
    with pytest.raises(LoadError, match="fonts without a Unicode map on any of its 1 page") as err:
        load(_unmapped_pdf(tmp_path / "u.pdf"), IngestSettings())
    assert "scanned" not in str(err.value)


def test_blank_page_is_called_blank(tmp_path):
    doc = load(_pdf(tmp_path / "b.pdf", ["The first page has the words.", None]), IngestSettings())
    assert [p.number for p in doc.pages] == [1]
    assert doc.warnings == ["blank: no text layer and nothing drawn on page 2"]
    with pytest.raises(LoadError, match=r"^blank: no text layer and nothing drawn on any of its 2 page"):
        load(_pdf(tmp_path / "bb.pdf", [None, None]), IngestSettings())


def test_scanned_is_said_only_after_ocr_ran(tmp_path):
    from tests.integration.test_ocr import _scanned_pdf

    pdf = _scanned_pdf(tmp_path / "scan.pdf", [(["A page of words that only exist as pixels."], 0)])
    with pytest.raises(LoadError, match="no text layer on any of its 1 page") as err:
        load(pdf, IngestSettings(ocr="off"))
    assert "scanned" not in str(err.value) and "OCR is off" in str(err.value)


def test_repeated_one_line_pages_are_not_emptied():
    # Each of the 4 pages holds the same line: it is the content, not a running header.
    doc = load(shared("pdfs", "sample-files", "habibi-rotated.pdf"), IngestSettings())
    assert [p.number for p in doc.pages] == [1, 2, 3, 4]
    assert all("habibi" in p.text for p in doc.pages)
    assert not any("OCR" in w for w in doc.warnings)
