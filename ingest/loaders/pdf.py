"""PDF via pypdfium2 (PDFium: fast, robust on damaged files, Apache/BSD licensed).

Measured on ../shared/data/pdfs: PDFium extracts text several times faster than pypdf
(see bench/). pypdf is the fallback for files PDFium refuses, since it repairs some damage
PDFium does not.
"""

from __future__ import annotations

import re
from pathlib import Path

from ingest import ocr, pdf_context, statements, tables
from ingest.layout import strip_running
from ingest.loaders import LoadError
from ingest.pdf_lines import page_lines, text_lines
from rag.settings import IngestSettings
from rag.types import Document, Page

MIN_PAGE_CHARS = 20  # fewer extracted characters than this on a page = no usable text layer


def _open(path: Path, passwords: list[str]):
    """Returns (PDFium document or None, warnings, the password that opened it)."""
    import pypdfium2 as pdfium

    with open(path, "rb") as fh:
        head = fh.read(1024)
    if b"%PDF-" not in head:
        shown = head[:8].decode("latin-1").encode("unicode_escape").decode()
        raise LoadError(f"not a PDF (no %PDF- header; starts with '{shown}')")
    try:
        doc = pdfium.PdfDocument(str(path))
        # PDFium opens empty-user-password files without asking; the user still hears it was encrypted.
        return doc, ["encrypted: opened with the empty password"] if _encrypted(doc) else [], None
    except pdfium.PdfiumError as e:
        msg = str(e)
        if "password" in msg.lower():
            # An empty user password is common (owner-password-only files); then the user's.
            for i, pw in enumerate(["", *passwords]):
                try:
                    doc = pdfium.PdfDocument(str(path), password=pw)
                except pdfium.PdfiumError:
                    continue
                return doc, ["encrypted: opened with " + ("the empty password" if not pw else f"password #{i}")], pw
            raise LoadError("encrypted: needs a password; pass it with --password PW "
                            "(or decrypt it first: qpdf --password=PW --decrypt in.pdf out.pdf)")
        return None, [f"repaired: PDFium could not open it ({msg.split('(')[-1].rstrip(')')}); read with pypdf"], None


def _encrypted(doc) -> bool:
    from pypdfium2 import raw

    return raw.FPDF_GetSecurityHandlerRevision(doc.raw) != -1


def _pypdf_pages(path: Path, max_pages: int, warnings: list[str]) -> list[str]:
    import logging

    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its repair chatter is not for users

    try:
        reader = pypdf.PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            if not reader.decrypt(""):
                raise LoadError("encrypted: needs a password; decrypt it first")
            warnings.append("encrypted: opened with the empty password")
        return [(p.extract_text() or "") for p in reader.pages[:max_pages]]
    except LoadError:
        raise
    except Exception as e:  # noqa: BLE001 - pypdf raises many types on damaged files
        raise LoadError(f"damaged PDF: {e.__class__.__name__}: {str(e)[:160]}") from None


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:10])) + (" ..." if len(numbers) > 10 else "")
    return ("page " if len(numbers) == 1 else "pages ") + shown


def load_pdf(path: Path, settings: IngestSettings) -> Document:
    pdf, warnings, password = _open(path, settings.passwords)
    texts: list[str] = []
    kinds: list[str] = []          # what a page holds besides its text (_BLANK, _UNMAPPED, ...)
    lines: dict = {}               # page number -> ingest.pdf_lines.Line list (for headings)
    info: dict = {}                # the PDF's metadata dictionary (Title, Subject, ...)
    ocr_pages: set[int] = set()
    tried_ocr: set[int] = set()
    n_tables = 0
    ocr_reason = None if settings.ocr == "off" else ocr.available(settings.ocr_lang)
    if settings.ocr == "force" and ocr_reason:
        raise LoadError(f"ingest.ocr is 'force' but {ocr_reason}")
    total = 0
    if pdf is not None:
        try:
            total = len(pdf)
            info = _metadata(pdf)
            candidates: list[int] = []
            found: dict[int, list] = {}    # page number -> statement tables read from text geometry
            for i in range(min(total, settings.max_pages)):
                try:
                    page = pdf[i]
                except Exception as e:  # noqa: BLE001 - a damaged page object loses that page only
                    warnings.append(f"page {i + 1}: cannot be loaded ({e})")
                    texts.append("")
                    kinds.append(_PLAIN)
                    continue
                textpage = None
                try:
                    textpage = page.get_textpage()
                    text = textpage.get_text_bounded()
                    # Control characters and private-use glyphs are what fonts without a Unicode map give.
                    readable = _readable(text)
                    kind = _kind(page, textpage) if readable < MIN_PAGE_CHARS else _PLAIN
                    if not readable:
                        text = ""
                    if settings.ocr == "force" or (readable < MIN_PAGE_CHARS and kind != _BLANK and not ocr_reason
                                                  and settings.ocr == "auto"):
                        tried_ocr.add(i + 1)
                        read = ocr.ocr_pdf_page(page, settings.ocr_lang)
                        # A short text layer may be all the page says ("Secret!"): OCR replaces it only
                        # when it reads more.
                        if (read.words and read.confidence >= ocr.MIN_CONF
                                and len(read.text.strip()) > (0 if settings.ocr == "force" else readable)):
                            text = read.text
                            ocr_pages.add(i + 1)
                            if read.rotated:
                                warnings.append(f"page {i + 1}: scanned upside down or sideways; "
                                                f"turned {read.rotated} degrees before OCR")
                    if (i + 1) not in ocr_pages and readable:
                        _layout(page, textpage, text, i + 1, lines, found, warnings)
                        if tables.may_have_table(page):
                            candidates.append(i + 1)
                    texts.append(text)
                    kinds.append(kind)
                except Exception as e:  # noqa: BLE001 - one bad page must not lose the others
                    warnings.append(f"page {i + 1}: text extraction failed ({e})")
                    texts.append("")
                    kinds.append(_PLAIN)
                finally:
                    if textpage is not None:
                        textpage.close()
                    page.close()
            if candidates or found:
                n_tables = _add_tables(pdf, path, password, candidates, texts, warnings,
                                       tables.block_chars(settings.chunk_size), found)
        finally:
            pdf.close()
    else:
        texts = _pypdf_pages(path, settings.max_pages, warnings)
        kinds = [_PLAIN] * len(texts)
        total = len(texts)
    if total == 0:
        raise LoadError("PDF has no pages (truncated or damaged)")
    if total > settings.max_pages:
        warnings.append(f"truncated: only the first {settings.max_pages} of {total} pages read "
                        "(raise ingest.max_pages to read more)")
    texts = [t.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "") for t in texts]
    texts, running, running_lines = strip_running(texts)
    cover = "\n".join(texts[:2])
    pages = [Page(i + 1, t, ocr=(i + 1) in ocr_pages) for i, t in enumerate(texts)]
    # A page with any text is kept (it may be the only text); only pages with none are reported.
    empty = [p.number for p in pages if not p.text.strip()]
    if ocr_reason and settings.ocr != "off":
        why = f"install tesseract-ocr to OCR it ({ocr_reason})" if "not installed" in ocr_reason else ocr_reason
    elif settings.ocr == "off":
        why = "OCR is off (ingest.ocr)"
    else:
        why = "OCR found no readable text"
    groups = _empty_groups(empty, kinds, tried_ocr)
    if len(empty) == len(pages):
        note = "; ".join(w for w in warnings if w.startswith("encrypted"))
        raise LoadError((f"{note}; " if note else "") + _all_empty(len(pages), groups, why))
    warnings += [_reason(kind, _page_list(numbers), why) for kind, numbers in groups.items()]
    stats = {"pages": total, "text_pages": len(pages) - len(empty) - len(ocr_pages & {p.number for p in pages}),
             "ocr_pages": len(ocr_pages), "empty_pages": len(empty), "tables": n_tables,
             "running_lines_removed": running}
    pages = [p for p in pages if p.number not in set(empty)]
    meta = {"format": "pdf", "pages": total, "stats": stats}
    return Document(str(path), pages, _context(meta, info, cover, running_lines, lines, pages), warnings)


def _layout(page, textpage, text: str, number: int, lines: dict, found: dict, warnings: list[str]) -> None:
    """Text lines (for headings) and statement tables of one page; a failure loses only those.

    Lines with cell geometry cost ~10x PDFium's text, so only pages whose text has rows of figures
    get them; the others get PDFium's lines (enough for headings)."""
    try:
        if not statements.may_hold(text):
            lines[number] = text_lines(page, textpage)
            return
        lines[number] = page_lines(page)
        last = found.get(number - 1, [None])[-1]   # a statement may run on from the page before
        if mine := statements.find(lines[number], number, page.get_size(), last):
            found[number] = mine
    except Exception as e:  # noqa: BLE001 - the page text is already read; keep it
        warnings.append(f"page {number}: layout analysis failed ({e.__class__.__name__}); "
                        "headings and statement tables of this page not read")


def _metadata(pdf) -> dict:
    try:
        return pdf.get_metadata_dict()
    except Exception:  # noqa: BLE001 - unreadable metadata loses the title only
        return {}


def _context(meta: dict, info: dict, cover: str, running: list[str], lines: dict, pages: list[Page]) -> dict:
    """Title, identity and heading paths (``rag.chunking`` builds each chunk's context line from them)."""
    from rag.chunking import CONTEXT_KEY, SECTIONS_KEY

    found = pdf_context.headings(lines, {pdf_context.line_key(r) for r in running})
    title = pdf_context.title(info, found)
    ident = pdf_context.identity(cover, running)
    if title:
        meta["title"] = title
    meta[CONTEXT_KEY] = {"title": title, "identity": ident}
    entries = pdf_context.sections({p.number: p.text for p in pages}, found)
    if entries:
        meta[SECTIONS_KEY] = entries
    return meta


# What a page without text holds, for a true reason: nothing at all, glyphs without a Unicode map,
# or only images and drawings (a scan, if OCR also finds nothing).
_PLAIN, _BLANK, _UNMAPPED = "plain", "blank", "unmapped"


def _kind(page, textpage) -> str:
    from pypdfium2 import raw

    if raw.FPDFPage_CountObjects(page.raw) == 0:
        return _BLANK
    # The whole text layer, also what lies outside the page box (that is not shown, not unmapped).
    unmapped = textpage.count_chars() > 0 and not _readable(textpage.get_text_range())
    return _UNMAPPED if unmapped else _PLAIN


_UNREADABLE = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ue000-\uf8ff\ufffd\ufffe\uffff]")


def _readable(text: str) -> int:
    return len(_UNREADABLE.sub("", text))


# (what the page lacks, why) for each kind of empty page: "{n}" becomes "page 3" or "any of its 4 page(s)".
_REASONS = {
    _BLANK: ("blank: no text layer and nothing drawn on {n}", ""),
    _UNMAPPED: ("text in fonts without a Unicode map on {n} (cannot be read as text)", "why"),
    "scanned": ("no text layer on {n} (scanned or image-only)", "why"),
    _PLAIN: ("no text layer on {n}", "why"),
}


def _empty_groups(empty: list[int], kinds: list[str], tried_ocr: set[int]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for n in empty:
        kind = kinds[n - 1] if n - 1 < len(kinds) else _PLAIN
        if kind == _PLAIN and n in tried_ocr:
            kind = "scanned"    # only when OCR ran and found nothing either
        groups.setdefault(kind, []).append(n)
    return groups


def _reason(kind: str, where: str, why: str) -> str:
    text, needs_why = _REASONS[kind]
    return text.format(n=where) + (f"; {why}" if needs_why else "")


def _all_empty(n_pages: int, groups: dict[str, list[int]], why: str) -> str:
    if len(groups) == 1:
        return _reason(next(iter(groups)), f"any of its {n_pages} page(s)", why)
    return f"no text on any of its {n_pages} page(s): " + "; ".join(
        _reason(kind, _page_list(numbers), why) for kind, numbers in groups.items())


def _page_text(page) -> str:
    textpage = page.get_textpage()
    try:
        return textpage.get_text_bounded()
    finally:
        textpage.close()


def _add_tables(pdf, path: Path, password: str | None, candidates: list[int], texts: list[str],
                warnings: list[str], budget: int, mine: dict[int, list]) -> int:
    """Put the tables found on candidate pages (pdfplumber) and the statements read from text
    geometry (``mine``) into those pages' text; returns how many."""
    found: dict[int, list] = {}
    try:
        found = tables.extract_tables(path, candidates, password) if candidates else {}
    except Exception as e:  # noqa: BLE001 - pdfminer fails on some files PDFium reads fine
        warnings.append(f"table extraction failed ({e.__class__.__name__}); tables kept as plain text")
    merged = {n: statements.merge(found.get(n, []), mine.get(n, [])) for n in sorted(set(found) | set(mine))}
    count = 0
    for number, page_tables in merged.items():
        blocks = []
        for t in page_tables:
            count += 1
            blocks.append("\n\n".join(tables.to_blocks(t, count, budget)))
        page = pdf[number - 1]
        try:
            texts[number - 1] = _weave(page, texts[number - 1], page_tables, blocks)
        finally:
            page.close()
    return count


def _weave(page, plain: str, page_tables: list, blocks: list[str]) -> str:
    """Page text with each table's flattened text replaced by its Markdown blocks, in place.

    Only for upright pages where no text sits beside a table: the page is cut into horizontal
    bands between tables and PDFium reads each band. Otherwise the blocks follow the page text.
    """
    width, height = page.get_size()
    appended = plain + "\n\n" + "\n\n".join(blocks)
    if page.get_rotation() or any(abs(t.page_size[1] - height) > 1 for t in page_tables):
        return appended
    textpage = page.get_textpage()
    try:
        # pdfplumber measures from the top edge, PDFium from the bottom.
        def text_in(x0: float, top: float, x1: float, bottom: float) -> str:
            return textpage.get_text_bounded(left=x0, bottom=height - bottom, right=x1, top=height - top)

        for t in page_tables:
            beside = text_in(0, t.bbox[1], t.bbox[0], t.bbox[3]) + text_in(t.bbox[2], t.bbox[1], width, t.bbox[3])
            if len(beside.strip()) > 20:   # a table in one column of a multi-column page
                return appended
        parts, top = [], 0.0
        for t, block in zip(page_tables, blocks):
            parts += [text_in(0, top, width, t.bbox[1]).strip(), block]
            top = t.bbox[3]
        parts.append(text_in(0, top, width, height).strip())
    finally:
        textpage.close()
    return "\n\n".join(p for p in parts if p)
