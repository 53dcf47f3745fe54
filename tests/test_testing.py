"""The offline tiny models that tests and the default demo use."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from rewardkit.testing import STEP_TAG, tiny_model_dir


def test_tiny_causal_lm_loads_offline_with_its_own_tokenizer(tiny_model_path):
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) < 300_000
    text = "Tom has 3 apples. The answer is \\boxed{7}."
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text  # byte-level BPE round-trips exactly
    assert tok.padding_side == "left" and tok.pad_token is not None and tok.eos_token == "<|endoftext|>"
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat.endswith("<|im_start|>assistant\n")
    out = model.generate(**tok(["Question: 1+1\nAnswer:"], return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > len(tok("Question: 1+1\nAnswer:")["input_ids"])


def test_tiny_prm_is_a_token_classifier_with_a_step_tag(tiny_prm_path):
    tok = AutoTokenizer.from_pretrained(tiny_prm_path)
    model = AutoModelForTokenClassification.from_pretrained(tiny_prm_path)
    meta = json.loads((tiny_prm_path / "rewardkit_prm.json").read_text())
    assert meta["step_tag"] == STEP_TAG
    tag_id = tok.convert_tokens_to_ids(STEP_TAG)
    ids = tok(f"a step{STEP_TAG}", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tag_id
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), 2)


def test_builds_are_cached_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    a = tiny_model_dir("reward_model", seed=3)
    assert tiny_model_dir("reward_model", seed=3) == a
    w1 = (a / "model.safetensors").read_bytes()
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path / "other"))
    b = tiny_model_dir("reward_model", seed=3)
    assert b != a and (b / "model.safetensors").read_bytes() == w1
