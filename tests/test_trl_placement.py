"""check_world_size: a launcher's N lone processes are an error, not N silent duplicate runs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rewardkit.trl import LaunchError, check_world_size


def test_lone_processes_under_a_multi_process_launch_raise(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="use_cpu=True"):
        check_world_size(SimpleNamespace(world_size=1))  # what TrainingArguments says without use_cpu
    assert check_world_size(SimpleNamespace(world_size=2)) == 2
    trainer = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2), args=SimpleNamespace(world_size=2))
    assert check_world_size(trainer) == 2


def test_single_process_runs_pass(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert check_world_size(SimpleNamespace(world_size=1)) == 1


def test_whole_model_loading_lifts_zero3_init_only_inside_the_block(tiny_model_path):
    """transformers partitions every new model while a ZeRO-3 config is registered; inside
    whole_model_loading a model loads whole, and the run's config is back afterwards."""
    pytest.importorskip("deepspeed")
    from transformers import AutoModelForCausalLM
    from transformers.integrations import HfDeepSpeedConfig, is_deepspeed_zero3_enabled

    from rewardkit.trl import whole_model_loading

    with whole_model_loading():                       # no ZeRO-3 registered: nothing to lift
        assert not is_deepspeed_zero3_enabled()
    config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        with whole_model_loading():
            assert not is_deepspeed_zero3_enabled()
            model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        assert is_deepspeed_zero3_enabled()
        assert all(p.numel() > 0 and p.dim() >= 1 and not hasattr(p, "ds_id") for p in model.parameters())
    finally:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    del config
