import pytest

from ingest.loaders import LoadError, load
from rag.settings import IngestSettings
from tests.pdf_helpers import make_pdf

S = IngestSettings()


_pdf = make_pdf


def test_pdf_pages_are_numbered(tmp_path):
    doc = load(_pdf(tmp_path / "a.pdf", ["first page text here", "second page text here"]), S)
    assert [p.number for p in doc.pages] == [1, 2]
    assert "second page" in doc.pages[1].text


@pytest.mark.parametrize("content,reason", [
    (b"", "empty file"),
    (b"hello, I am not a pdf at all", "not a PDF"),
    (b"%PDF-1.4\n1 0 obj<<>>\n", "damaged|no pages"),
])
def test_bad_pdfs_have_reasons(tmp_path, content, reason):
    p = tmp_path / "bad.pdf"
    p.write_bytes(content)
    with pytest.raises(LoadError, match=reason):
        load(p, S)


def test_truncated_pdf_fails_or_keeps_text(tmp_path):
    p = _pdf(tmp_path / "t.pdf", ["some words on page one"] * 3)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    try:
        doc = load(p, S)
        assert doc.pages
    except LoadError as e:
        assert str(e)


def test_encrypted_with_empty_password_opens(tmp_path):
    doc = load(_pdf(tmp_path / "e.pdf", ["secret text on the page"], password=""), S)
    assert "secret text" in doc.pages[0].text
    # PDFium opens empty-user-password files directly (no password prompt needed)


def test_encrypted_needs_password(tmp_path):
    p = _pdf(tmp_path / "p.pdf", ["locked text on the page"], password="pw")
    with pytest.raises(LoadError, match="password"):
        load(p, S)
    doc = load(p, IngestSettings(passwords=["wrong", "pw"]))
    assert "locked text" in doc.pages[0].text


def test_text_invalid_utf8_is_kept_with_warning(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"good text \xff\xfe more text")
    doc = load(p, S)
    assert "good text" in doc.pages[0].text and "more text" in doc.pages[0].text
    assert "byte 10" in doc.warnings[0]


def test_markdown_title(tmp_path):
    p = tmp_path / "x.md"
    p.write_text("# The Title\n\nBody text.\n")
    assert load(p, S).metadata["title"] == "The Title"


def test_too_large_is_refused_with_the_setting_to_change(tmp_path):
    p = tmp_path / "big.txt"
    p.write_text("x" * 3000)
    with pytest.raises(LoadError, match="max_file_mb"):
        load(p, IngestSettings(max_file_mb=0.001))
