"""verl 0.9.1 itself calling rewardkit: its reward managers, its config, its advantage code.

verl is installed in its own virtual environment under the rewardkit cache (``REWARDKIT_CACHE``),
beside torch 2.13.0 (CPU) and rewardkit's own dependencies without TRL; verl's base install brings
transformers 5.10. verl 0.9.1 imports on CPU; its agent-loop module also needs ``cachetools``,
``uvicorn`` and ``fastapi``, which verl declares only in its ``verl-core`` extra (with torchcodec),
so the environment adds those three. The first install takes minutes (measured: about 2 min
for verl, 3-4 min in all on the shared 2-core machine), so these tests are opt-in:
``REWARDKIT_VERL_TESTS=1 pytest tests/test_verl_engine.py`` (a separate step of ``.ci/run``).

The checks run inside that environment (the script below, with this checkout first on the path):

1. verl's own ``load_reward_manager`` builds its reward-loop ``NaiveRewardManager`` from the overrides
   ``rewardkit verl-config`` prints (composed into verl's ``ppo_trainer`` Hydra config) and scores a
   real ``DataProto`` (tiny tokenizer, left-padded prompts, right-padded responses) through
   ``compute_score`` and ``compute_score_async``; verl's old ``BatchRewardManager`` through
   ``compute_score_batch``.
2. The dense manager, loaded by verl the same way, on a tiny PRM: ``rm_scores`` carry each step's
   weighted score on the token that ends the step (found here by decoding prefixes) and the outcome
   on the last valid token; verl's GAE runs on them.
3. ``process_supervision``: verl's ``compute_advantage`` with the registered estimator gives the
   DeepSeekMath advantages computed from the raw step scores with rewardkit's TRL-hook arithmetic.
4. ``DenseAgentLoopManager.generate_sequences`` through verl's own ``AgentLoopManager`` (Ray actors,
   chunking, concat, metrics, ``auto_await`` from sync code); the actors stand in for the vLLM
   rollout workers (a GPU) and return the agent loop's output for their chunk.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERL = "verl==0.9.1"
# from verl 0.9.1's verl-core extra: what its agent loop imports (see the module docstring)
VERL_EXTRAS = ["cachetools", "uvicorn", "fastapi"]

pytestmark = pytest.mark.skipif(os.environ.get("REWARDKIT_VERL_TESTS") != "1",
                                reason="installs verl 0.9.1 in its own venv (minutes): set REWARDKIT_VERL_TESTS=1")


def _run(cmd: list[str], timeout: float = 1200) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="session")
def verl_python(tmp_path_factory) -> str:
    """The python of a venv with verl 0.9.1 and rewardkit's dependencies (no TRL), built once and kept."""
    from rewardkit.testing import cache_root

    key = hashlib.sha256(" ".join([VERL, *VERL_EXTRAS, (ROOT / "pyproject.toml").read_text()]).encode()).hexdigest()
    venv = cache_root() / f"verl-0.9.1-venv-{key[:12]}"
    py = venv / "bin" / "python"
    done = venv / ".complete"
    if not done.exists():
        start = time.time()
        _run([sys.executable, "-m", "venv", "--clear", str(venv)])
        no_trl = tmp_path_factory.mktemp("pip") / "no-trl.txt"
        no_trl.write_text("trl<0\n")  # rewardkit installs beside verl without TRL
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(no_trl)]
        _run([*pip, "torch==2.13.0"])
        _run([*pip, VERL, *VERL_EXTRAS, str(ROOT)])  # rewardkit's metadata and deps; the code comes from ROOT
        done.write_text(f"installed in {time.time() - start:.0f} s\n")
    return str(py)


def test_verl_runs_rewardkit(verl_python, tmp_path):
    from rewardkit.testing import tiny_model_dir

    spec = tmp_path / "rewards.yaml"
    spec.write_text("rewards:\n  math.accuracy: 1.0\n  format.boxed: 0.1\n")
    prm_spec = tmp_path / "prm.yaml"
    prm_spec.write_text(f"rewards:\n  math.accuracy: 1.0\n  prm.score:\n    weight: 0.5\n"
                        f"    model: {tiny_model_dir('prm')}\n    splitter: line\n    reducer: last\n")
    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's rewardkit over the installed copy
    proc = subprocess.run([verl_python, str(script), str(spec), str(prm_spec)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0 and "OK2" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-4000:]


SCRIPT = r'''import asyncio, copy, math, sys
from pathlib import Path

import numpy as np
import torch

import verl
from verl import DataProto
from hydra import compose as hydra_compose, initialize_config_dir

from rewardkit.integrations.plugin import overrides
from rewardkit.testing import build_tokenizer

SPEC = sys.argv[1]           # rewards YAML: math.accuracy + format.boxed
PRM_SPEC = sys.argv[2]       # rewards YAML: math.accuracy + prm.score (tiny PRM)
assert verl.__version__ == "0.9.1", verl.__version__
tok = build_tokenizer()
CONFIG_DIR = str(Path(verl.__file__).parent / "trainer" / "config")


def verl_config(extra):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=extra + [
            "actor_rollout_ref.model.path=/nonexistent", "actor_rollout_ref.rollout.response_length=48"])


QUESTIONS = ["What is 2+3?", "What is 4*5?", "What is 7-2?", "What is 9+1?"]
RESPONSES = ["2+3=5\nThe answer is \\boxed{5}", "4*5=21\nso \\boxed{21}", "7-2=4 no box", "9+1=10\n\\boxed{10}"]
GOLDS = ["5", "20", "5", "10"]


def data_proto(P=24, R=48):
    pad = tok.pad_token_id
    rows_p, rows_r, masks = [], [], []
    for q, r in zip(QUESTIONS, RESPONSES):
        p = tok(q, add_special_tokens=False)["input_ids"][-P:]
        a = tok(r, add_special_tokens=False)["input_ids"][: R - 1] + [tok.eos_token_id]
        rows_p.append([pad] * (P - len(p)) + p)
        rows_r.append(a + [pad] * (R - len(a)))
        masks.append([0] * (P - len(p)) + [1] * len(p) + [1] * len(a) + [0] * (R - len(a)))
    prompts, responses = torch.tensor(rows_p), torch.tensor(rows_r)
    attn = torch.tensor(masks)
    n = len(QUESTIONS)
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "input_ids": torch.cat([prompts, responses], 1),
                 "attention_mask": attn, "position_ids": torch.clamp(attn.cumsum(-1) - 1, min=0),
                 "response_mask": attn[:, P:]},
        non_tensors={"data_source": np.array(["arith"] * n, dtype=object),
                     "reward_model": np.array([{"ground_truth": g, "style": "rule"} for g in GOLDS], dtype=object),
                     "extra_info": np.array([{"question": q, "index": i} for i, q in enumerate(QUESTIONS)],
                                            dtype=object),
                     "uid": np.array(["a", "a", "b", "b"], dtype=object)})


# 1. verl's own reward-loop NaiveRewardManager, loaded by verl from our overrides, calls compute_score
from verl.trainer.ppo.reward import load_reward_manager

for use_async in (False, True):
    cfg = verl_config(overrides(SPEC, "outcome", use_async=use_async))
    manager = load_reward_manager(cfg, tok)
    assert type(manager).__name__ == "NaiveRewardManager", type(manager)
    data = data_proto()
    # as verl's RewardLoopWorker.compute_score_batch: one task per response, gathered, on the manager's loop
    async def run_all(manager=manager, data=data):
        return await asyncio.gather(*[manager.run_single(data[i:i + 1]) for i in range(len(data))])
    outs = manager.loop.run_until_complete(run_all())
    scores = [o["reward_score"] for o in outs]
    assert scores == [1.1, 0.1, 0.0, 1.1], scores
    info = outs[0]["reward_extra_info"]
    assert info["math.accuracy"] == 1.0 and info["format.boxed"] == 1.0 and info["rewardkit/none"] == 0.0, info
    rm = manager.assemble_rm_scores(data, scores)
    assert rm.shape == data.batch["responses"].shape and math.isclose(float(rm.sum()), sum(scores), rel_tol=1e-6)
    print("naive", "async" if use_async else "sync", scores)

# the older top-level custom_reward_function (a file path), as verl's migration moves it
from verl.experimental.reward_loop import migrate_legacy_reward_impl

cfg = migrate_legacy_reward_impl(verl_config(overrides(SPEC, "outcome", legacy=True)))
manager = load_reward_manager(cfg, tok)
data = data_proto()
assert manager.loop.run_until_complete(manager.run_single(data[0:1]))["reward_score"] == 1.1
print("legacy custom_reward_function OK")

# 2. the old BatchRewardManager with the batch function
from verl.workers.reward_manager.batch import BatchRewardManager
from rewardkit.integrations.verl import compute_score_batch

bm = BatchRewardManager(tok, 0, compute_score_batch, spec=SPEC)
out = bm(data_proto(), return_dict=True)
last = out["reward_tensor"].sum(-1).tolist()
assert [round(x, 6) for x in last] == [1.1, 0.1, 0.0, 1.1], last
assert out["reward_extra_info"]["math.accuracy"] == [1.0, 0.0, 0.0, 1.0]
print("batch manager", last)
print("OK")

# 3. the dense manager on a PRM spec: step scores on the tokens that end the steps
from rewardkit.integrations.verl import get_scorer
from rewardkit.integrations import verl_dense
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage

cfg = verl_config(overrides(PRM_SPEC, "dense"))
manager = load_reward_manager(cfg, tok)
assert type(manager).__name__ == "RewardkitDenseRewardManager", type(manager)
data = data_proto()
outs = manager.loop.run_until_complete(asyncio.gather(*[manager.run_single(data[i:i + 1]) for i in range(len(data))]))
# what verl's agent loop builds from these: rm_scores with reward_score on the last valid token, the
# extra infos stacked into non_tensor_batch (AgentLoopWorker._postprocess)
P = data.batch["prompts"].shape[1]
lengths = data.batch["attention_mask"][:, P:].sum(-1)
rm = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
rm[torch.arange(len(data)), lengths - 1] = torch.tensor([o["reward_score"] for o in outs])
infos = [o["reward_extra_info"] for o in outs]
keys = list(infos[0])
gen = DataProto.from_dict(tensors={**{k: data.batch[k] for k in ("prompts", "responses", "attention_mask")},
                                   "rm_scores": rm},
                          non_tensors={k: np.array([i[k] for i in infos]) for k in keys},
                          meta_info={"reward_extra_keys": keys})
prm = get_scorer(spec=PRM_SPEC).rewards["prm.score"]
expected_rows = []
for i in range(len(data)):
    L = int(lengths[i])
    ids = data.batch["responses"][i, :L].tolist()
    text = tok.decode(ids, skip_special_tokens=True)
    steps = prm.score_steps([QUESTIONS[i]], [text])[0]
    row = [0.0] * data.batch["responses"].shape[1]
    for score, (start, end) in zip(steps.scores, steps.spans):
        # the token ending a step: the first whose decoded prefix reaches the step's last character
        k = next(k for k in range(L) if len(tok.decode(ids[:k + 1], skip_special_tokens=True)) >= end)
        row[k] += 0.5 * score
    outcome = 1.0 * infos[i]["math.accuracy"]
    row[L - 1] += outcome
    expected_rows.append(row)
    assert infos[i]["score"] == outcome + 0.5 * infos[i]["prm.score"], infos[i]
dense = verl_dense.apply_dense_rewards(copy.deepcopy(gen), "dense")
got = dense.batch["rm_scores"]
assert torch.allclose(got, torch.tensor(expected_rows), atol=1e-6), (got, expected_rows)
assert not [k for k in dense.non_tensor_batch if k.startswith("rewardkit_dense/")]
assert all(not k.startswith("rewardkit_dense/") for k in dense.meta_info["reward_extra_keys"])
n_steps = [int((torch.tensor(r) != 0).sum()) for r in expected_rows]
print("dense rows: nonzero tokens per response", n_steps)

# PPO with a critic: verl's GAE on the dense rewards
dense.batch["token_level_rewards"] = dense.batch["rm_scores"]
dense.batch["response_mask"] = data.batch["response_mask"]
dense.batch["values"] = torch.zeros_like(dense.batch["rm_scores"])
dense.non_tensor_batch["uid"] = data.non_tensor_batch["uid"]
from verl.trainer.config import AlgoConfig
after = compute_advantage(dense, adv_estimator="gae", gamma=1.0, lam=1.0, config=AlgoConfig())
# gamma=lam=1, zero values: the advantage of token t is the sum of rewards from t on
want = torch.flip(torch.cumsum(torch.flip(dense.batch["rm_scores"], [1]), 1), [1]) * data.batch["response_mask"]
assert torch.allclose(after.batch["returns"], want, atol=1e-5)  # returns = advantages + values (0)

# 4. process supervision: DeepSeekMath advantages through verl's compute_advantage and our estimator
ps = verl_dense.apply_dense_rewards(copy.deepcopy(gen), "process_supervision", data.non_tensor_batch["uid"])
assert core_algos.get_adv_estimator_fn(verl_dense.ESTIMATOR) is verl_dense.compute_process_supervision_advantage
ps.batch["token_level_rewards"] = ps.batch["rm_scores"]
ps.batch["response_mask"] = data.batch["response_mask"]
ps.non_tensor_batch["uid"] = data.non_tensor_batch["uid"]
res = compute_advantage(ps, adv_estimator=verl_dense.ESTIMATOR, config=AlgoConfig())
# the same numbers as rewardkit's TRL hook arithmetic, computed here from the raw step scores
from rewardkit.trl import token_advantages
by_group = {}
raw = []
for i in range(len(data)):
    L = int(lengths[i])
    ids = data.batch["responses"][i, :L].tolist()
    text = tok.decode(ids, skip_special_tokens=True)
    steps = prm.score_steps([QUESTIONS[i]], [text])[0]
    ends = [next(k for k in range(L) if len(tok.decode(ids[:k + 1], skip_special_tokens=True)) >= e) + 1
            for _, e in steps.spans]
    raw.append((steps.scores, ends, L))
    by_group.setdefault(data.non_tensor_batch["uid"][i], []).extend(steps.scores)
W = data.batch["responses"].shape[1]
for i, (scores, ends, L) in enumerate(raw):
    g = by_group[data.non_tensor_batch["uid"][i]]
    mean = sum(g) / len(g)
    std = math.sqrt(sum((x - mean) ** 2 for x in g) / (len(g) - 1)) if len(g) > 1 else 0.0
    want_row = token_advantages([(x - mean) / (std + 1e-4) for x in scores], ends, L, W)
    want_row = [0.5 * v for v in want_row]
    assert torch.allclose(res.batch["advantages"][i], torch.tensor(want_row), atol=1e-5), (i, res.batch["advantages"][i], want_row)
print("process supervision OK")

# 6. DenseAgentLoopManager.generate_sequences through verl's own AgentLoopManager.generate_sequences
#    (chunking over Ray workers, concat, metrics, auto_await): the workers stand in for vLLM rollouts,
#    which need a GPU, and return the agent loop's output for their chunk
import ray

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


@ray.remote
class RolloutStandIn:
    def __init__(self, out):
        self.out = out

    def generate_sequences(self, chunk):
        idx = [int(i) for i in chunk.non_tensor_batch["index"]]
        part = self.out.select_idxs(idx)
        part.meta_info = {"metrics": [{"generate_sequences": 0.1, "tool_calls": 0.0, "compute_score": 0.01,
                                       "num_preempted": 0} for _ in idx], "reward_extra_keys": keys}
        return part


cfg = verl_config(overrides(PRM_SPEC, "dense"))
mgr = verl_dense.DenseAgentLoopManager.__new__(verl_dense.DenseAgentLoopManager)
mgr.config = cfg
prompts_in = DataProto.from_dict(tensors={"input_ids": data.batch["prompts"]},
                                 non_tensors={"uid": data.non_tensor_batch["uid"],
                                              "index": np.arange(len(data))})
mgr.agent_loop_workers = [RolloutStandIn.remote(gen), RolloutStandIn.remote(gen)]
result = mgr.generate_sequences(prompts_in)   # called from sync code, as verl's trainer does
assert torch.allclose(result.batch["rm_scores"], torch.tensor(expected_rows), atol=1e-6)
assert "timing" in result.meta_info and not [k for k in result.non_tensor_batch if k.startswith("rewardkit_dense/")]
ray.shutdown()
print("agent loop manager OK")

# 5. the overrides compose into verl's config and the classes they name load
for mode in ("outcome", "dense", "process_supervision"):
    cfg = verl_config(overrides(PRM_SPEC, mode))
    if mode != "outcome":
        from verl.utils.import_utils import load_class_from_fqn
        cls = load_class_from_fqn(cfg.actor_rollout_ref.rollout.agent.agent_loop_manager_class, "AgentLoopManager")
        assert cls is verl_dense.DenseAgentLoopManager
print("OK2")
'''
