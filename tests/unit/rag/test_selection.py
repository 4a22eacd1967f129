"""Sentence selection between retrieval and the prompt (rag/selection.py), with the real MiniLM.

The LLM is the chain tests' scripted fake (it records the prompt it was given): what is under test
is which text reaches the prompt, not what a model makes of it.
"""

from __future__ import annotations

import pytest

from rag import chain
from rag.api import RAG
from rag.selection import GAP, is_selection_of, select_sentences, split_sentences
from rag.types import Hit
from tests.unit.rag.test_chain import FakeLLM

WIDGET = ("[Acme manual]\nThe Acme Widget ships in a blue box. It weighs 140 grams\nwithout its battery. "
          "The box also holds a quick-start card. Returns are accepted within 30 days.")
FILLER = ("Our office is closed on public holidays. The cafeteria serves lunch from noon. Parking is free "
          "for visitors. The lobby has a piano.")
TRAINS = "Trains to the coast leave every hour. Tickets can be bought on board. Dogs travel free."


def _hits() -> list[Hit]:
    return [Hit("a", FILLER, "office.txt", 3, 0.9, metadata={"context": ""}),
            Hit("b", WIDGET, "manual.pdf", 7, 0.8, metadata={"context": "[Acme manual]", "title": "Acme manual"}),
            Hit("c", TRAINS, "trains.txt", 1, 0.7)]


def test_sentences_end_at_punctuation_not_at_line_breaks_or_decimals():
    assert split_sentences("It weighs 140 grams\nwithout its battery. It runs 3.5 hours (U.S. models). "
                           '"Yes." Then it stops! OK') == [
        "It weighs 140 grams without its battery.", "It runs 3.5 hours (U.S. models).", '"Yes."',
        "Then it stops!"]  # "OK" is under 4 characters: a fragment, dropped
    assert split_sentences("| Revenue | 18,120 |\n| Cost | 9,000 |") == ["| Revenue | 18,120 | | Cost | 9,000 |"]


def test_the_most_similar_sentences_are_kept_in_rank_and_passage_order(embedder):
    out = select_sentences("How heavy is the Acme Widget?", _hits(), embedder.embed, 2)
    assert [h.id for h in out] == ["b"]                       # the other passages had no kept sentence
    widget = out[0]
    assert widget.text.startswith("[Acme manual]\n")          # the context line stays, unscored
    assert "It weighs 140 grams without its battery." in widget.text
    assert "quick-start card" not in widget.text and "Returns" not in widget.text
    assert (widget.source, widget.page, widget.score, widget.metadata["title"]) == ("manual.pdf", 7, 0.8, "Acme manual")
    assert _hits()[1].text == WIDGET                           # the retrieved hits are not changed

    wide = select_sentences("How heavy is the Acme Widget and when do trains leave?", _hits(), embedder.embed, 4)
    assert [h.id for h in wide] == ["b", "c"]                  # rank order kept
    body = wide[0].text.split("\n", 1)[1]
    assert body.index("blue box") < body.index("140 grams")    # sentence order within the passage kept


def test_a_gap_between_kept_sentences_is_marked(embedder):
    hit = Hit("w", "The widget weighs 140 grams. The sky is blue today. The widget's weight is 140 grams "
              "with its case.", "m.txt", 1, 1.0)
    out = select_sentences("What does the widget weigh?", [hit], embedder.embed, 2)
    assert out[0].text == f"The widget weighs 140 grams.{GAP}The widget's weight is 140 grams with its case."


def test_nothing_is_embedded_when_there_is_nothing_to_cut():
    def refuse(texts):
        raise AssertionError("embedded although nothing was to be cut")

    hits = _hits()
    assert select_sentences("q", hits, refuse, 0) == hits
    assert select_sentences("q", hits, refuse, 50) == hits    # 50 >= all the sentences there are
    assert select_sentences("q", [], refuse, 3) == []


def test_the_chain_prompts_with_the_selection_and_cites_what_it_kept(embedder):
    llm = FakeLLM(script=["It weighs 140 grams. [1]"])
    ans = chain.answer("How heavy is the Acme Widget?", retrieve=lambda q: _hits(), llm=llm,
                       select=lambda q, hits: select_sentences(q, hits, embedder.embed, 2))
    prompt = llm.calls[0][-1]["content"]
    assert "140 grams" in prompt and "cafeteria" not in prompt and "Trains" not in prompt
    assert [(s.source, s.page) for s in ans.sources] == [("manual.pdf", 7)]
    assert ans.citations == [1]                                # [1] is the manual's page 7
    assert "select_s" in ans.timings


@pytest.mark.parametrize(("n", "sees_filler"), [(2, False), (0, True)])
def test_rag_ask_selects_by_the_retrieval_sentences_setting(tmp_path, n, sees_filler):
    llm = FakeLLM(script=["140 grams [1]"])
    with RAG(data_dir=str(tmp_path), retrieval__sentences=n, retrieval__k=3) as rag:
        rag.add_texts([WIDGET, FILLER, TRAINS], metadatas=[{"source": "manual.pdf", "page": 7},
                                                           {"source": "office.txt"}, {"source": "trains.txt"}])
        rag._llm = llm  # the scripted fake in place of a model: only the prompt is under test
        rag.ask("How heavy is the Acme Widget?")
    prompt = llm.calls[0][-1]["content"]
    assert "140 grams" in prompt and ("cafeteria" in prompt) == sees_filler


def test_headings_and_paragraphs_survive_the_cut(embedder):
    """The sample FAQ's layout: a heading above the kept sentence, paragraphs on their own lines
    (flattened into one line, the 0.5B answered the demo's refund question "I don't know")."""
    faq = ("# Acme Widget FAQ\n\nThe Acme Widget is a fictional product.\n\n## What is it?\n\nIt is a tide clock. "
           "It weighs 140 grams.\n\n## Refund policy\n\nYou can return an unused widget within 45 days. Opened "
           "widgets can be returned for a refund minus a 10% restocking fee.\n\n## Shipping\n\nOrders ship the same "
           "day. Shipping is free over 60 euros.")
    out = select_sentences("Can I return an opened widget?", [Hit("f", faq, "faq.md", 0, 1.0)], embedder.embed, 2)
    assert out[0].text == ("## Refund policy\nYou can return an unused widget within 45 days. Opened widgets can be "
                           "returned for a refund minus a 10% restocking fee.")


def test_a_selection_is_recognised_as_cut_from_its_chunk(embedder):
    for n in (1, 2, 4):
        for hit in select_sentences("How heavy is the Acme Widget?", _hits(), embedder.embed, n):
            assert is_selection_of(hit.text, {h.id: h.text for h in _hits()}[hit.id])
    assert is_selection_of(WIDGET, WIDGET)
    assert not is_selection_of("It weighs 150 grams.", WIDGET)
    assert not is_selection_of(f"It weighs 140 grams{GAP}Trains leave hourly.", WIDGET)
