"""reasonflux.prm (both released interfaces, paper and official modes), GRPO mixing, a real GRPO run."""

from __future__ import annotations

import pickle

import pytest
import torch
from rewardkit_reasonflux import official
from rewardkit_reasonflux.config import OFFICIAL_BETA, grpo_kwargs, grpo_mix, grpo_rewards
from rewardkit_reasonflux.prm import DEFAULT_SYSTEM, convert_scalar_checkpoint
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

import rewardkit
from rewardkit.testing import LogCapture, tiny_grpo_config, tiny_model_dir, tiny_prompt_dataset

Q = "Ben has 5 stones and gets 9 more. How many?"
COMP = "<think>5 + 9 = 14.\n\nSo Ben has 14.</think>The answer is \\boxed{14}."


@pytest.fixture(scope="module")
def prm_model(tiny_prm_path):
    tok = AutoTokenizer.from_pretrained(tiny_prm_path)
    model = AutoModelForTokenClassification.from_pretrained(tiny_prm_path).eval()
    return tok, model


def _p_pos(model, tok, text):
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=ids).logits[0], -1)[:, 1]
    return ids[0], probs


def _chat(tok, assistant):
    return tok.apply_chat_template([{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": Q},
                                    {"role": "assistant", "content": assistant}], tokenize=False)


def test_step_tag_interface_paper_mode_is_eq_11(tiny_prm_path, prm_model):
    tok, model = prm_model
    alpha = 0.5
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), alpha=alpha)
    value = r([Q], [COMP])[0]
    # reference: Qwen-PRM layout, one <extra_0> after every step, positive-class softmax at each tag
    ids, probs = _p_pos(model, tok, _chat(tok, "5 + 9 = 14.<extra_0>So Ben has 14.<extra_0>"
                                               "The answer is \\boxed{14}.<extra_0>"))
    tags = (ids == tok.convert_tokens_to_ids("<extra_0>")).nonzero().flatten()
    s = probs[tags].tolist()
    assert len(s) == 3
    assert r.last_step_scores[0].scores == pytest.approx(s, abs=1e-5)
    assert r.last_trajectory_scores[0] == pytest.approx(s[2], abs=1e-5)
    assert value == pytest.approx((s[0] + s[1]) / 2 + alpha * s[2], abs=1e-5)
    spans = r.last_step_scores[0].spans
    assert [COMP[a:b] for a, b in spans] == ["5 + 9 = 14.", "So Ben has 14.", "The answer is \\boxed{14}."]


def _official_chat(tok, user, response):
    # the released worker: no system turn, the decoded prompt as the user turn, response + one tag
    return tok.apply_chat_template([{"role": "user", "content": user},
                                    {"role": "assistant", "content": response + "<extra_0>"}], tokenize=False)


def test_official_mode_scores_whole_response_at_last_token(tiny_prm_path, prm_model):
    tok, model = prm_model
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="official")
    value = r([Q], [COMP])[0]
    ids, probs = _p_pos(model, tok, _official_chat(tok, Q, COMP))
    # the released worker reads the last valid token (after <|im_end|>\n, not the separator), in bfloat16
    assert value == official.to_bfloat16(float(probs[-1]))
    at_sep = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="official", read_at="separator")
    tag = int((ids == tok.convert_tokens_to_ids("<extra_0>")).nonzero().flatten()[-1])
    assert at_sep([Q], [COMP])[0] == official.to_bfloat16(float(probs[tag]))
    assert tag < len(ids) - 1


@pytest.mark.parametrize("completion", [COMP + "\n", COMP + "\n\n", "  " + COMP, COMP + " \t"])
def test_official_mode_scores_the_completion_unstripped(tiny_prm_path, prm_model, completion):
    tok, model = prm_model
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="official", read_at="separator")
    value = r([Q], [completion])[0]
    ids, probs = _p_pos(model, tok, _official_chat(tok, Q, completion))
    stripped_ids, _ = _p_pos(model, tok, _official_chat(tok, Q, completion.strip()))
    assert r.official_input(Q, completion)[0] == ids.tolist() != stripped_ids.tolist()
    tag = int((ids == tok.convert_tokens_to_ids("<extra_0>")).nonzero().flatten()[-1])
    assert value == official.to_bfloat16(float(probs[tag]))
    assert r.last_step_scores[0].spans == [(0, len(completion))]


def test_official_mode_puts_the_decoded_chat_prompt_in_the_user_turn(tiny_prm_path, prm_model):
    tok, model = prm_model
    chat = [{"role": "system", "content": "Reason step by step."}, {"role": "user", "content": Q}]
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="official")
    value = r([chat], [COMP])[0]
    user = f"system\nReason step by step.\nuser\n{Q}\nassistant\n"  # the template's tokens skipped
    ids, probs = _p_pos(model, tok, _official_chat(tok, user, COMP))
    assert r.official_input(chat, COMP)[0] == ids.tolist()
    assert value == official.to_bfloat16(float(probs[-1]))
    # the paper mode keeps its question-only user turn
    paper = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path))
    assert paper([chat], [COMP]) == paper([Q], [COMP])


def test_official_mode_right_truncation_and_a_lost_separator(tiny_prm_path):
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="official")
    full, _, n_sep = r.official_input(Q, COMP)
    assert n_sep == 1
    log = LogCapture()
    r.max_length = len(full) - 2  # <|im_end|>\n cut: read at the separator itself
    kept = r([Q], [COMP], **log.kwargs())[0]
    at_sep = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="official", read_at="separator")
    assert kept == at_sep([Q], [COMP])[0]
    r.max_length = len(full) - 3  # the separator is cut: the released worker raises IndexError
    assert r([Q], [COMP], **log.kwargs()) == [None]
    assert log.metrics["rewardkit/reasonflux.prm/official_error"] == [0.0, 1.0]
    assert log.metrics["rewardkit/reasonflux.prm/truncated"] == [1.0, 1.0]


def test_scalar_interface_reads_one_sigmoid_at_the_last_token():
    path = tiny_model_dir("reward_model")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    r = rewardkit.get_reward("reasonflux.prm", model=str(path), interface="1.5b", alpha=0.3)
    value = r([Q], [COMP])[0]
    ids = tok(Q + COMP, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expect = torch.sigmoid(model(input_ids=ids).logits[0, 0]).item()
    assert value == pytest.approx(expect, abs=1e-5)  # the single scalar; alpha does not apply
    assert r.last_step_scores[0].spans == [(7, len(COMP))]


def _release_layout(tmp_path, weight, bias):
    """The 1.5B release: a causal LM directory plus reward_head.pt = Linear(hidden, 1).state_dict()."""
    import shutil

    d = tmp_path / "release"
    shutil.copytree(tiny_model_dir("causal_lm"), d)
    torch.save({"weight": weight, "bias": bias}, d / "reward_head.pt")
    return d


def test_convert_scalar_checkpoint_applies_the_released_bias(tmp_path):
    from transformers import AutoModelForCausalLM

    lm_dir = tiny_model_dir("causal_lm")
    hidden = AutoModelForCausalLM.from_pretrained(lm_dir).config.hidden_size
    w = torch.linspace(-0.5, 0.5, hidden).reshape(1, hidden)
    release = _release_layout(tmp_path, w, torch.tensor([2.0]))
    out = convert_scalar_checkpoint(release, None, tmp_path / "converted")
    r = rewardkit.get_reward("reasonflux.prm", model=str(out), interface="scalar", mode="official")
    value = r([Q], [COMP])[0]
    # reference: the released forward (last hidden state of the causal LM's body at the last token)
    lm = AutoModelForCausalLM.from_pretrained(lm_dir).eval()
    tok = AutoTokenizer.from_pretrained(lm_dir)
    enc = tok(Q + COMP, return_tensors="pt")
    with torch.no_grad():
        h = lm.model(**enc, output_hidden_states=True).hidden_states[-1][0, -1]
    logit = float(h @ w[0] + 2.0)
    assert value == pytest.approx(torch.sigmoid(torch.tensor(logit)).item(), rel=1e-5)
    # the bias moves the logit by exactly its value
    out0 = convert_scalar_checkpoint(_release_layout(tmp_path / "b0", w, torch.tensor([0.0])), None, tmp_path / "c0")
    r0 = rewardkit.get_reward("reasonflux.prm", model=str(out0), interface="scalar", mode="official")
    v0 = r0([Q], [COMP])[0]
    assert torch.logit(torch.tensor(value, dtype=torch.float64)) - torch.logit(torch.tensor(v0, dtype=torch.float64)) \
        == pytest.approx(2.0, abs=1e-4)


def test_convert_scalar_checkpoint_refuses_a_head_that_is_not_linear_hidden_1(tmp_path):
    release = _release_layout(tmp_path, torch.zeros(2, 64), torch.zeros(2))
    with pytest.raises(ValueError, match="Linear"):
        convert_scalar_checkpoint(release, None, tmp_path / "out")


def test_batch_rows_are_scored_independently_and_empty_is_none(tiny_prm_path):
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path))
    alone = r([Q], [COMP])[0]
    log = LogCapture()
    out = r([Q, Q, "Other question?"], [COMP, "", "Short answer 3."], **log.kwargs())
    assert out[0] == pytest.approx(alone, abs=1e-5)
    assert out[1] is None and out[2] is not None
    assert log.metrics["rewardkit/reasonflux.prm/empty"] == [1.0]
    # no thinking: the response's own score stands in for the step mean
    s = r.last_step_scores[2].scores
    assert out[2] == pytest.approx(s[0] + 1.0 * s[0], abs=1e-6)


def test_too_long_is_counted_none(tiny_prm_path):
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), max_length=24)
    log = LogCapture()
    long = "<think>" + "\n\n".join(f"step {i} adds {i} + {i} = {2 * i}." for i in range(10)) + "</think>done"
    assert r([Q], [long], **log.kwargs()) == [None]
    assert log.metrics["rewardkit/reasonflux.prm/too_long"] == [1.0]


def test_prm_reward_pickles_without_its_model(tiny_prm_path):
    r = rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path))
    v = r([Q], [COMP])
    clone = pickle.loads(pickle.dumps(r))
    assert clone.scorer._lazy_model is None
    assert clone([Q], [COMP]) == pytest.approx(v, abs=1e-6)


def test_bad_settings_fail_at_construction(tiny_prm_path):
    with pytest.raises(ValueError, match="model"):
        rewardkit.get_reward("reasonflux.prm")
    with pytest.raises(ValueError, match="mode"):
        rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), mode="both")
    with pytest.raises(ValueError, match="interface"):
        rewardkit.get_reward("reasonflux.prm", model=str(tiny_prm_path), interface="3b")


def test_grpo_mix_is_eq_12(tiny_prm_path):
    spec = grpo_mix(str(tiny_prm_path))
    assert spec == {"math.accuracy": {"weight": pytest.approx(0.25)},
                    "reasonflux.prm": {"weight": OFFICIAL_BETA, "model": str(tiny_prm_path), "mode": "paper"}}
    rs = grpo_rewards(str(tiny_prm_path), beta=0.6, mode="official")
    assert rs.names == ["math.accuracy", "reasonflux.prm"]
    assert rs.grpo_kwargs() == {"reward_weights": [pytest.approx(0.4), 0.6]}
    scores = rs.score([Q, Q], [COMP, "The answer is \\boxed{15}."], solution=["14", "14"])
    for i in range(2):
        expect = 0.4 * scores["math.accuracy"][i] + 0.6 * scores["reasonflux.prm"][i]
        assert scores["total"][i] == pytest.approx(expect)
    assert scores["math.accuracy"] == [1.0, 0.0]
    with pytest.raises(ValueError, match="beta"):
        grpo_mix(beta=1.5)


def test_presets_give_the_weights_of_their_mix(tiny_prm_path):
    from rewardkit_reasonflux.config import MixPreset, get_preset

    for name in ("paper", "official"):
        p = get_preset(name)
        assert p.mode == name and p.beta == OFFICIAL_BETA
        # the preset's GRPOConfig kwargs weight the preset's own rewards, in their order
        rs = rewardkit.compose(p.spec(str(tiny_prm_path)))
        assert grpo_kwargs(name) == rs.grpo_kwargs() == {"reward_weights": [0.25, 0.75]}
    assert grpo_kwargs(MixPreset(beta=0.5), beta=0.04) == {"reward_weights": [0.5, 0.5], "beta": 0.04}
    assert get_preset("official", beta=0.6).spec("m") == grpo_mix("m", beta=0.6, mode="official")
    with pytest.raises(ValueError, match="unknown preset"):
        grpo_kwargs("released")
    with pytest.raises(ValueError, match="mode"):
        get_preset("paper", mode="both")


def test_real_grpo_run_with_mixed_reward(tmp_path, tiny_model_path, tiny_prm_path):
    from reasonflux_helpers import KeywordEncoder
    from trl import GRPOTrainer

    spec = grpo_mix(str(tiny_prm_path), mode="official")
    spec["reasonflux.alignment"] = {"weight": 0.1, "encoder": KeywordEncoder(("the", "answer", "is")),
                                    "no_think": "all"}
    rewards = rewardkit.compose(spec)
    trainer = GRPOTrainer(model=str(tiny_model_path), reward_funcs=rewards.funcs,
                          args=tiny_grpo_config(tmp_path, max_steps=2, **rewards.grpo_kwargs()),
                          train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    logs = trainer.state.log_history
    keys = set().union(*[set(h) for h in logs])
    assert "rewards/reasonflux.prm/mean" in keys
    assert "rewards/math.accuracy/mean" in keys
    assert "rewardkit/reasonflux.prm/too_long" in keys
    prm_means = [h["rewards/reasonflux.prm/mean"] for h in logs if "rewards/reasonflux.prm/mean" in h]
    assert prm_means and all(0.0 < m < 1.0 for m in prm_means)
