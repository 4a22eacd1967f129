"""Heading paths for loaders that know a document's headings (Markdown, HTML, Word)."""

from __future__ import annotations

from rag.chunking import SECTIONS_KEY


class Outline:
    """Collects ``(page, offset, "H1 > H2 > H3")`` entries as headings are met in reading order."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []
        self.entries: list[tuple[int, int, str]] = []

    def heading(self, level: int, title: str, offset: int, page: int = 0) -> None:
        title = " ".join(title.split())
        if not title:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))
        self.entries.append((page, offset, " > ".join(t for _, t in self._stack)))

    def title(self) -> str | None:
        top = [path for _, _, path in self.entries if " > " not in path]
        return top[0] if top else None

    def into(self, meta: dict) -> dict:
        if self.entries:
            meta[SECTIONS_KEY] = self.entries
        return meta
