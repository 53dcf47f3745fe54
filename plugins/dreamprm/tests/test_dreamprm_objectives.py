"""Losses, aggregation, NaN guards, weight parameterisations and the weighted lower loss at B > 1."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _dreamprm_util import small_toy, trainer, v1_prm
from rewardkit_dreamprm import (
    DomainWeights,
    InstanceNet,
    InstanceTable,
    StepOutputs,
    aggregate,
    lower_losses,
    meta_losses,
    safe_logodds,
)


def test_logodds_nan_guards_at_p_0_and_1():
    for p in (0.0, 1.0, 1e-30, 1 - 1e-17):
        v = safe_logodds(p)
        assert math.isfinite(v)
    assert safe_logodds(1.0) == pytest.approx(math.log((1 - 1e-6) / 1e-6))
    assert aggregate([1.0, 1.0], "mean_logodds") == pytest.approx(math.log((1 - 1e-6) / 1e-6))
    assert aggregate([0.0, 1.0], "mean_logodds") == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(FloatingPointError):
        safe_logodds(float("nan"))
    assert aggregate([], "mean_logodds") is None
    # tensor side: v1 logits of +-1e4 (p rounds to exactly 0/1) stay finite, and so does the meta loss
    out = StepOutputs("v1", torch.tensor([1e4, -1e4, 3.0], requires_grad=True), [0, 0, 1], [0, 1, 0])
    lo = out.logodds()
    assert torch.isfinite(lo).all()
    loss = meta_losses(out, torch.tensor([1.0, 0.0]), 2).sum()
    loss.backward()
    assert torch.isfinite(out.raw.grad).all()
    # 1.5: log p('+') = 0 (p = 1) and -inf-ish
    out15 = StepOutputs("1.5", torch.tensor([[0.0, -200.0], [-200.0, 0.0]]), [0, 0], [0, 1])
    assert torch.isfinite(out15.logodds()).all()


def test_v1_meta_loss_is_sigmoid_of_mean_logodds_by_hand():
    p = [0.9, 0.6, 0.2]
    z = sum(math.log(x / (1 - x)) for x in p) / 3
    raw = torch.tensor([math.log(x / (1 - x)) for x in p])
    out = StepOutputs("v1", raw, [0, 0, 0], [0, 1, 2])
    got = meta_losses(out, torch.tensor([1.0]), 1)
    assert float(got) == pytest.approx((1 / (1 + math.exp(-z)) - 1) ** 2, rel=1e-5)


def test_15_meta_losses_both_and_plus():
    lp = torch.log(torch.tensor([[0.7, 0.2], [0.5, 0.4]]))
    out = StepOutputs("1.5", lp, [0, 0], [0, 1])
    both_pos = meta_losses(out, torch.tensor([1.0]), 1, target="both")
    both_neg = meta_losses(out, torch.tensor([0.0]), 1, target="both")
    plus_neg = meta_losses(out, torch.tensor([0.0]), 1, target="+")
    assert float(both_pos) == pytest.approx((0.6 - 1) ** 2, rel=1e-5)
    assert float(both_neg) == pytest.approx((0.3 - 1) ** 2, rel=1e-5)
    assert float(plus_neg) == pytest.approx(0.6 ** 2, rel=1e-5)


def test_lower_losses_by_hand():
    raw = torch.tensor([0.0, 2.0, -1.0])
    out = StepOutputs("v1", raw, [0, 1, 1], [0, 0, 1])
    y = torch.tensor([1.0, 0.5, 0.0])
    got = lower_losses(out, y, 2)
    s = torch.sigmoid(raw)
    assert torch.allclose(got, torch.stack([(s[0] - 1) ** 2, ((s[1] - 0.5) ** 2 + s[2] ** 2) / 2]))
    lp = torch.log(torch.tensor([[0.8, 0.1], [0.3, 0.6]]))
    out15 = StepOutputs("1.5", lp, [0, 0], [0, 1])
    got15 = lower_losses(out15, torch.tensor([1.0, 0.0]), 1)
    assert float(got15) == pytest.approx((-math.log(0.8) - math.log(0.6)) / 2, rel=1e-5)


def test_domain_weights_softplus_mean_normalised():
    w = DomainWeights(["a", "b", "c"])
    assert w.table() == {"a": 1.0, "b": 1.0, "c": 1.0}
    with torch.no_grad():
        w.raw.copy_(torch.tensor([2.0, -1.0, 0.5]))
    s = F.softplus(torch.tensor([2.0, -1.0, 0.5]))
    expect = s / s.mean()
    assert torch.allclose(w.all_weights(), expect)
    assert float(w.all_weights().mean()) == pytest.approx(1.0)
    assert torch.allclose(w(["c", "a", "a"]), expect[[2, 0, 0]])
    with pytest.raises(KeyError, match="zzz"):
        w(["zzz"])


def test_instance_table_clip_and_net():
    t = InstanceTable(["x", "y", "z"])
    with torch.no_grad():
        t.raw.copy_(torch.tensor([5.0, -4.0, 0.3]))
    assert t(ids=["x", "y", "z"]).tolist() == pytest.approx([3.0, -1.0, 0.3])
    net = InstanceNet(hidden=10)
    feats = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    w = net(ids=["a", "b"], features=feats, owners=torch.tensor([0, 0, 1]))
    per_slot = net.net(feats).squeeze(-1)
    assert torch.allclose(w, torch.sigmoid(torch.stack([per_slot[:2].mean(), per_slot[2]])))


def test_weighted_lower_loss_at_batch_size_gt_1():
    """mean_j w_{k(j)} l_j with per-sample losses, for B = 6 of mixed domains, by hand."""
    toy = small_toy()
    tr = trainer(v1_prm(), toy, batch_size=6)
    with torch.no_grad():
        tr.weights.raw.copy_(torch.tensor([0.3, -0.7, 1.2, 0.0]))
    batch = [toy["train"][i] for i in (0, 30, 55, 80, 7, 90)]
    assert len({e.domain for e in batch}) >= 3
    enc = tr.encode_lower(batch)
    out = tr.prm.outputs(enc)
    loss, losses, w = tr.weighted_lower_loss(batch, out, enc["labels"], detach_features=True)
    # each sample alone (batch of 1) gives the same per-sample loss: no cross-talk through padding
    for j, e in enumerate(batch):
        enc1 = tr.encode_lower([e])
        l1 = lower_losses(tr.prm.outputs(enc1), enc1["labels"], 1)
        assert float(l1) == pytest.approx(float(losses[j]), rel=1e-4, abs=1e-6)
        assert float(w[j]) == pytest.approx(tr.weights.table()[e.domain], rel=1e-6)
    assert float(loss) == pytest.approx(float((w * losses).sum() / 6), rel=1e-6)
    # the gradient follows the weights: doubling one domain's weight changes the loss by its share
    assert float(loss) != pytest.approx(float(losses.mean()), rel=1e-3)
