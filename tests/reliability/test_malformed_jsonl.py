"""Malformed JSONL for finetune (finetune.data) and eval (eval.dataset): what the unit tests
(tests/unit/finetune/test_ft_data.py, tests/unit/eval/test_eval_dataset.py) do not already cover:
bytes that are not UTF-8, a line nested deeply enough to blow the JSON parser's recursion, and
line separators inside JSON strings. Each error names the file and line; the CLIs exit 1 with
``error: ...`` and no traceback.
"""

from __future__ import annotations

import json

import pytest

from eval.dataset import load_dataset
from finetune.data import load_jsonl
from rag.errors import DataError

GOOD_FT = json.dumps({"instruction": "What is 2+2?", "output": "4"})
GOOD_EV = json.dumps({"question": "What is 2+2?", "answer": "4"})
DEEP = "[" * 100_000 + "]" * 100_000


def test_finetune_not_utf8_names_the_line(tmp_path):
    f = tmp_path / "ft.jsonl"
    f.write_bytes((GOOD_FT + "\n" + GOOD_FT + "\n").encode() + b'{"instruction": "caf\xe9", "output": "a"}\n')
    with pytest.raises(DataError) as e:
        load_jsonl(f)
    assert f"{f}:3: not UTF-8 text" in str(e.value)


def test_eval_not_utf8_names_the_line_and_keeps_listing(tmp_path):
    f = tmp_path / "ev.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + GOOD_EV.encode() + b'\n{"question": "\xff?", "answer": "a"}\n{"answer": "x"}\n')
    with pytest.raises(DataError) as e:
        load_dataset(f)
    msg = str(e.value)
    assert f"{f}:2: not UTF-8 text" in msg and f"{f}:3: field 'question'" in msg  # BOM on line 1 is fine


@pytest.mark.parametrize("loader,good", [(load_jsonl, GOOD_FT), (load_dataset, GOOD_EV)])
def test_deeply_nested_line_is_a_data_error_not_a_recursion_error(tmp_path, loader, good):
    f = tmp_path / "deep.jsonl"
    f.write_text(good + "\n" + DEEP + "\n" + good.replace("2+2", "3+3") + "\n")
    with pytest.raises(DataError) as e:
        loader(f)
    assert f"{f}:2: invalid JSON" in str(e.value) and "nested too deeply" in str(e.value)


def test_line_separators_inside_json_strings_do_not_split_rows(tmp_path):
    """json.dumps(ensure_ascii=False) (as finetune.synth writes) leaves U+2028 / U+0085 raw."""
    f = tmp_path / "ft.jsonl"
    rows = [{"instruction": "Para one\u2028para two", "output": "ok\x85done"}, {"instruction": "q", "output": "a"}]
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    examples = load_jsonl(f)
    assert [e.line for e in examples] == [1, 2] and "\u2028" in examples[0].messages[0]["content"]
    ev = tmp_path / "ev.jsonl"
    ev.write_text(json.dumps({"question": "a\u2028b?", "answer": "c"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_dataset(ev)[0].question == "a\u2028b?"


@pytest.mark.parametrize("payload", [b"\xff\xfe\x00garbage\n", (DEEP + "\n").encode()])
def test_clis_exit_1_with_the_line_and_no_traceback(tmp_path, capsys, payload):
    from eval.__main__ import main as eval_main
    from finetune.qlora import main as ft_main

    f = tmp_path / "bad.jsonl"
    f.write_bytes(payload)
    assert ft_main(["--data", str(f), "--output", str(tmp_path / "o")]) == 1
    assert eval_main([str(f)]) == 1
    err = capsys.readouterr().err
    assert err.count(f"{f}:1:") == 2 and "Traceback" not in err
