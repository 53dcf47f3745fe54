"""generate_completions: sampling token-id prompts through a real GRPOTrainer's own generation path."""

from __future__ import annotations

import pytest
import torch
from trl import GRPOTrainer, RLOOTrainer

from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset
from rewardkit.trl import TRLCompatError, check_trl_compat, generate_completions


def test_generation_compat_is_checked_on_the_class_that_samples():
    check_trl_compat(GRPOTrainer, generation=True)
    with pytest.raises(TRLCompatError, match="_generate_single_turn"):  # RLOO's sampler has no num_generations
        check_trl_compat(RLOOTrainer, generation=True)

    class Drifted(GRPOTrainer):
        def _generate_single_turn(self, prompt_ids, num_generations):
            raise AssertionError("never called")

    with pytest.raises(TRLCompatError, match="_generate_single_turn"):
        generate_completions(Drifted.__new__(Drifted), [[1, 2]])


def test_samples_with_the_trainers_settings(tmp_path, tiny_model_path, tiny_tokenizer):
    torch.manual_seed(0)
    trainer = GRPOTrainer(model=str(tiny_model_path), processing_class=tiny_tokenizer, reward_funcs=lambda **k: [0.0],
                          args=tiny_grpo_config(tmp_path, max_completion_length=5), train_dataset=tiny_prompt_dataset())
    prompts = [tiny_tokenizer("How much is 2 + 2?")["input_ids"], tiny_tokenizer("Hi")["input_ids"]]
    completions, logprobs = generate_completions(trainer, prompts + prompts[:1])
    assert logprobs is None  # transformers generate keeps no sampling log-probs; vLLM does
    assert len(completions) == 3 and all(isinstance(c, list) for c in completions)
    for ids in completions:  # at most max_completion_length tokens, stopping at the first EOS
        assert 1 <= len(ids) <= 5 and all(isinstance(t, int) for t in ids)
        assert tiny_tokenizer.eos_token_id not in ids[:-1]
    assert any(len(ids) == 5 for ids in completions)  # an untrained model rarely stops by itself
