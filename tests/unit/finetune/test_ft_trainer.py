"""AnswerOnlyTrainer: the LM head on scored positions only gives the same loss and gradients."""

import pytest

torch = pytest.importorskip("torch")


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    model.config.use_cache = False
    return model


def _batches():
    from finetune import data as D

    # answer-only labels (prompt tokens -100), packed and padded, with a row that is padding at the end
    items = [D.Tokenized([5, 6, 7, 8, 9, 10], [-100, -100, -100, 8, 9, 10]),
             D.Tokenized([11, 12, 13], [-100, 12, 13]),
             D.Tokenized([14, 15, 16, 17], [-100, -100, 16, 17])]
    packed = D.PackedCollator(0)([D.build_dataset(items, 8, packing=True)[i] for i in range(2)])
    padded = D.PaddedCollator(0)([{"input_ids": t.input_ids, "labels": t.labels} for t in items])
    return {"packed": packed, "padded": padded}


@pytest.mark.parametrize("kind", ["packed", "padded"])
@pytest.mark.parametrize("num_items", [None, "count"])
def test_answer_only_loss_and_grads_match_full_logits(kind, num_items, tmp_path):
    from transformers import TrainingArguments

    from finetune.trainer import AnswerOnlyTrainer

    batch = _batches()[kind]
    model = _model()
    n = int((batch["labels"][:, 1:] != -100).sum())
    full = model(**batch).loss  # transformers' own shifted cross-entropy over every logit
    full.backward()
    ref = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()

    trainer = AnswerOnlyTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                    report_to="none"))
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(n) if num_items else None)
    loss.backward()
    assert loss.item() == pytest.approx(full.item(), rel=1e-5)
    assert trainer.loss_is_scaled_for_ga is bool(num_items)
    for k, p in model.named_parameters():
        assert torch.allclose(p.grad, ref[k], atol=1e-6), k


def test_only_scored_positions_reach_the_head():
    from finetune.trainer import scored_positions

    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 7, -100, -100, -100]])
    mask, targets = scored_positions(labels)
    assert mask.tolist() == [[False, True, True, False, False], [True, False, False, False, False]]
    assert targets.tolist() == [3, 4, 7]
