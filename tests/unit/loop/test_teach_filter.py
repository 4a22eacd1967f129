"""The teacher stage's pure parts, without a model: the answer filter (every reason, on hand-made
answers), the RAFT passage layout, the cache key and the append-only cache's torn-line recovery."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from finetune.teacher import (
    PROMPT_VERSION,
    TEACH_STYLE,
    TEACH_STYLES,
    AnswerCache,
    cache_key,
    filter_answer,
    raft_passages,
    teacher_messages,
)
from rag.types import Hit

GOLD = ("The Acme Widget (model AW-2200) is a pocket-sized tide clock for sailors. It weighs 140 grams, "
        "runs on one CR2032 coin cell for about 18 months, and is water resistant to 30 metres.")

CASES = [  # (teacher answer, golden passage's number in the teacher's prompt, expected reason or kept target)
    ("It weighs 140 grams [2].", 2, "=It weighs 140 grams"),
    ("The widget weighs 140 grams [2][3].", 2, "=The widget weighs 140 grams"),      # kept, extra citation
    ("[Passage 2] 140 grams", 2, "=140 grams"),
    ("", 2, "empty"),
    ("[2]", 2, "empty"),
    ("I don't know: the passages do not say [2].", 2, "declined"),
    ("It weighs 140 grams.", 2, "no_citation"),
    ("It weighs 140 grams [1].", 2, "wrong_citation"),
    ("It weighs 140 grams [7].", 2, "wrong_citation"),                                 # a passage that is not there
    (("The Acme Widget is a pocket-sized tide clock for sailors that weighs 140 grams, runs on one coin cell for "
      "about 18 months and is water resistant to 30 metres, which makes it ideal for long voyages at sea [2]."),
     2, "too_long"),
    ("It weighs 2 kilograms and floats [2].", 2, "not_grounded"),
    ("The answer to the question is: [2]", 2, "not_grounded"),
]


@pytest.mark.parametrize(("answer", "gold_n", "expected"), CASES)
def test_filter_reason(answer, gold_n, expected):
    v = filter_answer(answer, gold_n, GOLD, max_words=30)
    if expected.startswith("="):
        assert v.reason == "" and v.target == expected[1:] and not v.attributed
    else:
        assert v.reason == expected and v.target == ""


def test_filter_counts_reasons_like_synthesise():
    counts = Counter(filter_answer(a, n, GOLD, max_words=30).reason or "kept" for a, n, _ in CASES)
    assert counts == {"kept": 3, "empty": 2, "declined": 1, "no_citation": 1, "wrong_citation": 2, "too_long": 1,
                      "not_grounded": 2}
    assert filter_answer("The widget weighs 140 grams [2][3].", 2, GOLD, 30).extra_citations


def test_attribute_keeps_an_uncited_grounded_answer_only():
    v = filter_answer("It weighs 140 grams.", 2, GOLD, 30, attribute=True)
    assert v.reason == "" and v.target == "It weighs 140 grams" and v.attributed
    assert filter_answer("It weighs 2 kilograms.", 2, GOLD, 30, attribute=True).reason == "not_grounded"
    assert filter_answer("It weighs 140 grams [1].", 2, GOLD, 30, attribute=True).reason == "wrong_citation"
    assert filter_answer("It weighs 140 grams.", 2, GOLD, 3, attribute=True).reason == "too_long"


def test_recite_keeps_a_misnumbered_but_grounded_answer_only():
    v = filter_answer("It weighs 140 grams [1].", 2, GOLD, 30, recite=True)
    assert v.reason == "" and v.target == "It weighs 140 grams" and v.recited and not v.extra_citations
    assert filter_answer("It weighs 2 kilograms [1].", 2, GOLD, 30, recite=True).reason == "not_grounded"
    assert filter_answer("It weighs 140 grams.", 2, GOLD, 30, recite=True).reason == "no_citation"
    kept = filter_answer("It weighs 140 grams [2].", 2, GOLD, 30, recite=True)
    assert kept.reason == "" and not kept.recited


def _hit(i: int, text: str | None = None) -> Hit:
    return Hit(f"c{i}", text or f"passage number {i}", "doc.txt", 0, 1.0 / (i + 1))


def test_raft_layout_is_seeded_and_excludes_the_golden_chunk():
    gold = _hit(0, GOLD)
    retrieved = [_hit(0, GOLD), _hit(1), _hit(5, GOLD), _hit(2), _hit(3)]   # the gold itself and a copy of it
    hits, n = raft_passages(gold, retrieved, 2, "q00001")
    assert sorted(h.id for h in hits) == ["c0", "c1", "c2"] and hits[n - 1] is gold
    assert raft_passages(gold, retrieved, 2, "q00001") == (hits, n)           # same seed, same order
    positions = {raft_passages(gold, retrieved, 2, f"q{i}")[1] for i in range(30)}
    assert positions == {1, 2, 3}                                            # the golden passage moves around
    assert raft_passages(gold, [], 2, "q") == ([gold], 1)
    neighbour = _hit(4, "Overlap: it weighs 140 grams, runs on one CR2032 coin cell for about 18 months.")
    assert neighbour not in raft_passages(gold, [neighbour, _hit(1)], 2, "q", evidence="It weighs 140 grams, "
                                          "runs on one CR2032 coin cell for about 18 months")[0]
    msgs = teacher_messages("How heavy is it?", hits)
    assert msgs[-1]["content"].endswith(TEACH_STYLE) and f"Passage [{n}]" in msgs[-1]["content"]
    phrase = teacher_messages("How heavy is it?", hits, "phrase")
    assert phrase[-1]["content"].endswith(TEACH_STYLES["phrase"]) and phrase[:-1] == msgs[:-1]
    with pytest.raises(ValueError, match="teacher.style"):
        teacher_messages("How heavy is it?", hits, "essay")


def test_cache_key_covers_chunk_question_teacher_and_prompt():
    k = cache_key(GOLD, "How heavy?", "qwen2.5-coder-1.5b")
    assert k == cache_key(GOLD, "How heavy?", "qwen2.5-coder-1.5b", PROMPT_VERSION)
    assert len({k, cache_key(GOLD + " ", "How heavy?", "qwen2.5-coder-1.5b"),
                cache_key(GOLD, "How light?", "qwen2.5-coder-1.5b"), cache_key(GOLD, "How heavy?", "smollm2-135m"),
                cache_key(GOLD, "How heavy?", "qwen2.5-coder-1.5b", "teach-v0")}) == 5


def test_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    with AnswerCache(path) as cache:
        cache.put("a", {"reply": "140 grams [1]"})
        cache.put("b", {"reply": "45 days [2]"})
    with path.open("a") as fh:
        fh.write('{"key": "c", "reply": "half a li')        # killed mid-write
    with AnswerCache(path) as cache:
        assert len(cache) == 2 and cache.get("b")["reply"] == "45 days [2]" and cache.get("c") is None
        cache.put("c", {"reply": "3 years [1]"})
    lines = path.read_text().splitlines()
    assert [json.loads(ln)["key"] for ln in lines] == ["a", "b", "c"]
