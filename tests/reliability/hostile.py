"""A generated corpus of hostile files, built in a temp folder from a seed.

``build(folder, seed)`` writes every file and returns ``{relative name: Expect}``: whether the
file must be ingested, must fail (with a reason containing ``reason``), or may do either (damage
that a parser may or may not repair), plus a warning the ingested file must carry.
Used by tests/reliability/test_hostile_files.py and bench/kill_soak.py.
"""

from __future__ import annotations

import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOOD_PDF = ROOT / "data" / "sample" / "gettysburg.pdf"
BIG_LINE_MB = 50        # one line of this many MB: over the limit the test sets
MAX_FILE_MB = 20        # what the test sets ingest.max_file_mb to
MAX_PAGES = 50          # what the test sets ingest.max_pages to
HUGE_PAGES = 20_000


@dataclass(frozen=True)
class Expect:
    outcome: str            # "ingested" | "failed" | "either"
    reason: str = ""        # substring of the failure reason
    warning: str = ""       # substring of a warning on the ingested file


def pdf_from_objects(objects: list[bytes], root: int = 1, trailer_extra: bytes = b"") -> bytes:
    """A syntactically valid PDF (header, objects, xref table, trailer) from raw object bodies."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objects) + 1, root, trailer_extra, xref))
    return out.getvalue()


def _text_page_objects(text: bytes, kids: bytes, extra_page: bytes = b"") -> list[bytes]:
    stream = b"BT /F1 18 Tf 72 720 Td (" + text + b") Tj ET"
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> " + extra_page + b">>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]


def cyclic_pages_pdf() -> bytes:
    """The /Pages node lists itself (and the catalog) among its kids: a cycle in the page tree."""
    return pdf_from_objects(_text_page_objects(b"A page tree that loops back on itself.", b"2 0 R 3 0 R 1 0 R"))


def self_parent_pdf() -> bytes:
    """A page whose /Parent is itself and a Pages node whose /Parent is the page."""
    objs = _text_page_objects(b"Parents pointing in circles.", b"3 0 R")
    objs[1] = b"<< /Type /Pages /Kids [3 0 R] /Count 1 /Parent 3 0 R >>"
    objs[2] = objs[2].replace(b"/Parent 2 0 R", b"/Parent 3 0 R")
    return pdf_from_objects(objs)


def nested_arrays_pdf(depth: int) -> bytes:
    """``depth`` nested arrays inside the page dictionary and the content stream."""
    deep = b"[" * depth + b"0" + b"]" * depth
    objs = _text_page_objects(b"Deeply nested arrays live here.", b"3 0 R", b"/Junk " + deep + b" ")
    stream = b"BT /F1 18 Tf 72 720 Td (Deeply nested arrays live here.) Tj ET " + deep + b" pop"
    objs[3] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    return pdf_from_objects(objs)


def nested_dicts_pdf(depth: int) -> bytes:
    deep = b"<< /A " * depth + b"1" + b" >>" * depth
    return pdf_from_objects(_text_page_objects(b"Deeply nested dictionaries.", b"3 0 R", b"/Junk " + deep + b" "))


def reference_loop_pdf() -> bytes:
    """Objects that reference each other in a ring (6 -> 7 -> 6) from the page's resources."""
    objs = _text_page_objects(b"A ring of indirect references.", b"3 0 R", b"/Extra 6 0 R ")
    objs += [b"<< /Next 7 0 R >>", b"<< /Next 6 0 R /Length 6 0 R >>"]
    return pdf_from_objects(objs)


def damaged_page_pdf() -> bytes:
    """Two pages; the second page object is a string instead of a dictionary."""
    objs = _text_page_objects(b"The first page is fine and readable.", b"3 0 R 6 0 R")
    objs[1] = objs[1].replace(b"/Count 1", b"/Count 2")
    objs.append(b"(this page object is a string, not a dictionary)")
    return pdf_from_objects(objs)


def _encrypted(user_password: str) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=str(GOOD_PDF))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _pages_pdf(first_text: bool, blank_pages: int) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=str(GOOD_PDF)) if first_text else pypdf.PdfWriter()
    for _ in range(blank_pages):
        writer.add_blank_page(612, 792)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def build(folder: Path, seed: int = 0) -> dict[str, Expect]:
    """Write the hostile corpus into ``folder``; returns what must happen to each file."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    good = GOOD_PDF.read_bytes()
    files: dict[str, tuple[bytes, Expect]] = {
        "good.pdf": (good, Expect("ingested")),
        "good.txt": (b"A perfectly ordinary text file about lighthouses and their keepers.\n" * 20,
                     Expect("ingested")),
        "zero.pdf": (b"", Expect("failed", "empty file")),
        "zero.txt": (b"", Expect("failed", "empty file")),
        "zero.md": (b"", Expect("failed", "empty file")),
        "random.pdf": (rng.randbytes(8192), Expect("failed", "not a PDF")),
        "random_with_header.pdf": (b"%PDF-1.4\n" + rng.randbytes(8192), Expect("failed")),
        "header_only.pdf": (b"%PDF-1.7\n", Expect("failed")),
        "html_named.pdf": (b"<html><body>Not a PDF at all</body></html>", Expect("failed", "not a PDF")),
        "encrypted_empty_password.pdf": (_encrypted(""), Expect("ingested")),
        "encrypted_with_password.pdf": (_encrypted("hunter2"), Expect("failed", "encrypted")),
        "huge_page_count.pdf": (_pages_pdf(True, HUGE_PAGES), Expect("ingested", warning="truncated")),
        "no_text_layer.pdf": (_pages_pdf(False, 3), Expect("failed", "no text layer")),
        "cyclic_page_tree.pdf": (cyclic_pages_pdf(), Expect("either")),
        "self_parent.pdf": (self_parent_pdf(), Expect("either")),
        "reference_loop.pdf": (reference_loop_pdf(), Expect("either")),
        "damaged_second_page.pdf": (damaged_page_pdf(), Expect("ingested", warning="page 2: cannot be loaded")),
        "nested_arrays_2000.pdf": (nested_arrays_pdf(2000), Expect("either")),
        "nested_arrays_200000.pdf": (nested_arrays_pdf(200_000), Expect("either")),
        "nested_dicts_5000.pdf": (nested_dicts_pdf(5000), Expect("either")),
        "invalid_utf8.txt": (b"Caf\xe9 au lait costs \xff\xfe three euros.\n" * 30 + b"\xc3\x28 end\n",
                             Expect("ingested", warning="invalid UTF-8")),
        "invalid_utf8.md": (b"# Title \xff\n\nBody text with \x80\x81 broken bytes and enough words.\n",
                            Expect("ingested", warning="invalid UTF-8")),
        "nul_bytes.txt": (b"\x00" * 4096, Expect("failed", "no text")),
        "one_line_1mb.txt": (b"x" * (1 << 20), Expect("ingested")),
    }
    # truncated at seeded random offsets: the parser may repair some, must never crash
    for i in range(6):
        cut = rng.randrange(16, len(good) - 1)
        files[f"truncated_{i}_{cut}.pdf"] = (good[:cut], Expect("either"))
    for i in range(3):  # a few bytes flipped in the middle
        data = bytearray(good)
        for _ in range(20):
            data[rng.randrange(200, len(data))] = rng.randrange(256)
        files[f"bitflip_{i}.pdf"] = (bytes(data), Expect("either"))
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    out = {name: exp for name, (_, exp) in files.items()}

    # one line of BIG_LINE_MB: over ingest.max_file_mb, so it is refused before it is read
    with open(folder / "one_line_50mb.txt", "wb") as fh:
        block = b"y" * (1 << 20)
        for _ in range(BIG_LINE_MB):
            fh.write(block)
    out["one_line_50mb.txt"] = Expect("failed", "over the")

    # symlinks: a folder loop, a file loop, a dangling link
    (folder / "loop_dir").symlink_to(folder, target_is_directory=True)
    (folder / "loop_a.pdf").symlink_to(folder / "loop_b.pdf")
    (folder / "loop_b.pdf").symlink_to(folder / "loop_a.pdf")
    out["loop_a.pdf"] = out["loop_b.pdf"] = Expect("failed", "cannot read")
    (folder / "dangling.txt").symlink_to(folder / "does-not-exist.txt")
    out["dangling.txt"] = Expect("failed", "cannot read")
    os.utime(folder, None)
    return out
