"""Core PRM scorers on multimodal prompts (images in the prompt, steps in text), the ZeRO-3 anchor
rule, and PRMReward + process_advantage in a real GRPO run of the tiny VLM on images."""

from __future__ import annotations

import pickle
from collections import Counter

import pytest
import torch
from datasets import Dataset

from rewardkit.prm import PRMReward
from rewardkit.prm.multimodal import ImagePrompt, VisionPrefixScorer, VisionTaggedScorer, prompt_images
from rewardkit.testing import tiny_grpo_config, tiny_images
from rewardkit.vision import VisionTowerProbe

STEPS = [["2 + 3 = 5.", "The answer is 5."], ["2 + 3 = 6.", "The answer is 6."]]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def scorer(tiny_vlm_path):
    return VisionTaggedScorer(str(tiny_vlm_path))


def test_tagged_and_prefix_agree_and_the_image_matters(scorer, tiny_vlm_path):
    a, b = tiny_images(2)
    prompts = [ImagePrompt("What is 2 + 3?", [a]), ImagePrompt("What is 2 + 3?", [b]), "What is 2 + 3?"]
    steps = [STEPS[0]] * 3
    stats: Counter[str] = Counter()
    tagged = scorer.score(prompts, steps, stats=stats)
    prefix = VisionPrefixScorer(str(tiny_vlm_path)).score(prompts, steps)
    assert torch.allclose(torch.tensor(tagged), torch.tensor(prefix), atol=1e-5)
    assert tagged[0] != tagged[1] != tagged[2]   # another picture, or none, changes the scores
    assert stats["forwards"] == 1
    ids = scorer.encode_many(prompts[:1], steps[:1])[0][0]
    text = scorer.tokenizer.decode(ids)
    assert text.index("<|vision_start|>") < text.index("What is 2 + 3?") < text.index("2 + 3 = 5.")
    assert ids.count(scorer._lazy_image_id) == ids.n_image_tokens > 0
    # rows are scored as they would be alone
    alone = [scorer.score([p], [s])[0] for p, s in zip(prompts, steps)]
    assert torch.allclose(torch.tensor(alone), torch.tensor(tagged), atol=1e-5)


def test_truncation_never_cuts_into_the_image(tiny_vlm_path):
    img = tiny_images(1)[0]
    long_prompt = ImagePrompt("What is 2 + 3? " * 20, [img])
    sc = VisionTaggedScorer(str(tiny_vlm_path), max_length=60)
    stats: Counter[str] = Counter()
    out = sc.score([long_prompt, "What is 2 + 3? " * 20], [STEPS[0]] * 2, stats=stats)
    assert out[0] is None and stats["too_long"] == 1    # the image row does not fit: not scored
    assert out[1] is not None and stats["truncated"] == 1  # a text row loses prompt tokens as before
    with pytest.raises(ValueError, match="exceeds max_length"):
        VisionTaggedScorer(str(tiny_vlm_path), max_length=60, truncation="error").score([long_prompt], [STEPS[0]])


def test_zero3_rule_every_forward_runs_the_vision_tower(tiny_vlm_path):
    """Under ZeRO-3 (simulated: the sharded flag set) every forward, text-only or idle, runs the
    vision tower, so all ranks gather the same submodules in the same order; scores do not change."""
    img = tiny_images(1)[0]
    prompts = [ImagePrompt("What is 2 + 3?", [img]), "What is 2 + 3?"]
    plain = VisionTaggedScorer(str(tiny_vlm_path), batch_size=1)
    want = plain.score(prompts, STEPS)
    sharded = VisionTaggedScorer(str(tiny_vlm_path), batch_size=1)
    sharded._load()
    sharded._lazy_sharded = True
    probe = VisionTowerProbe(sharded.model)
    got = sharded.score(prompts, STEPS)
    assert probe.calls == 2   # two batches of one row: the text-only one ran the tower through its anchor
    assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-5)
    sharded._idle_forward()
    assert probe.calls == 3
    probe.close()


def test_prompt_images_and_pickling():
    img = tiny_images(1)[0]
    chat = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "Q"}]}]
    assert prompt_images(chat)[0] is img
    assert prompt_images("Q", {"image": img})[0].size == img.size
    assert prompt_images("Q", {"images": [img, img]})[1].size == img.size
    assert prompt_images("Q", {}) == []
    p = pickle.loads(pickle.dumps(ImagePrompt("Q", [img])))
    assert str(p) == "Q" and p.images[0].tobytes() == img.tobytes()


def test_prm_reward_and_process_advantage_on_a_vlm_grpo_run(tmp_path, tiny_vlm_path, tiny_vlm_processor):
    """TRL hands the rewards multimodal chat prompts; the PRM scores them with their images and
    process_advantage turns the step scores into per-token advantages of the VLM policy."""
    from trl import GRPOTrainer

    from rewardkit.trl import build_trainer

    scorer = VisionTaggedScorer(str(tiny_vlm_path))
    reward = PRMReward(scorer, splitter="line", name="vprm")
    seen: list[list[str]] = []
    original = scorer.score

    def spy(prompts, steps, **kw):
        seen.append([type(p).__name__ for p in prompts])
        return original(prompts, steps, **kw)

    scorer.score = spy
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} + 1? Answer in two lines."}],
                             "image": img} for i, img in enumerate(tiny_images(4))])
    args = tiny_grpo_config(tmp_path, max_steps=2, max_completion_length=12)
    trainer = build_trainer(GRPOTrainer, hooks=["prm.process_advantage"], model=str(tiny_vlm_path),
                            reward_funcs=[reward], args=args, train_dataset=ds, processing_class=tiny_vlm_processor)
    probe = VisionTowerProbe(scorer.model)
    trainer.train()
    assert seen and all(name == "ImagePrompt" for names in seen for name in names)
    assert probe.calls >= 2
    logs = [h for h in trainer.state.log_history if "process_advantage/steps_per_completion" in h]
    assert logs and all(h["process_advantage/steps_per_completion"] > 0 for h in logs)
    hook = trainer.rewardkit_hooks[0]
    assert hook.last_process_term.abs().sum() > 0
