"""Small PDFs written by the tests themselves (reportlab + pypdf), for loader tests."""

from __future__ import annotations


def make_pdf(path, pages: list[str | None], password: str | None = None):
    """One page per entry: its text, or None for a page with nothing drawn on it; encrypted with
    ``password`` (owner password "owner") when given."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    for text in pages:
        if text is not None:
            c.drawString(72, 720, text)
        c.showPage()
    c.save()
    if password is not None:
        import pypdf

        w = pypdf.PdfWriter(clone_from=str(path))
        w.encrypt(user_password=password, owner_password="owner")
        w.write(str(path))
    return path
