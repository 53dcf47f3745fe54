"""The two PRMs on the tiny causal LM: inputs, slots, token ids, batching, save/load."""

from __future__ import annotations

import pytest
import torch
from _dreamprm_util import gen_prm, v1_prm
from rewardkit_dreamprm import Chain, GenerativePRM, ValueHeadPRM, load_prm, make_chain
from rewardkit_dreamprm.models import EncodingError

CHAINS = [make_chain("Compute 2 + 3 + 4.", "Step 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9.\nFinal answer: 9"),
          make_chain("Compute 7 - 2 - 1.", "Step 1: 7 - 2 = 105.\nStep 2: 105 - 1 = 104.\nFinal answer: 104"),
          Chain.from_steps("Q3", ["Step 1: only one."])]


def test_v1_input_is_question_prefix_under_chat_template_and_last_token_is_header():
    prm = v1_prm()
    text = prm.prefix_text(CHAINS[0], 1)
    assert text.endswith("<|im_start|>assistant\n")
    assert "Compute 2 + 3 + 4.\n\nStep 1: 2 + 3 = 5.\nStep 2: 5 + 4 = 9." in text
    assert "Final answer" not in text
    enc = prm.encode(CHAINS)
    assert enc["owner"] == [0, 0, 1, 1, 2] and enc["step"] == [0, 1, 0, 1, 0]
    # the head reads vocab logits: Linear(vocab, 1)
    assert prm.head.in_features == prm.lm.get_output_embeddings().weight.shape[0]


def test_v1_batched_scores_equal_one_at_a_time():
    prm = v1_prm().eval()
    together = prm.score_chains(CHAINS, batch_size=16)
    alone = [prm.score_chains([c])[0] for c in CHAINS]
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-5)
    assert [len(s) for s in together] == [2, 2, 1]
    assert prm.score_chains([Chain("Q", "", [])]) == [[]]


def test_15_plus_minus_ids_come_from_the_tokenizer_and_slots_are_checked():
    prm = gen_prm()
    tok = prm.tokenizer
    assert prm.plus_id == tok.encode("+", add_special_tokens=False)[0]
    assert prm.minus_id == tok.encode("-", add_special_tokens=False)[0]
    enc = prm.encode(CHAINS[:2], labels=[[1.0, 0.0], [0.0, 0.0]])
    ids = enc["input_ids"]
    # the token after each slot position is the teacher-forced label token
    nxt = ids[enc["slot_rows"], enc["slot_pos"] + 1].tolist()
    assert nxt == [prm.plus_id, prm.minus_id, prm.minus_id, prm.minus_id]
    # at inference every slot holds the '+' placeholder
    enc2 = prm.encode(CHAINS[:2])
    assert ids.shape[0] == 2 and set(enc2["input_ids"][enc2["slot_rows"], enc2["slot_pos"] + 1].tolist()) == {prm.plus_id}
    # the slot's logits predict the label: the token at the slot is the assistant header's last token
    header_last = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)[-1]
    assert set(ids[enc["slot_rows"], enc["slot_pos"]].tolist()) == {header_last}


def test_15_multi_token_label_is_refused():
    prm = gen_prm()
    with pytest.raises(ValueError, match="single-token"):
        GenerativePRM(prm.lm, prm.tokenizer, plus="correct step", minus="-")


def test_15_template_without_prefix_property_is_refused():
    prm = gen_prm()
    prm.tokenizer.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}|{% endfor %}"
                                   "{% if add_generation_prompt %}assistant:{% endif %}")
    with pytest.raises(EncodingError):
        prm.encode(CHAINS[:1])


def test_15_scores_are_full_vocab_probabilities_and_batched_equal_alone():
    prm = gen_prm().eval()
    together = prm.score_chains(CHAINS)
    alone = [prm.score_chains([c])[0] for c in CHAINS]
    for a, b in zip(together, alone):
        assert a == pytest.approx(b, abs=1e-5)
    enc = prm.encode(CHAINS[:1])
    with torch.no_grad():
        logits = prm.lm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    p = torch.softmax(logits[0, enc["slot_pos"][0]], -1)[prm.plus_id]
    assert together[0][0] == pytest.approx(float(p), abs=1e-5)


def test_save_and_load_roundtrip(tmp_path):
    prm = v1_prm(seed=5).eval()
    with torch.no_grad():
        prm.head.bias.fill_(0.7)
    prm.save_pretrained(str(tmp_path / "v1"))
    again = load_prm(str(tmp_path / "v1")).eval()
    assert isinstance(again, ValueHeadPRM)
    flat = lambda xs: [x for row in xs for x in row]  # noqa: E731
    assert flat(again.score_chains(CHAINS)) == pytest.approx(flat(prm.score_chains(CHAINS)), abs=1e-6)
    g = gen_prm()
    g.save_pretrained(str(tmp_path / "g"))
    assert isinstance(load_prm(str(tmp_path / "g")), GenerativePRM)


def test_truncation_keeps_the_scored_end():
    prm = v1_prm().eval()
    prm.max_length = 24
    long = Chain.from_steps("word " * 200, ["Step 1: 2 + 2 = 4."])
    s = prm.score_chains([long])
    assert len(s[0]) == 1 and prm.truncated == 1


def _long_chain(n: int) -> Chain:
    return make_chain("Compute x.", "".join(f"Step {k}: x={k}\n" for k in range(1, n + 1)) + "Final answer: 1")


@pytest.mark.parametrize("make", [v1_prm, gen_prm])
def test_token_budget_chunks_forwards_and_keeps_the_scores(make):
    """Scores under a small token budget equal the scores of one unbounded forward, and no forward
    holding more than one row exceeds the budget."""
    prm = make().eval()
    chains = [_long_chain(12), CHAINS[0], _long_chain(5)]
    prm.forward_shapes = []
    whole = prm.score_chains(chains, batch_size=10**6, max_batch_tokens=None)
    assert len(prm.forward_shapes) == 1
    prm.forward_shapes = []
    budget = 400
    chunked = prm.score_chains(chains, batch_size=10**6, max_batch_tokens=budget)
    assert len(prm.forward_shapes) > 1
    for rows, width in prm.forward_shapes:
        assert rows * width <= budget or rows == 1
    for a, b in zip(chunked, whole):
        assert a == pytest.approx(b, abs=1e-6)
    assert [len(s) for s in chunked] == [12, 2, 5]


def test_long_chain_is_scored_within_the_token_budget():
    """A 200-step chain (the issue's 2.8 KB / 200-line case went into one forward of 200 prefixes):
    every forward stays within the budget, and every step gets a score."""
    prm = v1_prm().eval()
    chain = _long_chain(200)
    prm.forward_shapes = []
    budget = 8192
    scores = prm.score_chains([chain], batch_size=64, max_batch_tokens=budget)[0]
    assert len(scores) == 200 and all(0.0 < p < 1.0 for p in scores)
    longest = len(prm.prefix_ids(chain, 199))
    assert max(r * w for r, w in prm.forward_shapes) <= max(budget, longest)
    assert sum(r for r, _ in prm.forward_shapes) == 200 and len(prm.forward_shapes) > 3
