import json

import numpy as np
import pytest

from finetune import synth
from finetune.data import load_jsonl
from rag.errors import DataError
from rag.types import Chunk

TEXTS = {
    "policy.md": ["The refund window is 30 days. Refunds go back to the original payment method.",
                  "Support is open from 9 to 17 on weekdays. The support email is help@example.com."],
    "company.txt": ["Acme has 12 offices in Europe. The headquarters moved to Berlin in 2019.",
                    "The CEO is Jane Doe. Acme was founded by three engineers."],
    "notes.txt": ["Nothing to ask here", "lowercase fragment without a verb"],
}


def _store(path):
    from rag.stores import open_store

    chunks = [Chunk(f"{src}#{i}", text, src, 0, i) for src, texts in TEXTS.items() for i, text in enumerate(texts)]
    vecs = np.random.default_rng(0).normal(size=(len(chunks), 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = open_store(str(path))
    store.upsert(chunks, vecs)
    store.close()
    return str(path)


def test_extractive_generator_is_deterministic():
    gen = synth.ExtractiveGenerator()
    qa = gen("The refund window is 30 days.", "policy.md")
    assert qa.question == "What is the refund window?" and qa.answer == "30 days"
    assert gen("Acme has 12 offices in Europe.").question == "What does Acme have?"
    num = gen("In 2019 the company moved its headquarters to Berlin.")
    assert num.answer == "2019" and "____" in num.question
    assert gen("no sentence here") is None
    assert gen("The CEO is Jane Doe. Acme was founded by three engineers.", "x") == \
        gen("The CEO is Jane Doe. Acme was founded by three engineers.", "x")


def test_synthesize_raft_rows_from_embedded_store(tmp_path):
    uri = _store(tmp_path / "idx")
    out = tmp_path / "synth.jsonl"
    rep = synth.synthesize(uri, out, distractors=2, seed=1)
    assert rep.examples == 4 and rep.chunks == 6 and rep.skipped == 2
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        golden = row["meta"]["golden"]
        passages = row["input"].split("\n\n")
        assert len(passages) == 3
        assert passages[golden - 1].startswith(f"[{golden}] ({row['meta']['source']}")
        assert row["meta"]["evidence"] in passages[golden - 1]
        assert row["output"].endswith(f"[{golden}]")
        assert "Question:" in row["instruction"]
        assert row["meta"]["chunk_id"] not in row["meta"]["distractors"]
    assert len(load_jsonl(out)) == 4  # the rows are valid training data
    assert synth.synthesize(uri, tmp_path / "again.jsonl", seed=1) and \
        (tmp_path / "again.jsonl").read_text() == out.read_text()


def test_llm_generator_accepts_callable_and_complete_objects(tmp_path):
    class FakeLLM:
        def complete(self, prompt, **kw):
            assert "Passage:" in prompt
            return 'Sure: {"question": "Who runs Acme?", "answer": "Jane Doe"}'

    assert synth.LLMGenerator(FakeLLM())("The CEO is Jane Doe.").answer == "Jane Doe"
    assert synth.LLMGenerator(lambda p: "not json")("text") is None
    uri = _store(tmp_path / "idx")
    rep = synth.synthesize(uri, tmp_path / "llm.jsonl", generator=synth.LLMGenerator(FakeLLM()), max_examples=3)
    assert rep.examples == 3


def test_empty_store_is_a_data_error(tmp_path):
    from rag.stores import open_store

    open_store(str(tmp_path / "empty")).close()
    with pytest.raises(DataError, match="no chunks"):
        synth.synthesize(str(tmp_path / "empty"), tmp_path / "x.jsonl")


def test_cli(tmp_path, capsys):
    uri = _store(tmp_path / "idx")
    assert synth.main(["--from-store", uri, "--output", str(tmp_path / "o.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 4
