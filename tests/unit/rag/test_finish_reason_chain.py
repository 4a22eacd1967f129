"""``Answer.finish_reason``: the backend's own report when it gives one, else an estimate.

Fakes for the chain's plumbing only (words are tokens): ``EchoLLM`` reports like the real
backends (a ``Completion`` from ``generate``, the reason as ``stream``'s return value);
``Silent`` reports nothing, as a third-party backend may. The real backends' reports:
tests/integration/test_finish_reason.py.
"""

from __future__ import annotations

from rag import chain
from rag.llms import BaseLLM, Completion
from rag.settings import Settings
from rag.types import Hit
from tests.http_helpers import EchoLLM

HITS = [Hit("a", "The Eiffel Tower was completed in 1889.", "eiffel.txt", 1, 0.9)]
Q = "When was the Eiffel Tower completed?"


class Silent(BaseLLM):
    context_window = 512

    def __init__(self, reply: str):
        super().__init__(None)
        self.reply = reply

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, **opts) -> str:
        return self.reply


def ask(llm, stream: bool = False, hits=HITS, **opts):
    kw = dict(retrieve=lambda q: list(hits), llm=llm, settings=Settings(), **opts)
    if stream:
        s = chain.stream(Q, **kw)
        return "".join(s), s.answer
    a = chain.answer(Q, **kw)
    return a.text, a


def test_the_backends_report_is_used_streamed_or_not():
    for stream in (False, True):
        text, a = ask(EchoLLM(), stream, max_new_tokens=4)
        assert a.finish_reason == "length" and text.split() == ["As", "passage", "[1]", "says:"]
        _, a = ask(EchoLLM(), stream, max_new_tokens=200)
        assert a.finish_reason == "stop" and a.to_dict()["finish_reason"] == "stop"


def test_a_report_wins_over_the_token_count():
    class Reports(Silent):
        def generate(self, messages, **opts):
            return Completion(self.reply, "stop")  # e.g. a stop string ended it on the last token

    assert ask(Reports("one two three"), max_new_tokens=3)[1].finish_reason == "stop"


def test_without_a_report_the_token_count_decides():
    """The estimate: the answer took every token it was allowed (re-tokenised, so approximate)."""
    assert ask(Silent("one two three"), max_new_tokens=3)[1].finish_reason == "length"
    assert ask(Silent("one two three"), max_new_tokens=4)[1].finish_reason == "stop"
    assert ask(Silent("one two three"), stream=True, max_new_tokens=3)[1].finish_reason == "length"


def test_the_fixed_no_passages_answer_is_a_stop():
    for stream in (False, True):
        text, a = ask(Silent("x"), stream, hits=[], max_new_tokens=1)
        assert text == chain.NO_PASSAGES_ANSWER and a.finish_reason == "stop"


def test_completion_is_a_plain_str_to_callers_that_only_want_text():
    c = Completion("  hi  ", "length")
    assert c == "  hi  " and c.strip() == "hi" and type(c.strip()) is str and c.finish_reason == "length"
    assert Completion("x").finish_reason is None
