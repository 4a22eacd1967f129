"""The repetition guard: a repeated sentence ends the answer, ordinary text streams undelayed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rag.repetition import RepetitionGuard, strip_repeats

DEMO_LOOP = ("The Acme Widget is a pocket-sized tide clock for sailors. It weighs 140 grams.\n"
             + "The Acme Widget is a fictional product created by the company Acme Widget. It is not a real product.\n" * 7
             + "The Acme Widget is a fictional product created by the company Acme Widget. It is not a real")


def test_the_demo_loop_is_cut_after_its_first_occurrence():
    text, cut = strip_repeats(DEMO_LOOP)
    assert cut
    assert text.count("fictional product") == 1 and text.count("not a real product") == 1
    assert text.startswith("The Acme Widget is a pocket-sized tide clock")


def test_text_without_repeats_is_unchanged_and_never_held_back():
    guard = RepetitionGuard()
    pieces = ["Paris ", "is the ", "capital [1]. ", "It has ", "2 million ", "people."]
    shown = [guard.feed(p) for p in pieces]
    assert shown == pieces  # nothing resembles an earlier sentence: every piece shows at once
    assert guard.finish() == "" and not guard.stopped


def test_a_possible_repeat_is_held_then_released_when_it_diverges():
    guard = RepetitionGuard()
    assert guard.feed("The lamp is red and old. ") == "The lamp is red and old. "
    assert guard.feed("The lamp is") == ""            # could be the same sentence again
    assert guard.feed(" blue now.") == "The lamp is blue now."
    assert not guard.stopped


def test_short_sentences_may_repeat():
    text, cut = strip_repeats("Yes. No. Yes. No.")
    assert not cut and text == "Yes. No. Yes. No."


def test_repeat_differing_only_in_case_spacing_or_citations_counts():
    text, cut = strip_repeats("The lamp is red [1]. It is bright.  the lamp   is RED [2]. Also this.")
    assert cut and text == "The lamp is red [1]. It is bright."


sentences = st.sampled_from(["The tide rises twice a day. ", "Ships wait in the harbour [1]. ",
                             "The moon pulls the sea.\n", "Sailors read the clock [2]. ", "Yes. "])


@settings(max_examples=300, deadline=None)
@given(st.lists(sentences, min_size=1, max_size=8), st.data())
def test_streaming_shows_exactly_what_the_whole_text_check_keeps(parts, data):
    """However the text is split into pieces, the streamed output equals the whole-text result."""
    text = "".join(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    guard = RepetitionGuard()
    shown = "".join(guard.feed(p) for p in pieces if not guard.stopped) + guard.finish()
    expected, cut = strip_repeats(text)
    # Whitespace after the last kept sentence may already have been shown when the repeat began.
    assert shown.rstrip() == expected.rstrip() and guard.stopped == cut
    assert guard.text == expected
