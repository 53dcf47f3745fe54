"""``dreamprm.prm`` through the registry, on plain/chat completions, bad input, and a real GRPO run
with the ``dreamprm.bilevel`` hook (checkpoint + resume of the domain weights)."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from _dreamprm_util import small_toy, v1_prm
from rewardkit_dreamprm import make_chain

from rewardkit import STEP_SCORES, get_hook, get_reward
from rewardkit.reducers import logodds

RESP = ["Step 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9.\nFinal answer: 9",
        "Step 1: 2 + 3 = 105.\nStep 2: 105 + 4 = 109.\nFinal answer: 109",
        "Final answer: 9"]


@pytest.fixture(scope="module")
def saved_prm(tmp_path_factory):
    path = tmp_path_factory.mktemp("prm") / "v1"
    prm = v1_prm(seed=1)
    prm.save_pretrained(str(path))
    return path


def test_registered_reward_mean_logodds_by_hand(saved_prm, log_capture):
    r = get_reward("dreamprm.prm", model=str(saved_prm))
    assert r.kind == "process" and r.__name__ == "dreamprm.prm" and r.reducer == "mean_logodds"
    vals = r(["Compute 2 + 3 + 4."] * 3, RESP, **log_capture.kwargs())
    assert vals[2] is None  # no steps: no process score, counted
    assert log_capture.metrics["rewardkit/dreamprm.prm/none"] == [1.0]
    # 4 step prefixes fit one forward; the count reaches the logs and the call record
    assert log_capture.metrics["rewardkit/dreamprm.prm/forwards"] == [1.0]
    assert r.last_call.metrics["rewardkit/dreamprm.prm/forwards"] == 1.0
    steps = r.last_call.detail(STEP_SCORES)
    assert [len(s.scores) for s in steps[:2]] == [2, 2]
    # the final-answer line is not a scored step in v1
    assert RESP[0][steps[0].spans[-1][0]:steps[0].spans[-1][1]] == "Step 2: 5 + 4 = 9."
    for v, s in zip(vals[:2], steps[:2]):
        assert v == pytest.approx(sum(logodds(p) for p in s.scores) / len(s.scores), rel=1e-6)
    # same numbers as the model scoring the completion's own prefixes directly (whitespace kept)
    chain = make_chain("Compute 2 + 3 + 4.", RESP[0])
    assert [chain.prefix(i) for i in range(2)] == ["Step 1: 2 + 3 = 5.\n", "Step 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9.\n"]
    direct = r.scorer.prm.score_chains([chain])[0]
    assert steps[0].scores == pytest.approx(direct, abs=1e-6)
    # pickles without the model, reloads lazily
    again = pickle.loads(pickle.dumps(r))
    assert again.scorer._lazy_prm is None
    assert again(["Compute 2 + 3 + 4."], RESP[:1]) == pytest.approx(vals[:1], rel=1e-5)


def test_chat_completions_and_15_mean(tmp_path):
    from _dreamprm_util import gen_prm

    g = gen_prm()
    g.save_pretrained(str(tmp_path / "g"))
    r = get_reward("dreamprm.prm", model=str(tmp_path / "g"))
    assert r.reducer == "mean"
    prompts = [[{"role": "user", "content": "Compute 2 + 3 + 4."}]]
    comps = [[{"role": "assistant", "content": RESP[0]}]]
    v = r(prompts, comps)
    s = r.last_call.detail(STEP_SCORES)[0]
    assert len(s.scores) == 3  # 1.5 appends the final answer as a step
    assert v[0] == pytest.approx(sum(s.scores) / 3, rel=1e-6)
    assert all(0.0 < x < 1.0 for x in s.scores)


def test_confident_prm_gives_finite_reward(saved_prm):
    r = get_reward("dreamprm.prm", model=str(saved_prm))
    prm = r.scorer.prm
    with torch.no_grad():
        prm.head.bias.fill_(1e4)  # p == 1.0 exactly in float32
    v = r(["Q"], RESP[:1])[0]
    assert math.isfinite(v) and v == pytest.approx(math.log((1 - 1e-6) / 1e-6), rel=1e-6)


def test_missing_model_is_a_clear_error():
    with pytest.raises(ValueError, match="model="):
        get_reward("dreamprm.prm")


def test_grpo_run_with_reward_and_bilevel_hook_resumes(tmp_path, tiny_model_path, saved_prm):
    from trl import GRPOTrainer

    from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset
    from rewardkit.trl import build_trainer, load_hook_state

    toy = small_toy(n_train_per_domain=8)
    reward = get_reward("dreamprm.prm", model=str(saved_prm))

    def make_hook():
        return get_hook("dreamprm.bilevel", train_data=toy["train"], meta_data=toy["meta"], meta_from_rollouts=True,
                        every=1, steps_per_phase=2,
                        config={"lr": 1e-3, "meta_lr": 0.05, "batch_size": 4, "meta_batch_size": 4,
                                "unroll_steps": 1, "lr_scheduler": "constant"})

    hook = make_hook()
    args = tiny_grpo_config(tmp_path / "run", max_steps=2, save_strategy="steps", save_steps=2)
    trainer = build_trainer(GRPOTrainer, hooks=[hook], model=str(tiny_model_path), reward_funcs=[reward],
                            args=args, train_dataset=tiny_prompt_dataset(8))
    before = {k: v.clone() for k, v in reward.scorer.prm.state_dict().items()}
    trainer.train()
    # the reward's PRM is the one the hook trains
    assert hook.bilevel.prm is reward.scorer.prm
    assert hook.bilevel.global_step == 4 and hook.bilevel.upper_step_count == 4
    assert any(not torch.equal(before[k], v) for k, v in reward.scorer.prm.state_dict().items())
    # rollouts joined the meta set
    assert len(hook.bilevel.meta_data) > len(toy["meta"])
    logged = [h for h in trainer.state.log_history if "dreamprm/weight/add" in h]
    assert logged
    # the phase's losses reach the policy trainer's logs too (TrainerHook.log_metrics)
    assert all(math.isfinite(h["dreamprm/meta_loss"]) and h["dreamprm/lower_loss"] >= 0 for h in logged)
    table = hook.bilevel.weight_table()
    assert any(abs(w - 1) > 1e-5 for w in table.values())
    # resume: a fresh hook gets the weights and the PRM back from the checkpoint
    hook2 = make_hook()
    reward2 = get_reward("dreamprm.prm", model=str(saved_prm))
    trainer2 = build_trainer(GRPOTrainer, hooks=[hook2], model=str(tiny_model_path), reward_funcs=[reward2],
                             args=args, train_dataset=tiny_prompt_dataset(8))
    # the hook's state holds only tensors and plain containers: loadable without unpickling code
    from rewardkit.trl import read_hook_state

    safe = read_hook_state(str(tmp_path / "run" / "checkpoint-2"))
    assert safe["dreamprm.bilevel"]["bilevel"]["global_step"] == 4
    assert load_hook_state([hook2], str(tmp_path / "run" / "checkpoint-2"))
    assert hook2.bilevel.weight_table() == pytest.approx(table)
    assert hook2.bilevel.global_step == 4
    for k, v in hook.bilevel.prm.state_dict().items():
        assert torch.allclose(v, reward2.scorer.prm.state_dict()[k])
    del trainer2


def test_dreamprm_prm_drives_core_token_level_advantages(tmp_path, tiny_model_path, saved_prm):
    """dreamprm.prm is a ProcessReward: the core prm.process_advantage hook turns its step scores into
    per-token advantages in a real GRPO run."""
    from trl import GRPOTrainer

    from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset
    from rewardkit.trl import build_trainer

    reward = get_reward("dreamprm.prm", model=str(saved_prm))
    hook = get_hook("prm.process_advantage", mode="process_supervision")
    trainer = build_trainer(GRPOTrainer, hooks=[hook], model=str(tiny_model_path), reward_funcs=[reward],
                            args=tiny_grpo_config(tmp_path / "pa", max_steps=1), train_dataset=tiny_prompt_dataset(4))
    trainer.train()
    term = hook.last_process_term
    assert term is not None and term.dim() == 2 and torch.isfinite(term).all()
    assert hook.state["steps"] > 0
