"""ReasonFluxPRMTrainer on the tiny PRM and the bundled toy set: loss falls, held-out correlation rises."""

from __future__ import annotations

import math
import shutil

import pytest
from rewardkit_reasonflux.toy import arithmetic_judge, load_toy_records
from rewardkit_reasonflux.training import ReasonFluxPRMConfig, ReasonFluxPRMTrainer, build_targets, pearson


def test_loss_falls_and_held_out_correlation_rises(tmp_path, tiny_prm_path):
    model_dir = tmp_path / "prm"
    shutil.copytree(tiny_prm_path, model_dir)
    records = load_toy_records()
    train, held_out = records[:192], records[-96:]  # disjoint problems (4 records per problem)
    assert {r["question"] for r in train}.isdisjoint({r["question"] for r in held_out})
    trainer = ReasonFluxPRMTrainer(str(model_dir), ReasonFluxPRMConfig(epochs=6, learning_rate=3e-3, batch_size=8,
                                                                        output_dir=str(tmp_path / "out")))
    history = trainer.train(train, held_out)
    first, last = history[1], history[-1]
    print("\n".join(str({k: round(v, 4) for k, v in h.items()}) for h in history))
    assert last["loss"] < first["loss"]
    assert last["eval_step_corr"] > history[0]["eval_step_corr"] + 0.15
    # the trained PRM scores through reasonflux.prm
    import rewardkit

    r = rewardkit.get_reward("reasonflux.prm", model=str(tmp_path / "out"))
    rec = held_out[0]
    v = r([rec["question"]], ["<think>" + "\n\n".join(rec["thinking"]) + "</think>" + rec["response"]])[0]
    preds = trainer.predict([rec])[0]
    assert v == pytest.approx(sum(preds[0]) / len(preds[0]) + preds[1], abs=1e-4)


def test_loss_is_the_weighted_sum_of_step_and_trajectory_mse(tiny_prm_path):
    rec = {"question": "q", "thinking": ["a", "b"], "response": "r", "step_targets": [0.0, 1.0],
           "trajectory_target": 1.0}
    trainer = ReasonFluxPRMTrainer(str(tiny_prm_path), ReasonFluxPRMConfig(lambda_step=0.3, lambda_traj=2.0))
    (steps, traj), = trainer.predict([rec])
    total, step, traj_term = (t.detach() for t in trainer.loss(trainer.encode([rec])))
    expect_step = ((steps[0] - 0.0) ** 2 + (steps[1] - 1.0) ** 2) / 2
    assert float(step) == pytest.approx(expect_step, abs=1e-5)
    assert float(traj_term) == pytest.approx((traj - 1.0) ** 2, abs=1e-5)
    assert float(total) == pytest.approx(0.3 * expect_step + 2.0 * (traj - 1.0) ** 2, abs=1e-5)
    with pytest.raises(ValueError, match="step_targets"):
        trainer.encode([{**rec, "step_targets": [0.5]}])


def test_build_targets_from_reasonflux_rewards():
    from reasonflux_helpers import KeywordEncoder
    from rewardkit_reasonflux.judge import CallableBackend

    import rewardkit

    step = rewardkit.get_reward("reasonflux.step", encoder=KeywordEncoder(("5", "9", "14", "ben")), bank_size=0,
                                judge=CallableBackend(arithmetic_judge, name="arith"))
    recs = [{"question": "Ben has 5 and gets 9.", "thinking": ["Ben has 5.", "5 + 9 = 14."],
             "response": "\\boxed{14}", "trajectory_target": 1.0},
            {"question": "Zoe has 2.", "thinking": ["2 + 2 = 5."], "response": "\\boxed{5}", "trajectory_target": 0.0}]
    out = build_targets(recs, step, None, transform="minmax")
    flat = [v for r in out for v in r["step_targets"]]
    assert min(flat) == 0.0 and max(flat) == 1.0 and len(flat) == 3
    assert out[1]["step_targets"][0] < out[0]["step_targets"][1]  # wrong vs right arithmetic
    raw = build_targets(recs, step, None, transform="none")
    direct = step.score_steps([r["question"] for r in recs],
                              ["<think>Ben has 5.\n\n5 + 9 = 14.</think>\\boxed{14}", "<think>2 + 2 = 5.</think>\\boxed{5}"])
    assert raw[0]["step_targets"] == pytest.approx(direct[0].scores)


def test_pearson():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pearson([1, 1], [1, 2]))
