"""A vision PRM sharded under DeepSpeed ZeRO-3 on 2 CPU processes: uneven, mixed image / text-only
work never hangs (the anchor rule) and the scores equal the unsharded model's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from rewardkit.testing import free_port

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_workers" / "vision_prm_check.py"


def test_vision_prm_under_zero3_keeps_ranks_in_step(tmp_path, tiny_vlm_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(WORKER.parent))
    try:
        from test_distributed_zero import CONFIGS, _bin, _launch, _ranks
        from vision_prm_check import CALLS, prompts_of
    finally:
        sys.path.remove(str(WORKER.parent))
        sys.path.remove(str(Path(__file__).resolve().parent))
    from rewardkit.prm.multimodal import VisionTaggedScorer
    from rewardkit.testing import tiny_model_dir

    tiny_model_dir("causal_lm")  # built here, not racing in two ranks
    out = tmp_path / "vis"
    _launch([_bin("accelerate"), "launch", "--config_file", str(CONFIGS / "zero3_cpu.yaml"),
             "--main_process_port", str(free_port()), str(WORKER), "--out", str(out)])
    ranks = _ranks(out)
    local = VisionTaggedScorer(str(tiny_vlm_path), batch_size=1)
    for r in ranks:
        assert r["zero_stage"] == 3 and r["engine"] == "DeepSpeedEngine"
        for rows, got in zip(CALLS[r["rank"]], r["calls"]):
            if not rows:
                continue
            want = local.score(prompts_of(rows), [s for _, _, s in rows])
            assert [len(g) for g in got] == [len(w) for w in want]
            for g, w in zip(got, want):
                assert torch.allclose(torch.tensor(g), torch.tensor(w), atol=1e-5), (got, want)
    # forwards per call: call 1 rank 0 has 2 rows (2 batches), rank 1 none; call 2 rank 0 has 1, rank 1 has 2
    assert ranks[0]["idle"] == 1 and ranks[1]["idle"] == 2
