"""Flow-GRPO on a real TRL GRPOTrainer with the tiny model: multi-turn rollouts, broadcast advantages,
Eq. 10 weights, padding rows without gradient, and the TRL internals the plugin relies on."""

import random

import pytest
import torch
from rewardkit_flowgrpo import AgentSystem, FlowRollout, default_registry, flow_advantages, grpo_kwargs
from rewardkit_flowgrpo.toy import toy_dataset, toy_executor
from trl import GRPOTrainer

from rewardkit import get_hook, get_reward
from rewardkit.testing import tiny_grpo_config
from rewardkit.trl import TRLCompatError, build_trainer, check_trl_compat

G, T_MAX = 4, 3


def test_trl_internals_used_by_the_plugin_still_exist():
    check_trl_compat(GRPOTrainer, generation=True)  # the "trl" planner samples through generate_completions

    class Drifted(GRPOTrainer):
        def _generate_single_turn(self, ids, num_generations):  # a changed signature must be caught
            raise AssertionError

    with pytest.raises(TRLCompatError, match="_generate_single_turn"):
        check_trl_compat(Drifted, generation=True)


def test_presets_and_the_names_before_the_plugin_contract():
    import rewardkit_flowgrpo

    code = grpo_kwargs("code", group_size=G, max_turns=T_MAX, queries_per_device=2)
    assert code["num_generations"] == G * T_MAX and code["per_device_train_batch_size"] == 2 * G * T_MAX
    assert (code["loss_type"], code["epsilon_high"], code["delta"]) == ("bnpo", 0.3, 3.0)
    with pytest.warns(DeprecationWarning, match="grpo_kwargs"):
        assert rewardkit_flowgrpo.flowgrpo_grpo_kwargs(G, T_MAX, queries_per_device=2, preset="code") == code
    with pytest.raises(ValueError, match="preset"):
        grpo_kwargs("nope")
    assert rewardkit_flowgrpo.FlowOutcome is rewardkit_flowgrpo.FlowOutcomeReward
    with pytest.warns(DeprecationWarning, match="rewardkit_flowgrpo.hooks"):
        from rewardkit_flowgrpo.trainer import FlowBroadcastHook
    assert FlowBroadcastHook is rewardkit_flowgrpo.FlowBroadcastHook


def random_system(tokenizer, seed):
    """Frozen modules that stop and answer at random: mixed T_i and mixed rewards from any planner."""
    rng = random.Random(seed)
    return AgentSystem(tokenizer, default_registry(), toy_executor,
                       verifier=lambda q, m: rng.random() < 0.4,
                       generator=lambda q, m: rng.choice(["yes", "no"]), max_turns=T_MAX)


def run_trainer(tmp_path, tiny_model_path, tiny_tokenizer, *, preset, norm, beta, steps=2, planner="trl"):
    rollout = FlowRollout(random_system(tiny_tokenizer, seed=1), G, planner=planner)
    kw = grpo_kwargs(preset, group_size=G, max_turns=T_MAX, queries_per_device=2)
    kw.update(beta=beta, temperature=1.0)
    args = tiny_grpo_config(tmp_path, max_steps=steps, max_completion_length=8, learning_rate=1e-3, **kw)
    loss_norm = "paper" if preset == "paper" else "token_mean"
    dataset = toy_dataset(8).map(lambda r: {"answer": "yes"})
    trainer = build_trainer(GRPOTrainer, hooks=[get_hook("flowgrpo.broadcast", norm=norm, loss_norm=loss_norm)],
                            model=str(tiny_model_path), processing_class=tiny_tokenizer,
                            reward_funcs=[get_reward("flowgrpo.outcome")], args=args,
                            train_dataset=dataset, rollout_func=rollout)
    hook = trainer.rewardkit_hooks[0]
    captured = []
    original = hook.after_rollout

    def capture(tr, inputs, output):
        out = original(tr, inputs, output)
        captured.append(({k: (v.clone() if torch.is_tensor(v) else v) for k, v in out.items()},
                         [dict(row) for row in inputs], list(rollout.last_trajectories)))
        return out

    hook.after_rollout = capture
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    return trainer, rollout, captured, before


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, tiny_model_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    return run_trainer(tmp_path_factory.mktemp("paper"), tiny_model_path, tok, preset="paper", norm="trajectory",
                       beta=0.0)


def test_multi_turn_grpo_run_broadcasts_outcome_and_sets_advantages(paper_run):
    trainer, rollout, captured, before = paper_run
    assert len(captured) == 2
    output, rows, trajs = captured[-1]
    B = 2 * G * T_MAX
    assert output["completion_ids"].shape[0] == B == len(rows) == len(trajs) * T_MAX
    # mixed T_i and mixed rewards happened, so the test exercises padding and non-zero advantages
    assert len({tr.num_turns for _, _, ts in captured for tr in ts}) > 1
    # every row carries its trajectory's metadata (TRL merged the rollout_func extra keys into the rows)
    for r, row in enumerate(rows):
        tr = trajs[r // T_MAX]
        assert row["flowgrpo_traj_id"] == tr.traj_id and row["flowgrpo_turn"] == r % T_MAX
        assert row["flowgrpo_num_turns"] == tr.num_turns and row["flowgrpo_is_pad"] == (r % T_MAX >= tr.num_turns)
    # the ids TRL trains on are the sampler's ids (right-padded), never re-tokenised text
    for r, row in enumerate(rows):
        if not row["flowgrpo_is_pad"]:
            ids = trajs[r // T_MAX].turns[r % T_MAX].completion_ids
            assert output["completion_ids"][r, : len(ids)].tolist() == ids
            assert output["tool_mask"][r, : len(ids)].tolist() == [1] * len(ids)
        else:  # TRL right-pads tool_mask with 1s; the loss mask is completion_mask * tool_mask
            assert (output["completion_mask"][r] * output["tool_mask"][r]).sum().item() == 0
    # the advantages TRL trains on: trajectory outcome, group-normalised over G trajectories, x T_max/T_i
    rewards = [1.0 if tr.answer == "yes" else 0.0 for tr in trajs]
    expected = []
    for q in range(2):
        grp = rewards[q * G:(q + 1) * G]
        mean = sum(grp) / G
        std = (sum((x - mean) ** 2 for x in grp) / (G - 1)) ** 0.5
        for i in range(G):
            tr = trajs[q * G + i]
            a = 0.0 if std == 0 else (rewards[q * G + i] - mean) / std
            expected += [a * T_MAX / tr.num_turns if s < tr.num_turns else 0.0 for s in range(T_MAX)]
    assert output["advantages"].tolist() == pytest.approx(expected, abs=1e-6)
    res = flow_advantages([rewards[r // T_MAX] for r in range(len(rows))],
                          [row["flowgrpo_query_id"] for row in rows], [row["flowgrpo_traj_id"] for row in rows],
                          [row["flowgrpo_is_pad"] for row in rows], [row["flowgrpo_num_turns"] for row in rows], T_MAX)
    assert res.scaled == pytest.approx(expected, abs=1e-6)
    # logged by the hook and the reward, next to TRL's own metrics
    logged = trainer.state.log_history[0]
    for key in ("flowgrpo/zero_std_groups", "flowgrpo/success", "flowgrpo/turns_mean", "flowgrpo/pad_frac",
                "rewardkit/flowgrpo.outcome/tool_errors", "rewardkit/flowgrpo.outcome/judge_errors",
                "rewards/flowgrpo.outcome/mean"):
        assert key in logged, key
    hook = trainer.rewardkit_hooks[0]
    assert hook.totals["groups"] == 4 and hook.state_dict()["totals"]["trajectories"] == 4 * G
    # and the planner was trained
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def _hand_logps(model, batch, temperature=1.0):
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    att = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    c = batch["completion_ids"].shape[1]
    logits = model(input_ids=ids, attention_mask=att).logits[:, -c - 1:-1] / temperature
    return logits.log_softmax(-1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_paper_weights_reproduce_eq10_and_padding_rows_carry_no_gradient(paper_run):
    trainer, rollout, captured, _ = paper_run
    output, rows, trajs = captured[-1]
    model = trainer.model
    model.train()
    batch = {k: v for k, v in output.items()}
    g_trl = _grads(model, trainer.compute_loss(model, batch))

    # Eq. 10 by hand: (1/G) sum_i (1/T_i) sum_t (1/|a_t|) sum_j rho * A_i, averaged over the queries
    logps = _hand_logps(model, batch)
    mask = (batch["completion_mask"] * batch["tool_mask"]).float()
    ratio = torch.exp(logps - logps.detach())
    rewards = [1.0 if tr.answer == "yes" else 0.0 for tr in trajs]
    total = 0.0
    for r, row in enumerate(rows):
        if row["flowgrpo_is_pad"]:
            continue
        i = r // T_MAX
        q = i // G
        grp = rewards[q * G:(q + 1) * G]
        mean = sum(grp) / G
        std = (sum((x - mean) ** 2 for x in grp) / (G - 1)) ** 0.5
        a = 0.0 if std == 0 else (rewards[i] - mean) / std
        total = total + (ratio[r] * mask[r]).sum() / mask[r].sum() * a / trajs[i].num_turns / G
    g_hand = _grads(model, -total / 2)  # 2 queries
    assert g_trl.keys() == g_hand.keys()
    for n in g_trl:
        assert torch.allclose(g_trl[n], g_hand[n], atol=1e-6, rtol=1e-4), n
    assert any(g.abs().sum() > 0 for g in g_trl.values())

    # padding rows: any tokens and any advantage there change nothing
    pad = torch.tensor([row["flowgrpo_is_pad"] for row in rows])
    assert pad.any()
    perturbed = dict(batch)
    perturbed["advantages"] = torch.where(pad, torch.full_like(batch["advantages"], 1e3), batch["advantages"])
    ids = batch["completion_ids"].clone()
    ids[pad] = torch.randint(5, 200, ids[pad].shape)
    perturbed["completion_ids"] = ids
    g_pert = _grads(model, trainer.compute_loss(model, perturbed))
    for n in g_trl:
        assert torch.allclose(g_trl[n], g_pert[n], atol=1e-7), n
    model.zero_grad()


def test_code_preset_turn_pooled_token_mean_with_kl(tmp_path, tiny_model_path, tiny_tokenizer):
    trainer, rollout, captured, before = run_trainer(tmp_path, tiny_model_path, tiny_tokenizer, preset="code",
                                                     norm="turn_pooled", beta=0.001, steps=1, planner="hf")
    output, rows, trajs = captured[-1]
    # the "hf" planner returns sampling log-probs; TRL keeps them per token next to the sampler's ids
    lp = output["sampling_per_token_logps"]
    for r, row in enumerate(rows):
        if not row["flowgrpo_is_pad"]:
            turn = trajs[r // T_MAX].turns[r % T_MAX]
            assert lp[r, : len(turn.logprobs)].tolist() == pytest.approx(turn.logprobs, abs=1e-6)
    assert trainer.args.loss_type == "bnpo" and trainer.args.epsilon_high == 0.3 and trainer.args.delta == 3.0
    rewards = [1.0 if tr.answer == "yes" else 0.0 for tr in trajs]
    expected = []
    for q in range(2):
        pooled = [rewards[i] for i in range(q * G, (q + 1) * G) for _ in range(trajs[i].num_turns)]
        mean = sum(pooled) / len(pooled)
        std = (sum((x - mean) ** 2 for x in pooled) / (len(pooled) - 1)) ** 0.5
        for i in range(q * G, (q + 1) * G):
            a = 0.0 if max(pooled) == min(pooled) else (rewards[i] - mean) / (std + 1e-6)
            expected += [a if s < trajs[i].num_turns else 0.0 for s in range(T_MAX)]
    assert output["advantages"].tolist() == pytest.approx(expected, abs=1e-6)
    assert "kl" in trainer.state.log_history[0]


def test_hook_refuses_a_loss_type_that_does_not_match_its_loss_norm(tmp_path, tiny_model_path, tiny_tokenizer):
    kw = grpo_kwargs("code", group_size=G, max_turns=T_MAX)  # bnpo token-mean
    args = tiny_grpo_config(tmp_path, **{**kw, "beta": 0.0})
    with pytest.raises(ValueError, match="loss_type"):
        build_trainer(GRPOTrainer, hooks=[get_hook("flowgrpo.broadcast", loss_norm="paper")],
                      model=str(tiny_model_path), processing_class=tiny_tokenizer,
                      reward_funcs=[get_reward("flowgrpo.outcome")], args=args, train_dataset=toy_dataset(4),
                      rollout_func=FlowRollout(random_system(tiny_tokenizer, 0), G))
