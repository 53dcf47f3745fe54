"""DreamPRM on images: both PRMs score image + text chains with the tiny Qwen2.5-VL, the bi-level
trainer runs on the rendered-problem toy, and Best-of-N picks among image chains."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from PIL import Image
from rewardkit_dreamprm import DreamPRMConfig, DreamPRMTrainer, GenerativePRM, ValueHeadPRM, best_of_n_eval
from rewardkit_dreamprm.bon import select_best
from rewardkit_dreamprm.models import EncodingError
from rewardkit_dreamprm.steps import Chain
from rewardkit_dreamprm.vision import (
    IMAGE_QUESTION,
    VisionGenerativePRM,
    VisionValueHeadPRM,
    make_vision_toy,
    render_problem,
)

from rewardkit.testing import tiny_vlm_dir


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model: extra threads only spin on a shared 2-core runner (10x slower)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=1)
def _base():
    from transformers import AutoModelForImageTextToText

    from rewardkit.vision import load_processor

    path = tiny_vlm_dir()
    return AutoModelForImageTextToText.from_pretrained(path), load_processor(path)


def vprm(cls, seed: int = 0):
    lm, proc = _base()
    torch.manual_seed(seed)
    return cls(copy.deepcopy(lm), proc)


def chain(text="Compute 3 + 4 - 2.", steps=("Step 1: 3 + 4 = 7.", "Step 2: 7 - 2 = 5."), image=True):
    img = render_problem(text) if image is True else image
    return Chain.from_steps(IMAGE_QUESTION, list(steps), image=img)


@pytest.mark.parametrize("cls", [VisionValueHeadPRM, VisionGenerativePRM])
def test_image_chains_score_with_the_image_in_the_question_turn(cls):
    prm = vprm(cls)
    a, b = chain(), chain("Compute 9 - 4 + 6.")
    enc = prm.encode([a, b])
    image_id = prm.image_token_id
    rows_per_chain = 2 if cls is VisionValueHeadPRM else 1
    assert enc["input_ids"].shape[0] == 2 * rows_per_chain
    assert enc["image_grid_thw"].shape[0] == 2 * rows_per_chain
    per_row = int(enc["image_grid_thw"][0].prod()) // 4
    assert ((enc["input_ids"] == image_id).sum(1) == per_row).all()
    text = prm.tokenizer.decode(enc["input_ids"][0][enc["attention_mask"][0].bool()])
    assert text.index("<|vision_start|>") < text.index(IMAGE_QUESTION) < text.index("Step 1")
    scores = prm.score_chains([a, b])
    assert [len(s) for s in scores] == [2, 2] and all(0 < p < 1 for s in scores for p in s)
    # the picture matters: the same text with another picture scores differently
    other = prm.score_chains([chain(image=render_problem("Compute 8 + 8 + 8."))])[0]
    assert other != scores[0]
    # rows are independent of their batch (left padding, M-RoPE positions per row)
    alone = [prm.score_chains([c])[0] for c in (a, b)]
    assert torch.allclose(torch.tensor(alone), torch.tensor(scores), atol=1e-5)


@pytest.mark.parametrize("cls,text_cls", [(VisionValueHeadPRM, ValueHeadPRM), (VisionGenerativePRM, GenerativePRM)])
def test_a_chain_without_an_image_scores_as_text(cls, text_cls):
    prm = vprm(cls)
    kw = {"head": prm.head} if cls is VisionValueHeadPRM else {}
    text = text_cls(prm.lm, prm.tokenizer, **kw)
    c = chain(image=None)
    assert prm.score_chains([c]) == text.score_chains([c])
    assert "pixel_values" not in prm.encode([c])


@pytest.mark.parametrize("cls", [VisionValueHeadPRM, VisionGenerativePRM])
def test_training_loss_reaches_the_vision_tower(cls):
    prm = vprm(cls)
    enc = prm.encode([chain(), chain("Compute 5 + 5 - 1.")], labels=[[1.0, 0.0], [1.0, 1.0]])
    out = prm.outputs(enc)
    out.logodds().sum().backward()
    grads = [p.grad for n, p in prm.named_parameters() if "visual" in n and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_truncation_into_the_image_is_an_error_not_a_silent_mismatch():
    lm, proc = _base()
    prm = VisionValueHeadPRM(copy.deepcopy(lm), proc, max_length=12)
    with pytest.raises(EncodingError, match="image tokens"):
        prm.encode([chain()])


def test_bilevel_on_rendered_problems_downweights_the_corrupted_domain_and_best_of_n_picks(tmp_path):
    toy = make_vision_toy(n_train_per_domain=48, n_meta=16, n_eval=6, n_candidates=4, corrupted=("mix",),
                          flip=0.7, seed=0)
    c = toy["train"][0].chain
    assert c.question == IMAGE_QUESTION and isinstance(c.image, Image.Image)
    assert c.meta["question_text"].startswith("Compute ")
    prm = vprm(VisionValueHeadPRM)
    cfg = DreamPRMConfig(lr=1e-3, meta_lr=0.1, batch_size=16, meta_batch_size=8, unroll_steps=2,
                         lr_scheduler="constant", logging_steps=1000)
    tr = DreamPRMTrainer(prm, toy["train"], toy["meta"], cfg)
    tr.train(max_steps=TOY_STEPS)
    w = tr.weight_table()
    assert w["mix"] == min(w.values()) and w["mix"] < 1.0, w
    i, agg = select_best(prm, toy["eval"][0]["candidates"])
    assert 0 <= i < 4 and len(agg) == 4
    bon = best_of_n_eval(prm, toy["eval"])
    assert len(bon["picks"]) == 6 and 0 <= bon["accuracy"] <= 1
    prm.save_pretrained(str(tmp_path / "prm"))
    again = VisionValueHeadPRM.from_pretrained(tmp_path / "prm")
    chains = toy["eval"][0]["candidates"]
    assert again.score_chains(chains) == prm.score_chains(chains)


TOY_STEPS = 20


def test_generative_prm_bilevel_runs_on_images():
    toy = make_vision_toy(n_train_per_domain=8, n_meta=8, n_eval=2, n_candidates=3, seed=1)
    prm = vprm(VisionGenerativePRM)
    cfg = DreamPRMConfig.v15(lr=1e-3, meta_lr=0.05, batch_size=4, meta_batch_size=4, unroll_steps=1,
                             lr_scheduler="constant", logging_steps=1000)
    before = {n: p.detach().clone() for n, p in prm.named_parameters() if "visual" in n}
    tr = DreamPRMTrainer(prm, toy["train"], toy["meta"], cfg)
    tr.train(max_steps=3)
    assert any(not torch.equal(before[n], p) for n, p in prm.named_parameters() if "visual" in n)
    assert select_best(prm, toy["eval"][0]["candidates"])[0] in range(3)


@pytest.mark.slow
def test_the_text_toy_claim_holds_on_images():
    """The settings of test_dreamprm_toy_claim.py's four-domain claim (sign slips, mix 70% flipped,
    100 prefixes a domain, meta lr 0.1, 120 steps), on rendered problems: about 2 minutes here."""
    from rewardkit_dreamprm.vision import run_vision_toy

    res = run_vision_toy("tiny", steps=120)
    w = res["weights"]
    print("\nDreamPRM toy on images:", res)
    assert w["mix"] < 0.6 * min(v for d, v in w.items() if d != "mix"), w
    assert w["mix"] < 0.6, w
    assert res["bon"] > 0.8, res


def test_dreamprm_reward_scores_image_rows_with_a_saved_vision_prm(tmp_path):
    """``dreamprm.prm`` on a saved VLM PRM: the row's image (chat prompt part or ``image`` column)
    goes into the chain it scores; without the image the scores differ."""
    from rewardkit_dreamprm.rewards import DreamPRMReward, load_prm

    prm = vprm(VisionValueHeadPRM)
    prm.save_pretrained(str(tmp_path / "vprm"))
    assert isinstance(load_prm(str(tmp_path / "vprm")), VisionValueHeadPRM)
    reward = DreamPRMReward(str(tmp_path / "vprm"), name="dreamprm_vlm")
    assert reward.scorer.takes_images and reward.image_columns == ("image", "images")
    img = render_problem("Compute 3 + 4 - 2.")
    text = "Step 1: 3 + 4 = 7.\nStep 2: 7 - 2 = 5.\nFinal answer: 5"
    chat = [{"role": "user", "content": [{"type": "image", "image": img},
                                         {"type": "text", "text": IMAGE_QUESTION}]}]
    from_chat = reward([chat], [text])
    from_column = reward([IMAGE_QUESTION], [text], image=[img])
    no_image = reward([IMAGE_QUESTION], [text])
    chain = reward.chain(IMAGE_QUESTION, text)   # the reward's own split, then the picture
    chain.image = img
    want = prm.score_chains([chain])[0]
    from rewardkit_dreamprm.objectives import aggregate

    assert from_chat[0] == pytest.approx(aggregate(want, "mean_logodds"), abs=1e-5)
    assert from_column == from_chat and no_image != from_chat
