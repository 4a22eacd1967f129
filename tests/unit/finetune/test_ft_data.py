import json

import pytest

from finetune import data as D
from rag.errors import DataError


def _write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_both_row_formats_normalise_the_same(tmp_path):
    a = _write(tmp_path / "a.jsonl", [{"instruction": "Q?", "input": "ctx", "output": "A."}])
    b = _write(tmp_path / "b.jsonl", [{"messages": [{"role": "user", "content": "Q?\n\nctx"},
                                                    {"role": "assistant", "content": "A."}]}])
    ea, eb = D.load_jsonl(a), D.load_jsonl(b)
    assert ea[0].messages == eb[0].messages
    assert D.data_hash(ea) == D.data_hash(eb) and D.data_hash(ea).startswith("sha256:")
    no_input = _write(tmp_path / "c.jsonl", [{"instruction": "Q?", "output": "A."}])
    assert D.load_jsonl(no_input)[0].messages[0]["content"] == "Q?"


def test_malformed_rows_name_file_line_and_field(tmp_path):
    f = _write(tmp_path / "bad.jsonl", [
        {"instruction": "ok", "output": "fine"},
        {"instruction": "no answer"},
        "{not json",
        "",
        {"messages": [{"role": "robot", "content": "x"}]},
        {"instruction": "q", "output": 3},
    ])
    with pytest.raises(DataError) as e:
        D.load_jsonl(f)
    msg = str(e.value)
    assert f"{f}:2: field 'output' is missing" in msg
    assert f"{f}:3: invalid JSON" in msg
    assert f"{f}:5: field 'messages[0].role'" in msg
    assert f"{f}:6: field 'output' must be a non-empty string" in msg
    with pytest.raises(DataError, match="not found"):
        D.load_jsonl(tmp_path / "missing.jsonl")


def test_split_is_deterministic(tmp_path):
    ex = [D.Example([{"role": "user", "content": str(i)}, {"role": "assistant", "content": "a"}]) for i in range(20)]
    t1, e1 = D.split(ex, 0.1, seed=3)
    t2, e2 = D.split(ex, 0.1, seed=3)
    assert len(e1) == 2 and len(t1) == 18 and e1 == e2 and t1 == t2
    assert D.split(ex, 0.0, 3)[1] == []


def test_loss_mask_covers_only_answer_tokens(smol_tokenizer):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "It is 4."}, {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "Six."}]
    t = D.tokenize_example(smol_tokenizer, msgs, 512)
    assert len(t.input_ids) == len(t.labels)
    learned = smol_tokenizer.decode([i for i, lab in zip(t.input_ids, t.labels) if lab != D.IGNORE_INDEX])
    assert learned.replace("\n", "") == "It is 4.<|im_end|>Six.<|im_end|>"
    assert all(lab in (D.IGNORE_INDEX, i) for i, lab in zip(t.input_ids, t.labels))
    # the prompt (system + user turns) never carries a label
    prompt_len = len(smol_tokenizer(smol_tokenizer.apply_chat_template(msgs[:2], tokenize=False,
                                                                       add_generation_prompt=True),
                                    add_special_tokens=False)["input_ids"])
    assert set(t.labels[:prompt_len]) == {D.IGNORE_INDEX}


def test_truncation_drops_examples_without_answer(smol_tokenizer):
    ex = [D.Example([{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "yes"}])]
    kept, dropped = D.tokenize_all(smol_tokenizer, ex, 64)
    assert kept == [] and dropped == 1


def test_pack_first_fit_decreasing():
    bins = D.pack([5, 3, 4, 2, 6], 8)
    assert sorted(i for b in bins for i in b) == [0, 1, 2, 3, 4]
    assert all(sum([5, 3, 4, 2, 6][i] for i in b) <= 8 for b in bins)
    assert len(bins) == 3


def test_packed_rows_restart_positions_and_collate_without_padding_waste():
    items = [D.Tokenized([1, 2, 3], [-100, 2, 3]), D.Tokenized([4, 5], [-100, 5]), D.Tokenized([6, 7, 8, 9], [-100] * 4)]
    ds = D.build_dataset(items, 8, packing=True)
    assert len(ds) == 2 and ds.tokens == 9
    row = next(r for r in ds.rows if len(r["input_ids"]) == 7)
    assert row["position_ids"] == [0, 1, 2, 3, 0, 1, 2]
    coll = D.PackedCollator(pad_id=0)
    batch = coll([ds[0], ds[1]])
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape == (2, 7)
    assert coll.tokens_seen == 9 and coll.padded_tokens == 14
    short = batch["position_ids"][1 if len(ds[1]["input_ids"]) < 7 else 0].tolist()
    assert short[-1] == 0 or short[:2] == [0, 1]
    padded = D.PaddedCollator(pad_id=0)([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
                                          {"input_ids": [4], "labels": [4]}])
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert padded["labels"].tolist()[1] == [4, -100, -100]


def test_packed_examples_do_not_attend_to_each_other():
    """Packed logits equal the logits of each example run alone (block-diagonal attention)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    model.config.use_cache = False
    a, b = [5, 6, 7, 8, 9], [10, 11, 12]
    ds = D.build_dataset([D.Tokenized(a, a), D.Tokenized(b, b)], 16, packing=True)
    batch = D.PackedCollator(0)([ds[0]])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        alone_a = model(input_ids=torch.tensor([a])).logits[0]
        alone_b = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(packed[:5], alone_a, atol=1e-5)
    assert torch.allclose(packed[5:], alone_b, atol=1e-5)
