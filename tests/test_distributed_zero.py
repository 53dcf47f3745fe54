"""Distributed runs for real on this CPU machine: 2 processes on gloo, DeepSpeed ZeRO-2/3.

Every test launches ``tests/distributed_workers/grpo_rank_check.py`` with ``accelerate launch`` or
``torchrun`` in a subprocess (own free port, timeout) and compares what each rank recorded.
DeepSpeed JIT-builds its ops the first time (shm comm about 40 s, CPU Adam about 60 s; cached in
~/.cache/torch_extensions), so a cold first run is slower.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rewardkit.testing import free_port

pytestmark = pytest.mark.distributed

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_workers" / "grpo_rank_check.py"
CONFIGS = ROOT / "examples" / "configs" / "accelerate"
GEN = 4  # num_generations in the worker
PER_RANK = 6  # per_device_train_batch_size in the worker
WEIGHTS = {"boxed": 0.5, "textlen": 1.0, "prm": 1.0}


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed")
    return found


def _launch(cmd: list[str], timeout: int = 420) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TRL_EXPERIMENTAL_SILENCE": "1", "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-3000:] if isinstance(exc.stdout, bytes) else (exc.stdout or "")[-3000:]
        raise AssertionError(f"{' '.join(cmd)} timed out after {timeout}s\n{tail}") from None
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}")


def _accelerate(config: str, out: Path, *extra: str) -> list[str]:
    return [_bin("accelerate"), "launch", "--config_file", str(CONFIGS / config),
            "--main_process_port", str(free_port()), str(WORKER), "--out", str(out), *extra]


@pytest.fixture(scope="module", autouse=True)
def _tiny_models():
    # build the cached tiny models once here, not racing in two ranks
    from rewardkit.testing import tiny_model_dir

    tiny_model_dir("causal_lm")
    tiny_model_dir("prm")


def _ranks(out: Path, world: int = 2) -> list[dict]:
    got = [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]
    assert [g["rank"] for g in got] == list(range(world)) and all(g["world"] == world for g in got)
    return got


def _check_rewards_and_advantages(ranks: list[dict], with_prm: bool) -> None:
    """Rewards are gathered before normalising: recompute TRL's advantages from all ranks' rows."""
    steps = len(ranks[0]["rows_before"]) // PER_RANK
    assert steps == 2 and all(len(r["rows_before"]) == steps * PER_RANK for r in ranks)
    for k in range(steps):
        rows = [row for r in ranks for row in r["rows_before"][k * PER_RANK:(k + 1) * PER_RANK]]
        totals = []
        for row in rows:
            t = WEIGHTS["boxed"] * row["boxed"] + WEIGHTS["textlen"] * row["textlen"]
            if with_prm:
                if row["prm_starved"]:
                    # no steps -> no process score: None (NaN in TRL, left out of the sum), never 0
                    assert row["prm"] is None and row["prm_steps"] == []
                else:
                    assert row["prm"] == pytest.approx(row["prm_reduced"])  # min over the step scores
                    t += WEIGHTS["prm"] * row["prm"]
            totals.append(t)
        groups = [rows[g:g + GEN] for g in range(0, len(rows), GEN)]
        # 6 rows per rank, groups of 4: rows 4-7 are split over the ranks, so gathering is exercised
        assert PER_RANK % GEN != 0
        for g, grp in enumerate(groups):
            assert len({row["prompt"] for row in grp}) == 1  # TRL's layout: groups are consecutive rows
            vals = totals[g * GEN:(g + 1) * GEN]
            mean = sum(vals) / GEN
            for row, v in zip(grp, vals):
                assert row["adv_dim"] == 1
                assert row["adv0"] == pytest.approx(v - mean, abs=1e-4)  # scale_rewards="none"
        # the logged reward mean (gathered by TRL) is the mean over both ranks' rows
        assert ranks[0]["logs"][k]["reward"] == pytest.approx(sum(totals) / len(totals), abs=1e-4)


def _check_same_state_and_logs(ranks: list[dict]) -> None:
    a, b = ranks
    assert a["hook_states"] == b["hook_states"]
    # TRL logs rank 0's numbers; every metric rewardkit logs through TRL is gathered, so all agree.
    # Rank-local by nature: step_time (a clock); process_advantage/abs_process_term (the core hook
    # averages it over local rows only)
    local = ("step_time", "process_advantage/abs_process_term")
    strip = [{k: v for k, v in log.items() if k not in local} for log in a["logs"]]
    assert strip == [{k: v for k, v in log.items() if k not in local} for log in b["logs"]]
    # the recorder's baseline is an EMA of the *gathered* textlen mean: recompute it from all rows
    baseline = 0.0
    for k in range(len(a["rows_before"]) // PER_RANK):
        vals = [row["textlen"] for r in ranks for row in r["rows_before"][k * PER_RANK:(k + 1) * PER_RANK]]
        baseline = 0.9 * baseline + 0.1 * sum(vals) / len(vals)
    assert a["hook_states"]["recorder_before"]["baseline"] == pytest.approx(baseline, rel=1e-5)
    for log in a["logs"]:
        # RewardSetModel (a model reward in TRL's eyes) scores exactly like the function reward
        assert log["rewards/rewardset_model/mean"] == pytest.approx(log["rewards/textlen/mean"], abs=1e-6)


def test_launchers_give_two_cpu_processes(tmp_path):
    """ddp_cpu.yaml joins 2 gloo processes when the args say use_cpu=True; without it each of the
    processes torchrun starts trains alone, which check_world_size reports instead of letting it pass."""
    runs = {
        "ddp": _accelerate("ddp_cpu.yaml", tmp_path / "ddp", "--probe", "--use-cpu", "1"),
        # torchrun (what accelerate's multi-GPU launcher runs underneath), args without use_cpu
        "torchrun_no_use_cpu": [_bin("torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()),
                                str(WORKER), "--out", str(tmp_path / "torchrun_no_use_cpu"), "--probe",
                                "--use-cpu", "0"],
    }
    for cmd in runs.values():
        _launch(cmd, timeout=180)
    probes = [json.loads(p.read_text()) for p in (tmp_path / "ddp").glob("probe*.json")]
    assert sorted(p["rank"] for p in probes) == [0, 1], probes
    assert all(p["world"] == 2 and p["type"] == "DistributedType.MULTI_CPU" and p["backend"] == "gloo"
               and p["error"] is None for p in probes), probes
    probes = [json.loads(p.read_text()) for p in (tmp_path / "torchrun_no_use_cpu").glob("probe*.json")]
    assert len(probes) == 2 and all(p["world"] == 1 for p in probes)  # two lone runs...
    assert all("use_cpu=True" in p["error"] for p in probes)  # ...caught, with the fix in the message


def test_zero3_two_processes_prm_reward_process_advantage_hook(tmp_path):
    out = tmp_path / "z3"
    _launch(_accelerate("zero3_cpu.yaml", out))
    ranks = _ranks(out)
    for r in ranks:
        assert r["type"] == "DistributedType.DEEPSPEED" and r["zero_stage"] == 3
        # the plugin-held PRM was prepared like TRL's reward models: a DeepSpeed engine, sharded
        assert r["prm_engine"] == "DeepSpeedEngine"
        assert r["prm_params_local"] < r["prm_params_full"]
    _check_rewards_and_advantages(ranks, with_prm=True)
    _check_same_state_and_logs(ranks)
    # step 2: rank 1 had no step to score while rank 0 ran its PRM forward; the lockstep made rank 1
    # run an idle forward instead of hanging the sharded PRM
    assert all(row["prm_starved"] for row in ranks[1]["rows_before"][PER_RANK:])
    assert ranks[1]["prm_idle_forwards"] >= 1 and ranks[0]["prm_idle_forwards"] == 0
    pa = ranks[0]["hook_states"]["prm.process_advantage"]
    assert pa["rollouts"] == 2 and pa["completions"] == 2 * 2 * PER_RANK and pa["missing"] == PER_RANK
    # process supervision: step rewards are normalised within each group, wherever its rows live,
    # so the first-token advantages (sum of a completion's normalised steps) sum to 0 per group
    for k in range(2):
        rows = [row for r in ranks for row in r["rows_after"][k * PER_RANK:(k + 1) * PER_RANK]]
        assert all(row["adv_dim"] == 2 for row in rows)
        for g in range(0, len(rows), GEN):
            assert sum(row["adv0"] for row in rows[g:g + GEN]) == pytest.approx(0.0, abs=1e-3)


def test_zero2_optimizer_offload_two_processes(tmp_path):
    out = tmp_path / "z2off"
    _launch(_accelerate("zero2_offload_cpu.yaml", out))
    ranks = _ranks(out)
    for r in ranks:
        assert r["zero_stage"] == 2
        assert "DeepSpeedCPUAdam" in r["optimizer"], r["optimizer"]
        # below ZeRO-3 TRL's recipe keeps reward models whole on every rank (stage 0 engine)
        assert r["prm_engine"] == "DeepSpeedEngine" and r["prm_params_local"] == r["prm_params_full"]
    _check_rewards_and_advantages(ranks, with_prm=True)
    _check_same_state_and_logs(ranks)


def test_zero3_generative_prm_with_uneven_work_across_ranks(tmp_path):
    """A generative PRM the scorer shards itself: ranks with less (or no) work join the others'
    generate calls instead of hanging, and the verdicts equal those of the unsharded model."""
    from rewardkit.prm import PrefixScorer, PRMReward
    from rewardkit.testing import tiny_model_dir

    worker = ROOT / "tests" / "distributed_workers" / "generative_prm_check.py"
    sys.path.insert(0, str(worker.parent))
    try:
        from generative_prm_check import CALLS, as_text, text_checksum
    finally:
        sys.path.remove(str(worker.parent))
    out = tmp_path / "gen"
    _launch([_bin("accelerate"), "launch", "--config_file", str(CONFIGS / "zero3_cpu.yaml"),
             "--main_process_port", str(free_port()), str(worker), "--out", str(out)])
    ranks = _ranks(out)
    path = str(tiny_model_dir("causal_lm"))
    local = PRMReward(PrefixScorer(path, head="lm", template=as_text, max_new_tokens=3, batch_size=1, max_batch_tokens=None,
                                   parse=text_checksum), reducer="mean", splitter="line")
    for r in ranks:
        assert r["zero_stage"] == 3 and r["engine"] == "DeepSpeedEngine"
        for rows, got in zip(CALLS[r["rank"]], r["calls"]):
            local([p for p, _ in rows], [c for _, c in rows])
            assert got == [None if s is None else s.scores for s in local.last_step_scores]
    assert len({x for r in ranks for call in r["calls"] for row in call for x in row}) >= 5  # varied verdicts
    # generate calls: call 1 rank 0 has 5 step prefixes, rank 1 none; call 2 rank 0 has 1, rank 1 has 6
    assert ranks[0]["idle"] == 5 and ranks[1]["idle"] == 5
