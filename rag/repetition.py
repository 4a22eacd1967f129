"""Stop an answer that starts repeating itself.

Small local models (SmolLM2-135M above all) fall into loops: the demo's answer was one correct
sentence, then "The Acme Widget is a fictional product ..." seven times until the token limit.
Sampling penalties (``llm.repeat_penalty``) make loops rarer; this guard ends the ones left.

The guard watches the text as it streams. A sentence is "repeated" when, normalised (case,
spacing, citation markers), it equals an earlier sentence of the same answer. Text that could be
the start of such a repeat is held back (not shown) until it either diverges (then it is released
at once) or completes the repeat (then it is dropped and generation stops). Ordinary text is
never delayed: it matches no earlier sentence.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?](?:[\"')\]]*)(?=\s)|\n")
_CITATION = re.compile(r"\[\s*\d+(?:\s*[,;-]\s*\d+)*\s*\]")
_SPACE = re.compile(r"\s+")
_OPEN_CITATION = re.compile(r"\[[\d\s,;-]*$")  # "[" or "[1, " still streaming in
_SPACE_BEFORE_PUNCT = re.compile(r"\s+(?=[.!?,;:])")
MIN_SENTENCE_CHARS = 12  # "Yes." twice is not a loop


def normalise(sentence: str) -> str:
    return _SPACE_BEFORE_PUNCT.sub("", _SPACE.sub(" ", _CITATION.sub("", sentence))).strip().lower()


class RepetitionGuard:
    """Feed pieces in order; get back what may be shown now. ``stopped`` turns true at a repeat.

    >>> g = RepetitionGuard()
    >>> parts = ["The lamp is red [1]. ", "It is bright. ", "The lamp", " is red. ", "More."]
    >>> "".join(g.feed(p) for p in parts), g.stopped
    ('The lamp is red [1]. It is bright. ', True)
    """

    def __init__(self) -> None:
        self.text = ""            # everything fed so far
        self.shown = 0            # chars of ``text`` released to the caller
        self.sentence_start = 0   # where the current (unfinished) sentence begins in ``text``
        self.seen: set[str] = set()
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add a piece; returns the text that can be shown now ('' while holding back)."""
        if self.stopped:
            return ""
        self.text += piece
        # Close every sentence that ended inside this piece.
        for m in _SENTENCE_END.finditer(self.text, self.sentence_start):
            end = m.end()
            key = normalise(self.text[self.sentence_start:end])
            if len(key) >= MIN_SENTENCE_CHARS and key in self.seen:
                return self._stop()
            if len(key) >= MIN_SENTENCE_CHARS:
                self.seen.add(key)
            self.sentence_start = end
        # Hold back an unfinished sentence that so far reads like an earlier one.
        partial = normalise(_OPEN_CITATION.sub("", self.text[self.sentence_start:]))
        if partial and any(s.startswith(partial) for s in self.seen):
            return self._release(self.sentence_start)
        return self._release(len(self.text))

    def finish(self) -> str:
        """The end of the stream: release what was held back (an unfinished, non-repeated tail)."""
        if self.stopped:
            return ""
        partial = normalise(self.text[self.sentence_start:])
        if partial in self.seen and len(partial) >= MIN_SENTENCE_CHARS:
            return self._stop()  # the last sentence repeated an earlier one but had no final stop
        return self._release(len(self.text))

    def _stop(self) -> str:
        """Drop the repeated sentence (it starts at ``sentence_start``) and end the stream."""
        self.stopped = True
        self.text = self.text[:self.sentence_start].rstrip()
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        out = self.text[self.shown:upto]
        self.shown = max(self.shown, upto)
        return out


def strip_repeats(text: str) -> tuple[str, bool]:
    """``text`` cut before its first repeated sentence, and whether anything was cut."""
    guard = RepetitionGuard()
    out = guard.feed(text) + guard.finish()
    return (out if guard.stopped else text), guard.stopped
