"""Token-classification PRM training on the bundled toy set (TRL 1.16 has no PRM trainer)."""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit.data.steps import load_toy_steps
from rewardkit.prm import TaggedScorer
from rewardkit.prm.training import (
    IGNORE,
    PRMTrainingConfig,
    encode_examples,
    prm_loss,
    step_accuracy,
    train_prm,
)
from rewardkit.testing import tiny_model_dir


def test_labels_sit_on_tag_positions_only():
    scorer = TaggedScorer(str(tiny_model_dir("prm")))
    recs = [{"prompt": "Q", "completions": ["a", "b"], "labels": [0.75, 0.0]}]
    soft = encode_examples(scorer, recs)[0]
    ids, positions, _ = scorer.encode("Q", ["a", "b"])
    assert soft["input_ids"] == ids[:positions[-1] + 1]
    assert [i for i, y in enumerate(soft["labels"]) if y != IGNORE] == positions
    assert [soft["labels"][p] for p in positions] == [0.75, 0.0]
    hard = encode_examples(scorer, recs, label_mode="hard")[0]
    assert [hard["labels"][p] for p in positions] == [1.0, 0.0]


def test_losses_by_hand():
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]]])
    labels = torch.tensor([[IGNORE, 0.25, 1.0]])
    p1 = 1 / (1 + math.exp(2.0))          # softmax([2, 0])[1]
    p2 = 1 / (1 + math.exp(-1.0))         # softmax([0, 1])[1]
    bce = -(0.25 * math.log(p1) + 0.75 * math.log(1 - p1) + math.log(p2)) / 2
    assert prm_loss(logits, labels, "bce").item() == pytest.approx(bce, rel=1e-5)
    assert prm_loss(logits, labels, "mse").item() == pytest.approx(((p1 - 0.25) ** 2 + (p2 - 1) ** 2) / 2, rel=1e-5)
    one = torch.tensor([[[0.5], [-1.0], [2.0]]])
    assert prm_loss(one, labels, "bce").item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([-1.0, 2.0]), torch.tensor([0.25, 1.0])).item())
    with pytest.raises(ValueError, match="loss"):
        PRMTrainingConfig(loss="hinge")


def test_tiny_prm_step_accuracy_rises(tmp_path):
    records = load_toy_steps("train")[:48]
    path = str(tiny_model_dir("prm"))
    before = step_accuracy(TaggedScorer(path), records)
    out = tmp_path / "prm"
    _, history = train_prm(path, records, PRMTrainingConfig(epochs=6, learning_rate=3e-3, batch_size=16,
                                                             output_dir=str(out)))
    after = step_accuracy(TaggedScorer(str(out)), records)  # reloaded from disk, tag from rewardkit_prm.json
    assert history[-1]["loss"] < history[0]["loss"]
    assert after >= before + 0.1, (before, after)


def test_mse_hard_labels_train(tmp_path):
    records = load_toy_steps("train")[:32]
    _, history = train_prm(str(tiny_model_dir("prm")), records,
                           PRMTrainingConfig(epochs=3, learning_rate=3e-3, batch_size=16, loss="mse", label_mode="hard"))
    assert len(history) == 3 and all(math.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]


def test_a_method_configures_the_loop_instead_of_copying_it(tmp_path):
    """A PRMTrainer subclass changes the loss, adds held-out metrics and metadata; the loop stays."""
    from rewardkit.prm.training import PRMTrainer, pad_rows

    class MSEWithTerms(PRMTrainer):
        def compute_loss(self, batch, logits):
            labels = pad_rows([b["labels"] for b in batch], IGNORE, torch.float32)
            total = prm_loss(logits, labels, "mse")
            return total, {"half": total / 2}

        def evaluate(self, records):
            return {"acc": step_accuracy(self.scorer, records)}

        def metadata(self):
            return {**super().metadata(), "method": "test"}

    records = load_toy_steps("train")[:16]
    scorer = TaggedScorer(str(tiny_model_dir("prm")), head="token_cls", prepare=False)
    cfg = PRMTrainingConfig(epochs=2, learning_rate=3e-3, batch_size=8, schedule="constant",
                            output_dir=str(tmp_path / "out"))
    trainer = MSEWithTerms(scorer, cfg)
    history = trainer.train(records, records[:4])
    assert [h["epoch"] for h in history] == [0, 1, 2] and set(history[0]) == {"epoch", "eval_acc"}
    assert history[1]["half"] == pytest.approx(history[1]["loss"] / 2) and history[1]["examples"] == 16
    assert trainer.model.training is False
    import json

    assert json.loads((tmp_path / "out" / "rewardkit_prm.json").read_text())["method"] == "test"
    with pytest.raises(ValueError, match="schedule"):
        PRMTrainingConfig(schedule="cosine")
