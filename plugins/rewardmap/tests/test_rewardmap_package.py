"""The package's shape: importing it (and listing plugins) loads no torch; the GRPO presets build a GRPOConfig."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from rewardkit_rewardmap.config import PRESETS, grpo_kwargs


def test_import_and_listing_load_no_torch():
    code = ("import sys, rewardkit_rewardmap, rewardkit; rewardkit.list_hooks(); rewardkit.list_rewards(); "
            "rewardkit_rewardmap.RouteReward; print(sorted(m for m in ('torch', 'transformers', 'trl') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "REWARDKIT_LOAD_PLUGINS": "rewardmap"})
    assert out.stdout.strip() == "[]"


def test_lazy_exports_are_the_real_objects():
    import rewardkit_rewardmap
    from rewardkit_rewardmap.hooks import CurriculumHook
    from rewardkit_rewardmap.rewards import MapReward

    assert rewardkit_rewardmap.CurriculumHook is CurriculumHook and rewardkit_rewardmap.MapReward is MapReward
    with pytest.raises(AttributeError):
        rewardkit_rewardmap.NoSuchName  # noqa: B018


def test_presets_build_a_grpo_config(tmp_path):
    from trl import GRPOConfig

    paper = GRPOConfig(output_dir=str(tmp_path), **grpo_kwargs("paper", use_cpu=True, bf16=False))
    assert (paper.learning_rate, paper.beta, paper.num_generations, paper.epsilon) == (1e-6, 1e-3, 8, 0.2)
    code = grpo_kwargs("code", num_generations=2)
    assert code["beta"] == 1e-2 and code["num_generations"] == 2 and PRESETS["code"]["num_generations"] == 4
    GRPOConfig(output_dir=str(tmp_path), **grpo_kwargs("code", use_cpu=True, bf16=False))
    with pytest.raises(ValueError, match="unknown preset"):
        grpo_kwargs("fast")
