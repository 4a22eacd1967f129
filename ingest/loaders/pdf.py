"""PDF via pypdfium2 (PDFium: fast, robust on damaged files, Apache/BSD licensed).

Measured on ../shared/data/pdfs: PDFium extracts text several times faster than pypdf
(see bench/). pypdf is the fallback for files PDFium refuses, since it repairs some damage
PDFium does not.
"""

from __future__ import annotations

from pathlib import Path

from ingest.loaders import LoadError
from rag.settings import IngestSettings
from rag.types import Document, Page

MIN_PAGE_CHARS = 20  # fewer extracted characters than this on a page = no usable text layer


def _open(path: Path, passwords: list[str]):
    import pypdfium2 as pdfium

    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"%PDF-" not in head:
        shown = head[:8].decode("latin-1").encode("unicode_escape").decode()
        raise LoadError(f"not a PDF (no %PDF- header; starts with '{shown}')")
    try:
        return pdfium.PdfDocument(str(path)), []
    except pdfium.PdfiumError as e:
        msg = str(e)
        if "password" in msg.lower():
            # An empty user password is common (owner-password-only files); then the user's.
            for i, pw in enumerate(["", *passwords]):
                try:
                    doc = pdfium.PdfDocument(str(path), password=pw)
                except pdfium.PdfiumError:
                    continue
                return doc, ["encrypted: opened with " + ("the empty password" if not pw else f"password #{i}")]
            raise LoadError("encrypted: needs a password; pass it with --password PW "
                            "(or decrypt it first: qpdf --password=PW --decrypt in.pdf out.pdf)")
        return None, [f"PDFium could not open it ({msg.split('(')[-1].rstrip(')')}); tried pypdf"]


def _pypdf_pages(path: Path, max_pages: int) -> list[str]:
    import logging

    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its repair chatter is not for users

    try:
        reader = pypdf.PdfReader(str(path), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted: needs a password; decrypt it first")
        return [(p.extract_text() or "") for p in reader.pages[:max_pages]]
    except LoadError:
        raise
    except Exception as e:  # noqa: BLE001 - pypdf raises many types on damaged files
        raise LoadError(f"damaged PDF: {e.__class__.__name__}: {str(e)[:160]}") from None


def load_pdf(path: Path, settings: IngestSettings) -> Document:
    pdf, warnings = _open(path, settings.passwords)
    texts: list[str] = []
    total = 0
    if pdf is not None:
        try:
            total = len(pdf)
            for i in range(min(total, settings.max_pages)):
                page = pdf[i]
                try:
                    textpage = page.get_textpage()
                    texts.append(textpage.get_text_bounded())
                    textpage.close()
                except Exception as e:  # noqa: BLE001 - one bad page must not lose the others
                    warnings.append(f"page {i + 1}: text extraction failed ({e})")
                    texts.append("")
                finally:
                    page.close()
        finally:
            pdf.close()
    else:
        texts = _pypdf_pages(path, settings.max_pages)
        total = len(texts)
    if total == 0:
        raise LoadError("PDF has no pages (truncated or damaged)")
    if total > settings.max_pages:
        warnings.append(f"only the first {settings.max_pages} of {total} pages read "
                        "(raise ingest.max_pages to read more)")
    pages = [Page(i + 1, t.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", ""))
             for i, t in enumerate(texts)]
    empty = [p.number for p in pages if len(p.text.strip()) < MIN_PAGE_CHARS]
    if len(empty) == len(pages):
        raise LoadError(f"no text layer on any of its {len(pages)} page(s) (scanned or image-only); "
                        "install tesseract-ocr to OCR it")
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (" ..." if len(empty) > 10 else "")
        warnings.append(f"{len(empty)} page(s) without a text layer: {shown}")
    pages = [p for p in pages if p.number not in set(empty)]
    return Document(str(path), pages, {"format": "pdf", "pages": total}, warnings)
