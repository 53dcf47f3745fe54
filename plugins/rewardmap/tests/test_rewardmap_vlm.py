"""RewardMap on images: a real TRL GRPO run on the tiny Qwen2.5-VL with the RewardMap reward and the
curriculum hook, on rendered synthetic maps and on released-format ReasonMap rows with figures."""

from __future__ import annotations

import json

import torch
from rewardkit_rewardmap.curriculum import STAGE_COLUMN
from rewardkit_rewardmap.data import load_reasonmap, make_dataset, render_map
from rewardkit_rewardmap.vision import vlm_dataset, vlm_trainer

from rewardkit import get_hook, get_reward
from rewardkit.testing import tiny_grpo_config


class PromptSpy:
    """Wraps TRL's loss step to record what reached the model: image tokens and pixel rows."""

    def __init__(self, trainer) -> None:
        self.image_tokens: list[int] = []
        self.pixel_rows: list[int] = []
        self.image_id = trainer.model.config.image_token_id
        original = trainer._compute_loss

        def spy(model, inputs):
            self.image_tokens.append(int((inputs["prompt_ids"] == self.image_id).sum()))
            self.pixel_rows.append(int(inputs["pixel_values"].shape[0]) if "pixel_values" in inputs else 0)
            return original(model, inputs)

        trainer._compute_loss = spy


def _train_and_check(trainer, probe, n_steps):
    spy = PromptSpy(trainer)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "visual" in n}
    trainer.train()
    assert probe.calls > 0 and probe.patches > 0
    assert len(spy.image_tokens) == n_steps and all(n > 0 for n in spy.image_tokens)
    assert all(n > 0 for n in spy.pixel_rows)
    moved = [n for n, p in trainer.model.named_parameters() if "visual" in n and not torch.equal(before[n], p)]
    return spy, moved


def test_grpo_on_rendered_maps_with_reward_and_curriculum(tmp_path):
    ds = vlm_dataset(2, 4, seed=1, image_size=96)
    assert ds[0]["prompt"][0]["content"][0]["type"] == "image" and len(ds[0]["images"]) == 1
    assert "Metro map of" not in ds[0]["prompt"][0]["content"][1]["text"]   # the map is only in the picture
    reward = get_reward("rewardmap.reward")
    hook = get_hook("rewardmap.curriculum", seed=0)
    args = tiny_grpo_config(tmp_path, max_steps=3, per_device_train_batch_size=4, num_generations=2,
                            max_completion_length=8)
    # An untrained model earns RewardMap reward 0 everywhere, so no advantage and no gradient; a
    # second reward that varies with the completion makes the loss reach the vision tower.
    def varies(completions, **kwargs):
        return [float(len(c[0]["content"]) % 3) for c in completions]

    trainer, probe = vlm_trainer("tiny", ds, args, rewards=[reward, varies], hook=hook)
    seen_stages: list[int] = []
    original = hook.after_rollout

    def note(trainer_, inputs, output):
        seen_stages.extend(int(r[STAGE_COLUMN]) for r in inputs)
        assert all(r["images"] for r in inputs)
        return original(trainer_, inputs, output)

    hook.after_rollout = note
    _, moved = _train_and_check(trainer, probe, 3)
    assert moved, "the vision tower was not trained"
    assert seen_stages == sorted(seen_stages)    # the curriculum order held on the image rows
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 3 and all("curriculum/stage" in h for h in logs)
    assert all(f"rewards/{reward.name}/mean" in h for h in logs)


def test_released_reasonmap_rows_with_figures_take_the_same_path(tmp_path):
    rows = make_dataset(2, 3, seed=5, short_names=True, as_list=True)
    released = []
    for r in rows:
        city = r["city"].replace(" ", "_")
        stations = tmp_path / "stations" / "Synthland" / f"{city}.json"
        stations.parent.mkdir(parents=True, exist_ok=True)
        stations.write_text(r["metro"], encoding="utf-8")
        figure = tmp_path / "figures" / f"{city}.png"
        if not figure.exists():
            figure.parent.mkdir(exist_ok=True)
            render_map_from_json(r, figure)
        released.append({"question": r["question"], "type": r["type"], "station_1": r["station_1"],
                         "station_2": r["station_2"], "difficulty_city": r["difficulty_city"], "country": "Synthland",
                         "city": r["city"], "city_line_count": r["city_line_count"],
                         "city_transfer_count": r["city_transfer_count"], "answer": r["answer"],
                         "question_transfer_count": r["question_transfer_count"],
                         "json": f"./stations/Synthland/{city}.json", "figure": f"figures/{city}.png"})
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in released), encoding="utf-8")
    ds = load_reasonmap(path, stations_root=tmp_path, image_root=tmp_path, with_images=True)
    assert ds[0]["images"][0].size == (96, 96)
    args = tiny_grpo_config(tmp_path / "run", max_steps=2, per_device_train_batch_size=4, num_generations=2,
                            max_completion_length=8)
    trainer, probe = vlm_trainer("tiny", ds, args)
    _train_and_check(trainer, probe, 2)


def render_map_from_json(row, path):
    from rewardkit_rewardmap.data import TransitMap

    tmap = TransitMap(row["city"], row["difficulty_city"], json.loads(row["metro"]))
    render_map(tmap, size=96).save(path)
