"""Broadcast and both advantage modes against hand-computed values (mixed T_i, padding, zero-std)."""

import math

import pytest
from _flowgrpo_rows import advantages_of, turn_rows
from rewardkit_flowgrpo.advantages import broadcast, flow_advantages, trajectory_rewards

# One query "q", G = 3 trajectories, T_max = 3 turn slots each:
#   a: T=1, R=1     b: T=3, R=0     c: T=2, R=1
T_MAX = 3
TRAJ = [("a", 1, 1.0), ("b", 3, 0.0), ("c", 2, 1.0)]


def rows(trajs=TRAJ, query="q"):
    return turn_rows([(query, tid, r, ti) for tid, ti, r in trajs], T_MAX)


def test_broadcast_puts_the_trajectory_reward_on_every_slot():
    assert broadcast({"a": 1.0, "b": 0.0}, ["a", "a", "b", "a"]) == [1.0, 1.0, 0.0, 1.0]
    with pytest.raises(KeyError):
        broadcast({"a": 1.0}, ["a", "z"])


def test_trajectory_norm_matches_paper_eq7_by_hand():
    d = rows()
    res = advantages_of(d, T_MAX, norm="trajectory", loss_norm="token_mean")
    # trajectory rewards [1, 0, 1]: mean 2/3, unbiased std sqrt(((1/3)^2*2 + (2/3)^2)/2) = sqrt(1/3)
    std = math.sqrt(1 / 3)
    a_pos, a_neg = (1 - 2 / 3) / std, (0 - 2 / 3) / std
    assert a_pos == pytest.approx(0.5773502692)
    assert a_neg == pytest.approx(-1.1547005384)
    expected = [a_pos, 0, 0,  a_neg, a_neg, a_neg,  a_pos, a_pos, 0]
    assert res.advantages == pytest.approx(expected)
    assert res.weights == [1, 0, 0, 1, 1, 1, 1, 1, 0]
    assert res.num_groups == 1 and res.zero_std_groups == 0


def test_turn_pooled_matches_released_code_by_hand():
    d = rows()
    res = advantages_of(d, T_MAX, norm="turn_pooled", loss_norm="token_mean")
    # pooled real turns: a once (1), b three times (0), c twice (1) -> [1, 0, 0, 0, 1, 1]
    pooled = [1, 0, 0, 0, 1, 1]
    mean = 0.5
    std = math.sqrt(sum((x - mean) ** 2 for x in pooled) / 5)  # torch.std (Bessel): sqrt(1.5/5)
    assert std == pytest.approx(math.sqrt(0.3))
    a_pos, a_neg = 0.5 / (std + 1e-6), -0.5 / (std + 1e-6)
    expected = [a_pos, 0, 0,  a_neg, a_neg, a_neg,  a_pos, a_pos, 0]
    assert res.advantages == pytest.approx(expected, rel=1e-9)
    # the two modes differ: b's three turns pull the pooled mean down
    traj = advantages_of(d, T_MAX, norm="trajectory", loss_norm="token_mean")
    assert traj.advantages[0] != pytest.approx(res.advantages[0])


def test_epsilon_options():
    d = rows()
    paper = advantages_of(d, T_MAX, norm="trajectory", loss_norm="token_mean")
    code_eps = advantages_of(d, T_MAX, norm="trajectory", eps=1e-6, loss_norm="token_mean")
    std = math.sqrt(1 / 3)
    assert paper.advantages[0] == pytest.approx((1 / 3) / std, rel=1e-12)
    assert code_eps.advantages[0] == pytest.approx((1 / 3) / (std + 1e-6), rel=1e-12)
    pooled_no_eps = advantages_of(d, T_MAX, norm="turn_pooled", eps=0.0, loss_norm="token_mean")
    assert pooled_no_eps.advantages[0] == pytest.approx(0.5 / math.sqrt(0.3), rel=1e-12)
    population = advantages_of(d, T_MAX, unbiased=False, loss_norm="token_mean")
    assert population.advantages[0] == pytest.approx((1 / 3) / math.sqrt(2 / 9))


def test_paper_loss_weights_are_tmax_over_ti():
    d = rows()
    res = advantages_of(d, T_MAX, loss_norm="paper")
    assert res.weights == [3, 0, 0, 1, 1, 1, 1.5, 1.5, 0]
    # with TRL's loss_type="grpo" (mean over the B = G*T_max rows) a trajectory's turns then weigh
    # sum_t w/B = T_i * (T_max/T_i) / (G*T_max) = 1/G each, whatever T_i (paper Eq. 10)
    per_traj = {}
    for t, w in zip(d["traj"], res.weights):
        per_traj[t] = per_traj.get(t, 0) + w / len(d["traj"])
    assert per_traj == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert res.scaled == pytest.approx([a * w for a, w in zip(res.advantages, res.weights)])


def test_zero_variance_groups_get_zero_advantage_and_are_counted():
    same = [("q1", "q1a", 1.0, 1), ("q1", "q1b", 1.0, 3), ("q1", "q1c", 1.0, 2)]
    mixed = [("q2", f"q2{tid}", r, ti) for tid, ti, r in TRAJ]
    d = turn_rows(same + mixed, T_MAX)
    for norm in ("trajectory", "turn_pooled"):
        res = advantages_of(d, T_MAX, norm=norm)
        assert res.num_groups == 2 and res.zero_std_groups == 1
        assert res.advantages[:9] == [0.0] * 9
        assert any(a != 0 for a in res.advantages[9:])
        assert res.scaled[:9] == [0.0] * 9


def test_padding_rows_never_get_advantage_or_weight():
    d = rows()
    for norm in ("trajectory", "turn_pooled"):
        for loss_norm in ("paper", "token_mean"):
            res = advantages_of(d, T_MAX, norm=norm, loss_norm=loss_norm)
            for pad, a, w in zip(d["pad"], res.advantages, res.weights):
                if pad:
                    assert a == 0.0 and w == 0.0


def test_turn_pooled_single_sample_group_follows_verl():
    res = flow_advantages([1.0], ["q"], ["a"], [False], [1], 1, norm="turn_pooled")
    assert res.advantages == [pytest.approx(1.0 / (1 + 1e-6))]


def test_rows_of_one_trajectory_must_agree():
    with pytest.raises(ValueError, match="broadcast"):
        trajectory_rewards([1.0, 0.0], ["a", "a"], [False, False])
    with pytest.raises(ValueError, match="without a reward"):
        trajectory_rewards([None], ["a"], [False])
    assert trajectory_rewards([1.0, None], ["a", "a"], [False, True]) == {"a": 1.0}
    with pytest.raises(ValueError, match="norm"):
        flow_advantages([1.0], ["q"], ["a"], [False], [1], 1, norm="nope")
    with pytest.raises(ValueError, match="T_i"):
        flow_advantages([1.0], ["q"], ["a"], [False], [4], 3)
