"""S²R hooks on real TRL trainers with the tiny model: token advantages, training, resume, RLOO."""

from __future__ import annotations

import os

import pytest
import torch
from _s2r_group import GROUP, C
from rewardkit_s2r.hooks import S2RProcessAdvantageHook
from rewardkit_s2r.parse import format_trajectory
from rewardkit_s2r.rewards import SCORED

from rewardkit import get_hook, get_reward
from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset
from rewardkit.trl import TrainerHook, build_trainer, read_hook_state

# group baselines of this batch (test_s2r_rewards.py derives them by hand)
EXPECTED = [[-0.5, 2 / 3, 1.0, 0.0], [1.5, 0.0], [-0.5, -4 / 3], [-0.5, 2 / 3, -1.0, 0.0]]


def grpo(tmp_path, model_path, hooks, rewards, **cfg):
    from trl import GRPOTrainer

    return build_trainer(GRPOTrainer, hooks=hooks, model=str(model_path), reward_funcs=rewards,
                         args=tiny_grpo_config(tmp_path, **cfg), train_dataset=tiny_prompt_dataset(8))


def rollout(trainer, texts, stray_ok=True):
    """Score ``texts`` with the trainer's reward and build the rollout dict TRL would hand the hook."""
    tok = trainer.processing_class
    ids = [tok.encode(t, add_special_tokens=False) + [tok.eos_token_id] for t in texts]
    reward = trainer.reward_funcs[0]
    reward(prompts=["p"] * len(texts), completions=list(texts), completion_ids=ids, solution=["14"] * len(texts))
    T = max(map(len, ids)) + 3
    completion_ids = torch.full((len(ids), T), tok.pad_token_id)
    mask = torch.zeros((len(ids), T), dtype=torch.long)
    for i, row in enumerate(ids):
        completion_ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return {"completion_ids": completion_ids, "completion_mask": mask, "advantages": torch.zeros(len(ids))}, ids


@pytest.fixture(scope="module")
def trainer_and_hook(tmp_path_factory, tiny_model_path):
    hook = get_hook("s2r.process_advantage")
    trainer = grpo(tmp_path_factory.mktemp("s2r_hook"), tiny_model_path, [hook], [get_reward("s2r.process")])
    return trainer, hook


def test_token_advantages_follow_actions(trainer_and_hook):
    trainer, hook = trainer_and_hook
    tok = trainer.processing_class
    out, ids = rollout(trainer, GROUP)
    trainer.model.eval()
    adv = hook.after_rollout(trainer, [], dict(out))["advantages"]
    assert adv.shape == out["completion_ids"].shape
    assert hook.rollouts == 0 and hook.table.counts == {}  # evaluation rollouts never enter the table
    details = trainer.reward_funcs[0].last_call.detail(SCORED)
    for i, (d, row_ids) in enumerate(zip(details, ids)):
        values = adv[i].tolist()
        assert all(v == 0.0 for v in values[len(row_ids):])  # padding
        # group tokens by value runs in action order: each action's tokens decode to its text
        pos = 0
        for k, a in enumerate(d.trajectory.actions):
            text = d.trajectory.text[a.start:a.end]
            n = len(tok.encode(text, add_special_tokens=False))
            assert tok.decode(row_ids[pos:pos + n]) == text
            assert values[pos:pos + n] == pytest.approx([EXPECTED[i][k]] * n)
            pos += n
        assert values[pos] == pytest.approx(EXPECTED[i][-1])  # EOS belongs to the last action
        assert pos + 1 == len(row_ids)


def test_marker_zero_action_weighting_and_token_id_split(trainer_and_hook):
    trainer, _ = trainer_and_hook
    tok = trainer.processing_class
    out, ids = rollout(trainer, GROUP)
    zero = S2RProcessAdvantageHook(markers="zero")
    zero.setup(trainer)
    adv = zero.after_rollout(trainer, [], dict(out))["advantages"][0].tolist()
    text = GROUP[0]
    v = text.index("Wait,")
    marker_ids = tok.encode(text[:v], add_special_tokens=False)
    n_marker = len(tok.encode("Wait, let me recheck my solution.\n\n", add_special_tokens=False))
    assert adv[len(marker_ids):len(marker_ids) + n_marker] == [0.0] * n_marker
    assert adv[len(marker_ids) + n_marker] == pytest.approx(2 / 3)

    per_action = S2RProcessAdvantageHook(weighting="action")
    per_action.setup(trainer)
    adv = per_action.after_rollout(trainer, [], dict(out))["advantages"]
    for i, row in enumerate(ids):
        # every action's tokens sum to its advantage times L / n_actions
        total = adv[i, :len(row)].sum().item()
        n_act = len(EXPECTED[i])
        assert total == pytest.approx(sum(EXPECTED[i]) * len(row) / n_act, rel=1e-5)

    by_ids = LoggedHook(split="token_ids")
    by_ids.setup(trainer)
    stray = format_trajectory(["5 + 9 = 13. Wait, no: 14. \\boxed{14}"], [C])
    out2, ids2 = rollout(trainer, [*GROUP, stray])
    adv = by_ids.after_rollout(trainer, [], dict(out2))["advantages"]
    assert by_ids.logged[-1]["s2r.process_advantage/split_failures"] == 1.0
    assert by_ids.logged[-1]["s2r.process_advantage/rows"] == 5.0
    assert adv[4].abs().sum().item() == 0.0
    row = adv[1].tolist()
    wait = tok.encode("Wait,", add_special_tokens=False)
    start = ids2[1].index(wait[0])
    assert row[start:start + len(wait)] == [0.0] * len(wait)  # marker tokens: the code's "part 0"
    assert row[0] == pytest.approx(1 - (-1 + 1 - 1 - 1 + 1) / 5)  # the stray row counts in the baseline


def test_hook_rejects_rlo_trainer_and_missing_reward(tmp_path, tiny_model_path):
    with pytest.raises(ValueError, match="s2r.process_advantage needs exactly 1 S2RProcessReward"):
        grpo(tmp_path, tiny_model_path, [get_hook("s2r.process_advantage")], [get_reward("s2r.outcome")])
    with pytest.raises(ValueError, match="scale_rewards"):
        grpo(tmp_path, tiny_model_path, [get_hook("s2r.outcome_rloo")], [get_reward("s2r.outcome")])


class LoggedHook(S2RProcessAdvantageHook):
    """The hook with its logged statistics kept for the test (it logs only through ``log_metrics``)."""

    def log_metrics(self, trainer, values):
        self.__dict__.setdefault("logged", []).append(dict(values))
        super().log_metrics(trainer, values)


class Spy(TrainerHook):
    name = "spy"

    def __init__(self):
        self.advantages = []

    def after_rollout(self, trainer, inputs, output):
        self.advantages.append(output["advantages"].detach().clone())
        return output


def test_grpo_training_checkpoints_and_resumes_the_baseline_table(tmp_path, tiny_model_path):
    out = tmp_path / "run"
    hook = S2RProcessAdvantageHook(baseline="running", min_count=1)
    spy = Spy()
    trainer = grpo(out, tiny_model_path, [hook, spy], [get_reward("s2r.process", truncated_penalty=True)],
                   max_steps=2, save_strategy="steps", save_steps=1)
    trainer.train()
    assert hook.rollouts == 2 and len(spy.advantages) == 2
    assert spy.advantages[0].dim() == 2
    # the hook's statistics reach the trainer's log lines (one per step here)
    logged = [h for h in trainer.state.log_history if "s2r.process_advantage/rows" in h]
    assert len(logged) == 2 and all(h["s2r.process_advantage/rows"] == 4.0 for h in logged)
    assert all(h["s2r.process_advantage/split_failures"] == 0.0 and h["s2r.process_advantage/contexts"] >= 1
               for h in logged)
    n_per_rollout = 4  # 4 completions, each at least one action with context ""
    assert hook.table.counts[""] == 2 * n_per_rollout
    saved = read_hook_state(os.path.join(out, "checkpoint-1"))
    assert saved["s2r.process_advantage"]["table"]["counts"][""] == n_per_rollout
    assert saved["s2r.process_advantage"]["rollouts"] == 1
    # second rollout used the table of the first: baseline("") = mean of the first rollout's first actions
    first_mean = saved["s2r.process_advantage"]["table"]["sums"][""] / n_per_rollout
    assert first_mean == -1.0  # a random tiny model never answers 14-type questions correctly

    resumed_hook = S2RProcessAdvantageHook(baseline="running", min_count=1)
    resumed = grpo(out, tiny_model_path, [resumed_hook], [get_reward("s2r.process", truncated_penalty=True)],
                   max_steps=2, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(out / "checkpoint-1"))
    assert resumed_hook.rollouts == 2
    assert resumed_hook.table.counts[""] == 2 * n_per_rollout


def test_rloo_trainer_with_outcome_reward(tmp_path, tiny_model_path):
    from rewardkit_s2r.config import rloo_kwargs
    from trl import RLOOConfig, RLOOTrainer

    cfg = rloo_kwargs("paper", learning_rate=1e-4, warmup_steps=0)
    args = RLOOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_steps=2,
                      logging_steps=1, save_strategy="no", per_device_train_batch_size=4,
                      max_completion_length=16, gradient_checkpointing=False, seed=0, disable_tqdm=True, **cfg)
    reward = get_reward("s2r.outcome")
    trainer = RLOOTrainer(model=str(tiny_model_path), reward_funcs=[reward], args=args,
                          train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/s2r.outcome/mean" in h]
    assert len(logs) == 2 and all(h["rewards/s2r.outcome/mean"] == -1.0 for h in logs)
    assert "s2r/final_accuracy" in logs[0]


def test_grpo_outcome_rloo_hook_is_leave_one_out(tmp_path, tiny_model_path):
    hook = get_hook("s2r.outcome_rloo")
    trainer = grpo(tmp_path, tiny_model_path, [hook], [get_reward("s2r.outcome")], scale_rewards="none",
                   importance_sampling_level="sequence", loss_type="grpo")
    rewards = torch.tensor([1.0, -1.0, -1.0, -1.0])
    centred = rewards - rewards.mean()  # what GRPO hands the hook with scale_rewards="none"
    adv = hook.after_rollout(trainer, [], {"advantages": centred})["advantages"]
    loo = torch.stack([rewards[i] - (rewards.sum() - rewards[i]) / 3 for i in range(4)])
    assert torch.allclose(adv, loo)
    assert torch.allclose(adv, torch.tensor([2.0, -2 / 3, -2 / 3, -2 / 3]))
    trainer.train()  # the hook runs inside a real GRPO step


@pytest.mark.distributed
def test_baseline_table_is_gathered_across_two_processes(tmp_path):
    import json
    import subprocess
    import sys

    worker = os.path.join(os.path.dirname(__file__), "s2r_dist_worker.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", REWARDKIT_LOAD_PLUGINS="s2r")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", worker, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1))
    assert r0["world"] == 2
    assert r0["sums"] == r1["sums"] and r0["counts"] == r1["counts"]
    # "" : rank0 [+1, -1], rank1 [-1, -1] -> mean -0.5 on both ranks
    assert r0["counts"][""] == 4 and r0["baselines"][""] == r1["baselines"][""] == -0.5
    assert r0["adv"][0][0] == 1.5 and r1["adv"][0][0] == -0.5


def test_code_mode_on_grpo_trainer_gives_the_code_token_rewards(tmp_path, tiny_model_path):
    from rewardkit_s2r.code import CODE_CONTEXT_KEYS, code_rollout
    from rewardkit_s2r.config import hook_kwargs, reward_kwargs

    reward = get_reward("s2r.process", **reward_kwargs("code"))
    hook = get_hook("s2r.process_advantage", **hook_kwargs("code", weighting="token"))
    trainer = grpo(tmp_path, tiny_model_path, [hook], [reward])
    hook.setup(trainer)  # hands the trainer's tokenizer and EOS to the reward
    tok = trainer.processing_class
    texts = [*GROUP, GROUP[0] + "\n\nLet me try again.\n\n"]
    out, ids = rollout(trainer, texts)
    trainer.model.train()  # a training rollout: the batch enters the running table
    adv = hook.after_rollout(trainer, [], dict(out))["advantages"]
    verify = tok.encode("Wait,", add_special_tokens=False)
    retry = tok.encode("Let me try again.\n\n", add_special_tokens=False)
    for i, (d, row) in enumerate(zip(reward.last_call.detail(SCORED), ids)):
        ref = code_rollout(row, truncated=False, solution="14", answer="14", decode=tok.decode,
                           eos_id=tok.eos_token_id, verify_ids=verify, retry_ids=retry)
        assert (d.rewards, d.contexts, d.valid) == (ref.rewards, ref.contexts, ref.valid)
        values = ref.token_values(lambda c: 0.0) if ref.valid else []  # empty table: baselines 0
        assert adv[i, :len(values)].tolist() == pytest.approx(values)
        assert adv[i, len(values):].abs().sum().item() == 0.0  # EOS and padding
    # the code cuts the id string at the EOS id's digits: this tokenizer's EOS is 0, so every row ends
    # at its first id containing a 0 (token 320, " 9", in row 0), as the released trainer would
    first = next(k for k, t in enumerate(ids[0]) if "0" in str(t))
    first_piece = reward.last_call.detail(SCORED)[0].segments[0].tokens
    assert first_piece == ids[0][:first] + [int(str(ids[0][first]).split("0")[0])]
    assert hook.table.counts[""] == len(texts) and set(hook.table.counts) <= CODE_CONTEXT_KEYS
