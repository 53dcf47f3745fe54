"""Stage-1 SFT mask on real tokenizer output, through TRL's SFTTrainer data preparation."""

from __future__ import annotations

import math

import pytest
from rewardkit_s2r.parse import format_trajectory
from rewardkit_s2r.sft import S2RSFTCollator, s2r_token_mask, sft_records

W = "Therefore, the answer is incorrect."
C = "Therefore, the answer is correct."
S = ["5 + 9 = 13. \\boxed{13}", "5 + 9 = 15. \\boxed{15}", "5 + 9 = 14. \\boxed{14}"]
V = ["13 - 9 = 4. " + W, "15 - 9 = 6. " + W, "14 - 9 = 5. " + C]
THREE = format_trajectory(S, V)
QUESTION = "Ben has 5 stones and gets 9 more. How many stones does Ben have?"


def test_mask_is_0_1_0_1_1_1_on_actions(tiny_tokenizer):
    ids = tiny_tokenizer.encode(THREE, add_special_tokens=False) + [tiny_tokenizer.eos_token_id]
    mask = s2r_token_mask(ids, tiny_tokenizer)
    assert len(mask) == len(ids) and mask[-1] == 1  # EOS is trained
    # runs of the mask over the actions s1 v1 s2 v2 s3 v3
    parts = [S[0] + "\n\n", "Wait, let me recheck my solution.\n\n" + V[0] + "\n\n",
             "Let me try again.\n\n" + S[1] + "\n\n", "Wait, let me recheck my solution.\n\n" + V[1] + "\n\n",
             "Let me try again.\n\n" + S[2] + "\n\n", "Wait, let me recheck my solution.\n\n" + V[2]]
    assert "".join(parts) == THREE
    pos = 0
    for part, expected in zip(parts, (0, 1, 0, 1, 1, 1)):
        n = len(tiny_tokenizer.encode(part, add_special_tokens=False))
        assert tiny_tokenizer.decode(ids[pos:pos + n]) == part
        assert mask[pos:pos + n] == [expected] * n, part
        pos += n
    # a single-round trajectory trains on everything
    one = tiny_tokenizer.encode(format_trajectory([S[2]], [V[2]]), add_special_tokens=False)
    assert s2r_token_mask(one, tiny_tokenizer) == [1] * len(one)


@pytest.fixture(scope="module")
def sft_trainer(tiny_model_path, tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    rows = sft_records([{"question": QUESTION, "text": THREE},
                        {"question": QUESTION, "text": format_trajectory([S[2]], [V[2]])}])
    collator = S2RSFTCollator(tok)
    args = SFTConfig(output_dir=str(tmp_path_factory.mktemp("s2r_sft")), use_cpu=True, bf16=False, report_to="none",
                     max_steps=2, per_device_train_batch_size=2, gradient_checkpointing=False, logging_steps=1,
                     learning_rate=1e-3, save_strategy="no", disable_tqdm=True)
    return SFTTrainer(model=str(tiny_model_path), args=args, train_dataset=Dataset.from_list(rows),
                      processing_class=tok, data_collator=collator), tok, collator


def test_collator_on_sfttrainer_prepared_examples(sft_trainer):
    trainer, tok, collator = sft_trainer
    examples = [trainer.train_dataset[i] for i in range(2)]
    batch = collator(examples)
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    original = examples[0]["labels"]
    trained = tok.decode([i for i, lab in zip(ids, labels) if lab != -100])
    masked = tok.decode([i for i, lab, o in zip(ids, labels, original) if lab == -100 and o != -100])
    # loss on v1, v2, "Let me try again." + s3, v3 and the end-of-turn token; s1, s2 (+ its retry) masked
    assert masked == S[0] + "\n\n" + "Let me try again.\n\n" + S[1] + "\n\n"
    assert trained == (f"Wait, let me recheck my solution.\n\n{V[0]}\n\nWait, let me recheck my solution.\n\n{V[1]}"
                       f"\n\nLet me try again.\n\n{S[2]}\n\nWait, let me recheck my solution.\n\n{V[2]}<|im_end|>\n")
    # the prompt stays masked; the single-round row trains on its whole completion
    assert all(lab == -100 for lab, o in zip(labels, original) if o == -100)
    labels1 = batch["labels"][1].tolist()
    assert [lab for lab in labels1 if lab != -100] == [o for o in examples[1]["labels"] if o != -100]
    # padding is masked
    n1 = int(batch["attention_mask"][1].sum())
    assert all(lab == -100 for lab in labels1[n1:])


def test_sft_training_runs_with_the_collator(sft_trainer):
    trainer, _, collator = sft_trainer
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert collator.masked_tokens > 0


def test_collator_needs_a_completion():
    from transformers import AutoTokenizer

    from rewardkit.testing import tiny_model_dir

    collator = S2RSFTCollator(AutoTokenizer.from_pretrained(tiny_model_dir()))
    with pytest.raises(KeyError, match="completion_mask"):
        collator([{"input_ids": [1, 2, 3]}])
    out = collator([{"input_ids": [1, 2, 3], "completion_mask": [0, 1, 1]}])
    assert out["labels"][0].tolist() == [-100, 2, 3]
