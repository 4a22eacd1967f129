"""OCR of page images with the Tesseract command-line tool (Debian: ``tesseract-ocr``).

We call the ``tesseract`` binary directly (no Python binding to install): PNG in on stdin, TSV out.
The TSV gives a confidence per word, which lets us tell a real recognition from noise (a photo,
a script the language pack cannot read) and lets us decide when to try another orientation.

Upright scans, the common case, cost one pass. When that pass looks poor, orientation and script
detection (OSD, ``--psm 0``, needs ``tesseract-ocr-osd``) runs on a half-size copy; if it reports
a rotation, the page is rotated and recognised again and the better reading is kept.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

DPI = 300
MAX_SIDE_PX = 5000          # posters and huge scans are rendered smaller, not at 300 dpi
GOOD_CONF = 70.0            # mean word confidence above which we accept the upright reading
MIN_CONF = 45.0             # below this (mean over words) a page's OCR text is treated as noise
MIN_WORD_CONF = 30.0        # words recognised with less confidence are dropped
PAGE_TIMEOUT_S = 60.0


class OcrUnavailable(Exception):
    """Tesseract (or the requested language pack) is not installed; the message says what to install."""


@dataclass(slots=True)
class OcrResult:
    text: str
    words: int
    confidence: float       # mean word confidence, 0-100
    rotated: int = 0        # degrees the page image was turned (clockwise) before recognition


@functools.lru_cache(maxsize=1)
def tesseract_path() -> str | None:
    return shutil.which("tesseract")


@functools.lru_cache(maxsize=1)
def languages() -> frozenset[str]:
    exe = tesseract_path()
    if exe is None:
        return frozenset()
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in out.splitlines()[1:] if line.strip())


def available(lang: str) -> str | None:
    """None when OCR in ``lang`` can run, else the reason (with the package to install)."""
    if tesseract_path() is None:
        return "tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-eng)"
    missing = [code for code in lang.split("+") if code and code not in languages()]
    if missing:
        pkgs = " ".join(f"tesseract-ocr-{m.lower().replace('_', '-')}" for m in missing)
        return f"tesseract language(s) {'+'.join(missing)} not installed (apt-get install {pkgs})"
    return None


def _env() -> dict[str, str]:
    # One thread per tesseract: pages are OCR'd while other files embed, and cores are shared.
    return dict(os.environ, OMP_THREAD_LIMIT="1")


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _run(args: list[str], data: bytes) -> str:
    exe = tesseract_path()
    if exe is None:
        raise OcrUnavailable(available("eng") or "tesseract is not installed")
    try:
        proc = subprocess.run([exe, "stdin", "stdout", *args], input=data, capture_output=True,
                              timeout=PAGE_TIMEOUT_S, env=_env(), check=False)
    except subprocess.TimeoutExpired:
        return ""
    return proc.stdout.decode("utf-8", errors="replace")


def _parse_tsv(tsv: str) -> OcrResult:
    """Rebuild text from Tesseract's TSV: words joined by spaces, lines by newlines, blocks by blank lines."""
    lines: dict[tuple[int, int, int], list[str]] = {}
    confs: list[float] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5":
            continue
        word = cols[11].strip()
        try:
            conf = float(cols[10])
        except ValueError:
            continue
        if not word or conf < MIN_WORD_CONF:
            continue
        confs.append(conf)
        lines.setdefault((int(cols[2]), int(cols[3]), int(cols[4])), []).append(word)
    out, last_block = [], None
    for (block, _par, _line), words in lines.items():
        if last_block is not None and block != last_block:
            out.append("")
        out.append(" ".join(words))
        last_block = block
    mean = sum(confs) / len(confs) if confs else 0.0
    return OcrResult("\n".join(out), len(confs), mean)


_ROTATE = re.compile(r"Rotate:\s*(\d+)")
_ORIENT_CONF = re.compile(r"Orientation confidence:\s*([\d.]+)")


def detect_rotation(image) -> int:
    """Degrees to turn the image clockwise so its text is upright (0 when unsure or OSD missing)."""
    if "osd" not in languages():
        return 0
    small = image.reduce(2) if min(image.size) > 1200 else image
    out = _run(["--psm", "0", "--dpi", str(DPI // 2 if small is not image else DPI)], _png(small))
    rot, conf = _ROTATE.search(out), _ORIENT_CONF.search(out)
    if not rot or not conf or float(conf.group(1)) < 1.5:
        return 0
    return int(rot.group(1)) % 360


def ocr_image(image, lang: str = "eng") -> OcrResult:
    """Recognise the text on one page image (a PIL image), trying other orientations when needed.

    Raises:
        OcrUnavailable: tesseract or the language pack is missing.
    """
    reason = available(lang)
    if reason:
        raise OcrUnavailable(reason)
    args = ["-l", lang, "--psm", "3", "--dpi", str(DPI), "tsv"]
    best = _parse_tsv(_run(args, _png(image)))
    if best.confidence >= GOOD_CONF and best.words >= 5:
        return best
    rotation = detect_rotation(image)
    if rotation:
        # PIL rotates counter-clockwise for positive angles; OSD's "Rotate" is clockwise.
        turned = _parse_tsv(_run(args, _png(image.rotate(-rotation, expand=True))))
        turned.rotated = rotation
        if turned.words * turned.confidence > best.words * best.confidence:
            best = turned
    return best


def ocr_pdf_page(page, lang: str = "eng") -> OcrResult:
    """Render a pypdfium2 page at 300 dpi (capped for huge pages) and OCR it."""
    width, height = page.get_size()
    scale = min(DPI / 72, MAX_SIDE_PX / max(1.0, width, height))
    image = page.render(scale=scale, grayscale=True).to_pil()
    if min(image.size) < 32:  # an icon-sized page holds no readable text
        return OcrResult("", 0, 0.0)
    return ocr_image(image, lang)
