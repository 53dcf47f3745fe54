"""process_advantage on real TRL trainers: shapes, masking, hand-computed values, resume, RLOO."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import TrainerCallback

from rewardkit import ProcessReward, StepScores
from rewardkit.prm import PRMReward, TaggedScorer
from rewardkit.testing import tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset
from rewardkit.trajectory import split_steps, step_token_ends, token_char_ends
from rewardkit.trl import ProcessAdvantageHook, build_trainer, load_hook_state, token_advantages


class WordSteps(ProcessReward):
    """Deterministic process reward: each blank-line step scores 1 if it contains "good", else 0."""

    def step_scores(self, sample):
        steps = split_steps(sample.text, "blank_line")
        return StepScores([1.0 if "good" in s.text else 0.0 for s in steps], [s.span for s in steps])


# -- the pure function, by hand -------------------------------------------------------------------

def test_token_advantages_hand_computed():
    # steps end at tokens 2 and 4 (exclusive), 5 real tokens, width 7
    got = token_advantages([1.0, -1.0], [2, 4], length=5, width=7)
    # t<2: 1 + -1 = 0; 2<=t<4: -1; t=4 after the last step: last step's value -1; padding 0
    assert got == [0.0, 0.0, -1.0, -1.0, -1.0, 0.0, 0.0]
    assert token_advantages([], [], 5, 6) == [0.0] * 6
    assert token_advantages([0.5, 0.25, 2.0], [1, 3, 3], 3, 4) == [2.75, 2.25, 2.25, 0.0]


# -- a real trainer, fed a hand-built rollout -------------------------------------------------------

@pytest.fixture(scope="module")
def grpo_trainer(tmp_path_factory):
    from trl import GRPOTrainer

    reward = WordSteps(name="words")
    hook = ProcessAdvantageHook()
    trainer = build_trainer(GRPOTrainer, hooks=[hook], model=str(tiny_model_dir("causal_lm")), reward_funcs=[reward],
                            args=tiny_grpo_config(tmp_path_factory.mktemp("pa"), num_generations=2,
                                                  per_device_train_batch_size=4),
                            train_dataset=tiny_prompt_dataset(4))
    trainer.model.train()  # as inside Trainer.train(); from_pretrained leaves it in eval mode
    return trainer, reward, hook


def _rollout(trainer, texts, eos=True):
    tok = trainer.processing_class
    rows = [tok(t, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else []) for t in texts]
    width = max(len(r) for r in rows) + 1
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return {"completion_ids": ids, "completion_mask": mask, "advantages": torch.tensor([0.5, -0.5, 1.0, -1.0])}


def test_hand_computed_group_example(grpo_trainer):
    trainer, reward, hook = grpo_trainer
    texts = ["good\n\nbad", "good\n\ngood", "bad", "good"]
    reward(prompts=["p"] * 4, completions=texts)
    out = hook.after_rollout(trainer, [], _rollout(trainer, texts))
    adv = out["advantages"]
    assert adv.shape == out["completion_ids"].shape
    # group 0 (rows 0, 1): step rewards [1, 0, 1, 1]: mean 0.75, unbiased std 0.5 -> normalised
    # [0.5, -1.5 | 0.5, 0.5]; group 1 (rows 2, 3): [0, 1]: mean 0.5, std sqrt(0.5) -> [-0.7071 | 0.7071]
    s0 = 0.5 + 1e-4
    n = lambda x, m, s: (x - m) / s  # noqa: E731
    tok = trainer.processing_class
    for i, text in enumerate(texts):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ends = step_token_ends([s.span for s in split_steps(text)], token_char_ends(ids + [tok.eos_token_id], tok))
        length = len(ids) + 1
        if i == 0:
            vals = [n(1, 0.75, s0), n(0, 0.75, s0)]
        elif i == 1:
            vals = [n(1, 0.75, s0), n(1, 0.75, s0)]
        else:
            s1 = math.sqrt(0.5) + 1e-4
            vals = [n(0 if i == 2 else 1, 0.5, s1)]
        expect = [0.0] * adv.shape[1]
        for t in range(length):
            expect[t] = sum(v for v, e in zip(vals, ends) if e - 1 >= t) if t < ends[-1] else vals[-1]
        assert adv[i].tolist() == pytest.approx(expect, abs=1e-5), i
        assert adv[i, length:].abs().sum() == 0  # padding
    # by hand: row 0's first token lies in both steps: 0.25/0.5001 - 0.75/0.5001
    assert adv[0, 0].item() == pytest.approx(-0.5 / 0.5001, abs=1e-6)


def test_outcome_plus_process(grpo_trainer):
    trainer, reward, _ = grpo_trainer
    texts = ["good\n\nbad", "good\n\ngood", "bad", "good"]
    reward(prompts=["p"] * 4, completions=texts)
    pure = ProcessAdvantageHook().after_rollout(trainer, [], _rollout(trainer, texts))["advantages"]
    mixed_hook = ProcessAdvantageHook(mode="outcome_plus_process", coef=0.3)
    rollout = _rollout(trainer, texts)
    mixed = mixed_hook.after_rollout(trainer, [], rollout)["advantages"]
    outcome = torch.tensor([0.5, -0.5, 1.0, -1.0]).unsqueeze(1) * rollout["completion_mask"]
    assert torch.allclose(mixed, outcome + 0.3 * pure, atol=1e-6)


def test_rows_without_steps_get_zero_and_are_counted(grpo_trainer):
    trainer, reward, _ = grpo_trainer
    texts = ["good", "   ", "bad\n\ngood", "good"]
    reward(prompts=["p"] * 4, completions=texts)
    hook = ProcessAdvantageHook()
    out = hook.after_rollout(trainer, [], _rollout(trainer, texts))
    assert out["advantages"][1].abs().sum() == 0
    assert hook.state["missing"] == 1 and hook.state["steps"] == 4
    # eval rollouts get advantages but leave the checkpointed training state alone
    trainer.model.eval()
    try:
        reward(prompts=["p"] * 4, completions=texts)
        out = hook.after_rollout(trainer, [], _rollout(trainer, texts))
    finally:
        trainer.model.train()
    assert out["advantages"].dim() == 2 and hook.state["rollouts"] == 1 and hook.state["steps"] == 4


def test_misaligned_rows_fail_loudly(grpo_trainer):
    trainer, reward, hook = grpo_trainer
    reward(prompts=["p"] * 2, completions=["good", "bad"])
    with pytest.raises(RuntimeError, match="step-score rows"):
        hook.after_rollout(trainer, [], _rollout(trainer, ["a", "b", "c", "d"]))


def test_setup_requires_a_process_reward(tmp_path):
    from trl import GRPOTrainer

    with pytest.raises(ValueError, match="needs a process reward"):
        build_trainer(GRPOTrainer, hooks=["process_advantage"], model=str(tiny_model_dir("causal_lm")),
                      reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                      args=tiny_grpo_config(tmp_path), train_dataset=tiny_prompt_dataset(4))
    with pytest.raises(ValueError, match="unknown process_advantage mode"):
        ProcessAdvantageHook(mode="nope")


def test_trl_surfaces_the_hook_relies_on(grpo_trainer):
    """Fails loudly when TRL renames what process_advantage reads from the trainer."""
    import inspect

    from trl import GRPOTrainer

    trainer, _, _ = grpo_trainer
    for attr in ("reward_funcs", "reward_weights", "num_generations", "accelerator", "processing_class", "_metrics"):
        assert hasattr(trainer, attr), f"GRPOTrainer no longer has {attr}"
    assert "train" in trainer._metrics
    src = inspect.getsource(GRPOTrainer._compute_loss)
    assert "advantages.dim() == 1" in src, "GRPO _compute_loss no longer accepts (B, T) advantages"
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for key in ('"completion_ids"', '"completion_mask"', '"advantages"'):
        assert key in src, f"GRPO rollout output lost {key}"


# -- real training runs ------------------------------------------------------------------------

class Spy(ProcessAdvantageHook):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def after_rollout(self, trainer, inputs, output):
        out = super().after_rollout(trainer, inputs, output)
        prm = [f for f in trainer.reward_funcs if isinstance(f, ProcessReward)][0]
        self.seen.append({k: out[k].clone() for k in ("advantages", "completion_mask", "completion_ids")}
                         | {"steps": list(prm.last_step_scores), "texts": list(prm.last_call.texts)})
        return out


def test_grpo_with_prm_reward_and_process_advantage(tmp_path):
    from trl import GRPOTrainer

    prm = PRMReward(TaggedScorer(str(tiny_model_dir("prm"))), reducer="min", splitter="re: ", name="prm")
    spy = Spy()
    trainer = build_trainer(GRPOTrainer, hooks=[spy], model=str(tiny_model_dir("causal_lm")), reward_funcs=[prm],
                            args=tiny_grpo_config(tmp_path, max_steps=3), train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    assert len(spy.seen) == 3
    tok = trainer.processing_class
    logged = [h for h in trainer.state.log_history if "rewards/prm/mean" in h]
    assert len(logged) == 3 and "process_advantage/steps_per_completion" in logged[0]
    for seen in spy.seen:
        adv, mask, ids = seen["advantages"], seen["completion_mask"], seen["completion_ids"]
        assert adv.shape == ids.shape and adv.dim() == 2
        assert (adv * (1 - mask)).abs().sum() == 0
        # independent recomputation: group stats over the 4 completions of the one prompt
        rows = seen["steps"]
        allv = [x for r in rows if r is not None for x in r.scores]
        mean = sum(allv) / len(allv)
        std = math.sqrt(sum((x - mean) ** 2 for x in allv) / (len(allv) - 1))
        for i, r in enumerate(rows):
            n = int(mask[i].sum())
            if r is None or not r.scores:
                assert adv[i].abs().sum() == 0
                continue
            vals = [(x - mean) / (std + 1e-4) for x in r.scores]
            ends = step_token_ends(r.spans, token_char_ends(ids[i, :n].tolist(), tok, seen["texts"][i]))
            for t in range(n):
                want = vals[-1] if t >= ends[-1] else sum(v for v, e in zip(vals, ends) if e - 1 >= t)
                assert adv[i, t].item() == pytest.approx(want, abs=1e-4)


class KillAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed at step {self.step}")


def _resume_trainer(out, callbacks=()):
    from trl import GRPOTrainer

    prm = PRMReward(TaggedScorer(str(tiny_model_dir("prm"))), reducer="mean", splitter="re: ", name="prm")
    return build_trainer(GRPOTrainer, hooks=[ProcessAdvantageHook(mode="outcome_plus_process", coef=0.5)],
                         model=str(tiny_model_dir("causal_lm")), reward_funcs=[prm], callbacks=list(callbacks),
                         args=tiny_grpo_config(out, max_steps=3, save_strategy="steps", save_steps=2),
                         train_dataset=tiny_prompt_dataset(8))


def test_kill_after_step_2_and_resume_matches_uninterrupted(tmp_path):
    full = _resume_trainer(tmp_path / "full")
    full.train()
    want = full.rewardkit_hooks[0].state_dict()
    assert want["rollouts"] == 3 and want["steps"] > 0

    killed = _resume_trainer(tmp_path / "killed", [KillAt(2)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    ckpt = tmp_path / "killed" / "checkpoint-2"
    assert killed.rewardkit_hooks[0].state_dict()["rollouts"] == 2
    probe = ProcessAdvantageHook()
    assert load_hook_state([probe], str(ckpt)) and probe.state["rollouts"] == 2

    resumed = _resume_trainer(tmp_path / "killed")
    resumed.train(resume_from_checkpoint=str(ckpt))
    got = resumed.rewardkit_hooks[0].state_dict()
    assert got["rollouts"] == want["rollouts"] and got["steps"] == want["steps"]
    assert got["completions"] == want["completions"] and got["missing"] == want["missing"]
    assert got["step_reward_sum"] == pytest.approx(want["step_reward_sum"], rel=1e-5)
    assert got["step_reward_sq_sum"] == pytest.approx(want["step_reward_sq_sum"], rel=1e-5)


def test_rloo_needs_sequence_level_and_runs_with_it(tmp_path):
    from trl import RLOOConfig, RLOOTrainer

    def args(sub):
        return RLOOConfig(output_dir=str(tmp_path / sub), use_cpu=True, bf16=False, report_to="none", max_steps=2,
                          logging_steps=1, save_strategy="no", per_device_train_batch_size=4, num_generations=4,
                          max_completion_length=16, learning_rate=1e-4, gradient_checkpointing=False, seed=0,
                          beta=0.0, disable_tqdm=True)

    kw = dict(model=str(tiny_model_dir("causal_lm")), reward_funcs=[WordSteps(name="words")],
              train_dataset=tiny_prompt_dataset(8))
    with pytest.raises(ValueError, match="sequence-level"):
        build_trainer(RLOOTrainer, hooks=[ProcessAdvantageHook()], args=args("a"), **kw)
    spy = Spy(sequence_level=True, mode="outcome_plus_process")
    trainer = build_trainer(RLOOTrainer, hooks=[spy], args=args("b"), **kw)
    trainer.train()
    assert spy.seen and all(s["advantages"].dim() == 1 for s in spy.seen)


def test_token_advantages_property():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.floats(-3, 3), min_size=1, max_size=6), st.integers(1, 20), st.integers(0, 4), st.data())
    def check(values, length, pad, data):
        ends = sorted(data.draw(st.lists(st.integers(1, length), min_size=len(values), max_size=len(values))))
        got = token_advantages(values, ends, length, length + pad)
        for t in range(length + pad):
            if t >= length:
                want = 0.0
            elif t >= ends[-1]:
                want = values[-1]
            else:
                want = sum(v for v, e in zip(values, ends) if e - 1 >= t)
            assert got[t] == pytest.approx(want, abs=1e-9)

    check()


def test_normalize_none_only_centres(grpo_trainer):
    trainer, reward, _ = grpo_trainer
    texts = ["good", "bad", "good\n\ngood", "bad"]
    reward(prompts=["p"] * 4, completions=texts)
    adv = ProcessAdvantageHook(normalize="none").after_rollout(trainer, [], _rollout(trainer, texts))["advantages"]
    # group 0: step rewards [1, 0], mean 0.5 -> +0.5 / -0.5 on every real token
    assert adv[0, 0].item() == pytest.approx(0.5) and adv[1, 0].item() == pytest.approx(-0.5)
    # group 1: [1, 1, 0], mean 2/3: row 2's first token sums both steps: 2 * (1/3)
    assert adv[2, 0].item() == pytest.approx(2 / 3, abs=1e-6) and adv[3, 0].item() == pytest.approx(-2 / 3, abs=1e-6)


def test_batch_char_ends_matches_token_char_ends(tiny_tokenizer):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from rewardkit.trl.process_advantage import batch_char_ends

    tok = tiny_tokenizer
    ids = st.lists(st.integers(0, len(tok) - 1), max_size=12)

    @settings(max_examples=40, deadline=None)
    @given(st.lists(ids, min_size=1, max_size=4), st.booleans())
    def check(rows, give_text):
        rows = rows + [tok("5 + 9 = 14.\n\nSo 14.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]]
        texts = [tok.decode(r, skip_special_tokens=True) if give_text else None for r in rows]
        assert batch_char_ends(rows, texts, tok) == [token_char_ends(r, tok, t) for r, t in zip(rows, texts)]

    check()
