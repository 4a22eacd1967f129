from hypothesis import given, settings
from hypothesis import strategies as st

from rag.chunking import split_document, split_text
from rag.types import Document, Page

WORDS = st.text(alphabet="abcdefghij ", min_size=1, max_size=12)


def test_respects_paragraphs_and_size():
    paras = [f"Paragraph {i}. " + "word " * 40 for i in range(10)]
    text = "\n\n".join(paras)
    chunks = split_text(text, chunk_size=300, chunk_overlap=50)
    assert all(len(c) <= 300 for c, _ in chunks)
    assert all(c.startswith("Paragraph") for c, _ in chunks[:3])  # cut at paragraph breaks
    assert [text.find(c) for c, _ in chunks] == [s for _, s in chunks]


def test_pages_follow_chunk_start():
    doc = Document("x.pdf", [Page(1, "alpha " * 100), Page(2, "beta " * 100), Page(3, "gamma " * 100)])
    pieces = split_document(doc, chunk_size=200, chunk_overlap=0)
    for p in pieces:
        word = p.text.split()[0]
        assert p.page == {"alpha": 1, "beta": 2, "gamma": 3}[word], p
    assert {p.page for p in pieces} == {1, 2, 3}


def test_token_limit_resplits_long_chunks():
    doc = Document("x.txt", [Page(0, "tok " * 2000)])
    count = lambda texts: [len(t.split()) for t in texts]  # noqa: E731 - a word = a token here
    pieces = split_document(doc, chunk_size=1000, chunk_overlap=100, max_tokens=64, count_tokens=count)
    assert pieces and max(count([p.text for p in pieces])) <= 64


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(WORDS, min_size=1, max_size=80).map(" ".join), min_size=1, max_size=6),
       st.integers(50, 400), st.integers(0, 60))
def test_property_cover_in_order_with_limits(pages, size, overlap):
    doc = Document("p.pdf", [Page(i + 1, t) for i, t in enumerate(pages)])
    pieces = split_document(doc, chunk_size=size, chunk_overlap=overlap)
    joined = "\n\n".join(pages)
    starts = [p.start for p in pieces]
    assert starts == sorted(starts)                        # in order
    for p in pieces:
        assert len(p.text) <= size                         # never over the limit
        assert joined[p.start:p.start + len(p.text)] == p.text   # offsets are right
        page_starts = [sum(len(t) + 2 for t in pages[:i]) for i in range(len(pages))]
        expected = max(i for i, s in enumerate(page_starts) if s <= p.start) + 1
        assert p.page == expected                          # page numbers stay right
    # coverage: every non-space character of the text is inside some chunk
    covered = [False] * len(joined)
    for p in pieces:
        for i in range(p.start, p.start + len(p.text)):
            covered[i] = True
    assert all(c or joined[i].isspace() for i, c in enumerate(covered))
    # overlap between neighbours never exceeds what was asked for
    for a, b in zip(pieces, pieces[1:]):
        assert a.start + len(a.text) - b.start <= max(overlap, 0) + 1 or b.start >= a.start + len(a.text)
