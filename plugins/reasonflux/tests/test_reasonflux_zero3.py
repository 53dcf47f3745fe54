"""The encoder and judge models ReasonFlux loads lazily work in a ZeRO-3 run (2 CPU processes).

Once a ZeRO-3 run's training arguments exist, transformers builds models under zero.Init; without
``rewardkit.trl.whole_model_loading`` the encoder's first forward fails ("'weight' must be 2-D")."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


@pytest.mark.distributed
def test_embedding_rewards_and_local_judge_under_zero3(tmp_path, tiny_model_path):
    from rewardkit_reasonflux.judge import TransformersBackend

    from rewardkit import get_reward

    sys.path.insert(0, str(HERE))
    try:
        from zero3_worker import COMPLETIONS, PROMPTS
    finally:
        sys.path.remove(str(HERE))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "examples/configs/accelerate/zero3_cpu.yaml"), "--main_process_port", str(port),
           str(HERE / "zero3_worker.py"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    expected = {name: get_reward(name)(PROMPTS, COMPLETIONS) for name in ("reasonflux.alignment", "reasonflux.coherence")}
    expected["judge"] = TransformersBackend(str(tiny_model_path)).complete(PROMPTS, max_tokens=4)
    for r in ranks:
        assert r["zero3"] and r["zero3_after"]          # the run stays ZeRO-3 after the whole-model loads
        for name in ("reasonflux.alignment", "reasonflux.coherence"):
            assert r["values"][name] == pytest.approx(expected[name], abs=1e-5)
        assert r["values"]["judge"] == expected["judge"]
