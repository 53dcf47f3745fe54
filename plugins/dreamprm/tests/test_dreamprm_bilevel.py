"""The bi-level machinery: DARTS hypergradient vs the exact one, the upper step, resume."""

from __future__ import annotations

import json
import os

import pytest
import torch
from _dreamprm_util import gen_prm, small_toy, trainer, v1_prm

from rewardkit.testing import CraftedPickle


def _warm(tr, steps=4):
    tr.train(max_steps=steps)


@pytest.mark.parametrize("variant", ["v1", "1.5"])
def test_darts_matches_exact_hypergradient(variant):
    """Betty's finite-difference hypergradient vs autograd through one lower step, per domain."""
    toy = small_toy(seed=3)
    prm = v1_prm() if variant == "v1" else gen_prm()
    tr = trainer(prm, toy, batch_size=8, meta_batch_size=4, exact_step_size=1e-4, unroll_steps=100,
                 weighting="domain")
    _warm(tr, 2)  # leave the initial point so the gradients are not degenerate
    with torch.no_grad():  # unequal weights so the mean-normalisation Jacobian matters
        tr.weights.raw.copy_(torch.tensor([0.4, -0.3, 0.1, 0.8]))
    meta = toy["meta"][:4]
    batch = [toy["train"][i] for i in range(0, len(toy["train"]), 12)][:8]
    assert len({e.domain for e in batch}) == 4
    before = [p.detach().clone() for p in prm.parameters()]
    darts, lm1 = tr.hypergradient(meta, batch, mode="darts")
    after = [p.detach() for p in prm.parameters()]
    # the perturbation is undone
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(before, after))
    exact, lm2 = tr.hypergradient(meta, batch, mode="exact")
    d, e = darts[0], exact[0]
    assert lm1 == pytest.approx(lm2, rel=1e-2)  # exact reports L_meta after the virtual step
    assert torch.isfinite(d).all() and float(d.abs().max()) > 0
    assert torch.equal(torch.sign(d), torch.sign(e)), (d, e)
    rel = (d - e).abs() / e.abs()
    assert float(rel.max()) < 0.10, (d, e, rel)


def test_upper_step_moves_weights_and_keeps_mean_1():
    toy = small_toy()
    tr = trainer(v1_prm(), toy, unroll_steps=1)
    tr.train(max_steps=3)
    table = tr.weight_table()
    assert len(tr.history) == 3
    assert all("meta_loss" in r and "weights" in r for r in tr.history)
    assert any(abs(w - 1.0) > 1e-4 for w in table.values())
    assert sum(table.values()) / len(table) == pytest.approx(1.0, abs=1e-5)
    assert tr.upper_step_count == 3


def test_baseline_has_no_upper_level():
    toy = small_toy()
    tr = trainer(v1_prm(), toy, weighting="none")
    tr.train(max_steps=3)
    assert tr.upper_step_count == 0
    assert tr.weight_table() == {d: 1.0 for d in ("add", "mix", "mix2", "sub")}


def test_resume_continues_exactly(tmp_path):
    """6 straight steps == 3 steps, checkpoint, a fresh trainer resumed, 3 more steps."""
    toy = small_toy()
    full = trainer(v1_prm(), toy, unroll_steps=2)
    full.train(max_steps=6)
    first = trainer(v1_prm(), toy, unroll_steps=2, output_dir=str(tmp_path), save_steps=3)
    first.train(max_steps=3)
    ckpt = tmp_path / "checkpoint-3"
    assert (ckpt / "dreamprm_state.pt").exists()
    saved = json.loads((ckpt / "domain_weights.json").read_text())
    assert saved["step"] == 3 and set(saved["weights"]) == {"add", "mix", "mix2", "sub"}
    second = trainer(v1_prm(seed=123), toy, unroll_steps=2)  # different init: everything must come from disk
    second.train(max_steps=6, resume_from=str(ckpt))
    assert second.global_step == 6 and second.upper_step_count == 3
    for a, b in zip(full.prm.parameters(), second.prm.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(full.weights.raw, second.weights.raw, atol=1e-6)
    assert [r["step"] for r in second.history] == [r["step"] for r in full.history]


def test_instance_table_and_net_run():
    toy = small_toy()
    tab = trainer(gen_prm(), toy, weighting="instance_table", unroll_steps=1)
    tab.train(max_steps=2)
    raw = tab.weights.raw.detach()
    assert raw.shape[0] == len(toy["train"]) and float((raw - 1).abs().max()) > 0
    w = tab.weights(ids=[e.id for e in toy["train"]])
    assert float(w.max()) <= 3.0 and float(w.min()) >= -1.0
    net = trainer(gen_prm(), toy, weighting="instance_net", unroll_steps=1)
    before = [p.detach().clone() for p in net.weights.parameters()]
    net.train(max_steps=2)
    assert any(not torch.allclose(a, b) for a, b in zip(before, net.weights.parameters()))


def test_exact_mode_trains():
    toy = small_toy()
    tr = trainer(v1_prm(), toy, hypergradient="exact", unroll_steps=1)
    tr.train(max_steps=2)
    assert tr.upper_step_count == 2 and all(torch.isfinite(tr.weights.raw))


def test_empty_meta_chain_is_refused():
    from rewardkit_dreamprm import Chain, MetaExample

    toy = small_toy()
    tr = trainer(v1_prm(), toy)
    with pytest.raises(ValueError, match="no steps"):
        tr.meta_loss([MetaExample(Chain("Q", "", []), True)])


def test_zero3_is_refused_clearly():
    assert "ZeRO-3" in open(os.path.join(os.path.dirname(__import__("rewardkit_dreamprm").__file__),
                                         "trainer.py")).read()


def test_checkpoint_state_is_json_plus_tensors_and_a_crafted_pickle_is_refused(tmp_path):
    from rewardkit.trl import HookStateError

    toy = small_toy()
    tr = trainer(v1_prm(), toy, unroll_steps=1, output_dir=str(tmp_path), save_steps=1)
    tr.train(max_steps=1)
    ckpt = tmp_path / "checkpoint-1"
    state = json.loads((ckpt / "dreamprm_state.json").read_text())["state"]
    assert state["global_step"] == 1 and state["upper_step_count"] == 1
    tensors = torch.load(ckpt / "dreamprm_state.pt", weights_only=True)
    assert tensors and all(isinstance(t, torch.Tensor) for t in tensors.values())
    # a clean resume works
    again = trainer(v1_prm(seed=5), toy, unroll_steps=1)
    again.load_checkpoint(str(ckpt))
    assert again.global_step == 1 and torch.equal(again.weights.raw, tr.weights.raw)
    # a payload that runs code on unpickling is refused, and did not run
    marker = tmp_path / "pwned"
    torch.save({"t0": CraftedPickle(str(marker))}, ckpt / "dreamprm_state.pt")
    fresh = trainer(v1_prm(seed=6), toy, unroll_steps=1)
    with pytest.raises(HookStateError, match="will not unpickle"):
        fresh.load_checkpoint(str(ckpt))
    assert not marker.exists()
