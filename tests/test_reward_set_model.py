"""RewardSetModel: a RewardSet as a sequence-classification model; prepare_reward_model outside DeepSpeed."""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit import Reward, compose
from rewardkit.reward import Sample
from rewardkit.trl import RewardSetModel, lockstep_forwards, prepare_reward_model, zero_stage


class TextLen(Reward):
    def score(self, sample: Sample):
        return len(sample.text) / 10


class NoneOnX(Reward):
    def score(self, sample: Sample):
        return None if "X" in sample.text else 1.0


def _enc(tok, texts):
    return tok(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)


def test_plain_forward_weighted_sum_hand_computed(tiny_tokenizer):
    m = RewardSetModel([TextLen(name="len"), NoneOnX(name="nox")], tiny_tokenizer, weights=[0.5, 2.0],
                       rows=[{"prompt": "What is 1+1? ", "solution": "2"}])
    texts = ["What is 1+1? abcd", "What is 1+1? XY"]
    out = m(**_enc(tiny_tokenizer, texts))
    assert out.logits.shape == (2, 1) and out.logits.dtype == torch.float32
    # row 0: completion "abcd" -> 0.5*0.4 + 2*1; row 1: "XY" -> 0.5*0.2, NoneOnX skipped
    assert out.logits[:, 0].tolist() == pytest.approx([0.2 + 2.0, 0.1])
    assert m.config._name_or_path == "rewardset" and list(m.parameters()) == []


def test_left_padding_and_all_none_rows_give_nan(tiny_tokenizer):
    m = RewardSetModel([NoneOnX(name="nox")], tiny_tokenizer)
    enc = tiny_tokenizer(["X marks", "fine text here"], return_tensors="pt", padding=True, padding_side="left",
                         add_special_tokens=False)
    logits = m(**enc).logits[:, 0].tolist()
    assert math.isnan(logits[0]) and logits[1] == 1.0  # None is never turned into 0


def test_chat_split_columns_and_unknown_prompts(tiny_tokenizer):
    from rewardkit.testing import tiny_prompt_dataset

    ds = tiny_prompt_dataset(3, conversational=True)
    m = RewardSetModel({"math.accuracy": 1.0, "format.boxed": 0.25}, tiny_tokenizer, rows=list(ds))
    texts = []
    for row, ans in zip(ds, [row["solution"] for row in ds][:2] + ["wrong"]):
        texts.append(tiny_tokenizer.apply_chat_template(
            row["prompt"] + [{"role": "assistant", "content": f"so \\boxed{{{ans}}}"}], tokenize=False))
    prompt, completion, row = m.split_text(texts[0])
    assert completion == f"so \\boxed{{{ds[0]['solution']}}}" and row["solution"] == ds[0]["solution"]
    assert m(**_enc(tiny_tokenizer, texts)).logits[:, 0].tolist() == pytest.approx([1.25, 1.25, 0.25])
    # split="rows" refuses a text whose prompt it does not know
    strict = RewardSetModel({"format.boxed": 1.0}, tiny_tokenizer, rows=list(ds), split="rows")
    with pytest.raises(ValueError, match="no known prompt"):
        strict(**_enc(tiny_tokenizer, ["unrelated text"]))
    # without rows, a chat text is split at the last assistant header
    loose = RewardSetModel({"format.boxed": 1.0}, tiny_tokenizer)
    assert loose.split_text(texts[2])[1] == "so \\boxed{wrong}"


def test_grpo_accepts_reward_set_model_as_model_reward(tiny_model_path, tiny_tokenizer, tmp_path):
    """TRL's model-reward path: tokenized prompt+completion, .logits[:, 0], metric named by config."""
    from trl import GRPOTrainer

    from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset

    seen: list[tuple[str, float]] = []

    class Spy(Reward):
        def score(self, sample):
            v = len(sample.text) / 10
            seen.append((sample.text, v))
            return v

    ds = tiny_prompt_dataset(8)
    model_reward = RewardSetModel([TextLen(name="len")], tiny_tokenizer, rows=list(ds), name="composed")
    trainer = GRPOTrainer(model=str(tiny_model_path), reward_funcs=[model_reward, Spy(name="spy")],
                          reward_processing_classes=[tiny_tokenizer, None],
                          args=tiny_grpo_config(tmp_path, max_steps=1), train_dataset=ds)
    assert trainer.reward_func_names[0] == "composed"
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/composed/mean" in h][0]
    # the adapter saw the same completions TRL passed to the function reward: same mean
    assert logs["rewards/composed/mean"] == pytest.approx(logs["rewards/spy/mean"], rel=1e-5)
    assert logs["rewards/composed/mean"] == pytest.approx(sum(v for _, v in seen) / len(seen), rel=1e-5)


def test_reward_set_model_accepts_a_composed_set(tiny_tokenizer):
    rs = compose({"format.boxed": 2.0})
    m = RewardSetModel(rs, tiny_tokenizer)
    assert m(**_enc(tiny_tokenizer, ["the answer \\boxed{3}", "none"])).logits[:, 0].tolist() == [2.0, 0.0]


def test_prepare_reward_model_without_deepspeed(tiny_model_path, tmp_path):
    """No DeepSpeed: eval mode, no grads, on the trainer's device; ZeRO helpers are no-ops."""
    from transformers import AutoModelForSequenceClassification
    from trl import GRPOTrainer

    from rewardkit.testing import tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset

    rm = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir("reward_model"))
    rm.train()
    trainer = GRPOTrainer(model=str(tiny_model_path), reward_funcs=[TextLen(name="len")],
                          args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(4))
    placed = prepare_reward_model(rm, trainer=trainer)
    assert placed is rm and not placed.training
    assert all(not p.requires_grad for p in placed.parameters())
    assert next(placed.parameters()).device == trainer.accelerator.device
    assert zero_stage(trainer=trainer) is None and zero_stage() is None
    assert lockstep_forwards(3) == 3
