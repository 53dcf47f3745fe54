"""The core (registry, rewards, compose, PRM scoring, serve, the verl/OpenRLHF integrations) without TRL.

verl pins transformers and its fsdp/megatron extras pin an old trl; OpenRLHF pins its own versions.
So ``pip install rewardkit rewardkit-<method>`` must not need TRL, which lives in the ``trl`` extra.

Two checks: a fast one in this environment with ``import trl`` made to fail (every core module, a
batch through every built-in reward, a plugin reward, a PRM, verl's function and a served reward),
and a slow one that installs the core and one plugin into a fresh virtual environment that has no
TRL at all (``pip`` with a constraint that no TRL release satisfies) and scores a batch there.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rewardkit

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; CI runs 3.11

ROOT = Path(__file__).resolve().parents[1]

BLOCK_TRL = textwrap.dedent("""
    import importlib.abc, sys

    class _NoTRL(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "trl" or name.startswith("trl."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, _NoTRL())
    for _m in [m for m in sys.modules if m == "trl" or m.startswith("trl.")]:
        del sys.modules[_m]
""")

# what runs with TRL blocked (in this environment) and in the fresh venv; prints OK at the end
SCORE_BATCH = textwrap.dedent("""
    import importlib, json, math, pkgutil, sys
    import rewardkit
    from rewardkit import compose

    errors = {p.name: p.error.splitlines()[0] for p in rewardkit.list_plugins() if p.error}
    allowed_failures = set(json.loads(sys.argv[1]))  # plugins that declare trl as a dependency
    assert set(errors) <= allowed_failures, errors

    # every core module imports (the TRL integration is allowed to need TRL)
    skip = ("rewardkit.trl",)
    failed = {}
    for m in pkgutil.walk_packages(rewardkit.__path__, "rewardkit."):
        if m.name.startswith(skip):
            continue
        try:
            importlib.import_module(m.name)
        except ImportError as exc:
            failed[m.name] = repr(exc)
    # modules needing an extra this environment lacks; verl_dense needs verl itself
    optional = set(json.loads(sys.argv[2])) | {"rewardkit.integrations.verl_dense"}
    assert set(failed) <= optional, failed

    rewards = compose({"math.accuracy": 1.0, "format.boxed": 0.1, "format.think": 0.1,
                       "length.overlong": {"weight": 0.5, "max_completion_len": 10, "soft_punish_cache": 4},
                       "rewardmap.plus": 0.01})
    completions = ["<think>\\n2+2</think> so \\\\boxed{4}", "the answer is \\\\boxed{5}", "no box"]
    out = rewards.score(["q"] * 3, completions, completion_ids=[[1] * 6, [1] * 8, [1] * 11],
                        solution=["4", "4", "4"], type=["Counting2"] * 3, answer=["4", "4", "4"],
                        difficulty_city=["easy"] * 3)
    assert out["math.accuracy"] == [1.0, 0.0, 0.0], out
    assert out["format.boxed"] == [1.0, 1.0, 0.0], out
    assert out["format.think"] == [1.0, 0.0, 0.0], out
    assert out["length.overlong"] == [0.0, -0.5, -1.0], out
    assert out["rewardmap.plus"][0] > 0 and out["rewardmap.plus"][1] == 0.0, out
    want = [1.0 + 0.1 + 0.1 + 0.01 * out["rewardmap.plus"][0], 0.1 - 0.25, -0.5]
    assert all(math.isclose(a, b) for a, b in zip(out["total"], want)), (out["total"], want)

    from rewardkit.integrations.verl import compute_score
    r = compute_score("gsm8k", "so \\\\boxed{4}", "4", {"question": "2+2?"},
                      spec={"math.accuracy": 1.0, "format.boxed": 0.1})
    assert r == {"score": 1.1, "math.accuracy": 1.0, "format.boxed": 1.0, "rewardkit/none": 0.0}, r

    if len(sys.argv) > 3:  # a tiny PRM and a served reward (this environment has the models and extras)
        prm = rewardkit.get_reward("prm.score", model=sys.argv[3], reducer="last", splitter="line")
        steps = prm.score_steps(["Q"], ["a\\nb"])
        assert len(steps[0].scores) == 2 and steps[0].spans == [(0, 1), (2, 3)], steps
        import httpx
        from rewardkit.serve.server import RewardServer, ServerConfig, start_server
        with start_server(RewardServer.from_spec({"math.accuracy": 1.0}, ServerConfig(workers="thread"))) as h:
            got = httpx.post(h.url + "/v1/score", json={"reward": "math.accuracy", "prompts": ["q"],
                             "completions": ["\\\\boxed{4}"], "columns": {"solution": ["4"]}}, timeout=60).json()
        assert got["rewards"] == [1.0], got
    assert "trl" not in sys.modules
    print("OK")
""")


def _plugins_needing_trl() -> list[str]:
    names = []
    for pyproject in sorted(ROOT.glob("plugins/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        if any(dep.replace(" ", "").lower().startswith("trl") for dep in project.get("dependencies", [])):
            names.append(pyproject.parent.name)
    return names


def test_pyproject_keeps_trl_in_its_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("trl")]
    assert project["optional-dependencies"]["trl"] == ["trl>=1.16,<1.17"]
    # the set-up script (README's two commands, CI) still installs everything, TRL included
    assert '".[trl,' in (ROOT / "scripts" / "setup_env.sh").read_text()


def test_core_scores_with_trl_blocked(tmp_path):
    from rewardkit.testing import tiny_model_dir

    script = tmp_path / "score.py"
    script.write_text(BLOCK_TRL + SCORE_BATCH)
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, str(script), json.dumps(_plugins_needing_trl()), "[]",
                           str(tiny_model_dir("prm"))], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout + proc.stderr


def test_think_and_overlong_match_trl():
    """The core's copies of TRL's think_format_reward and soft overlong punishment agree with TRL."""
    trl_rewards = pytest.importorskip("trl.rewards")
    rng = random.Random(0)
    parts = ["<think>", "</think>", "\n", "a", " ", "<think>x</think>", "answer", "\\boxed{1}", "<", ">", "\r\n"]
    texts = ["", "<think></think>", "<think>\nr\n</think>\nanswer", "x<think>r</think>", "<think>a<think>b</think>",
             "<think>r</think>\n<think>", "\n<think>r</think>"]
    texts += ["".join(rng.choice(parts) for _ in range(rng.randint(0, 8))) for _ in range(400)]
    think = rewardkit.get_reward("format.think")
    assert think(["q"] * len(texts), texts) == trl_rewards.think_format_reward([[{"content": t}] for t in texts])
    for max_len, cache in [(10, 4), (10, 10), (7, 1), (100, 20)]:
        ids = [[0] * n for n in range(0, max_len + 5)]
        ours = rewardkit.get_reward("length.overlong", max_completion_len=max_len, soft_punish_cache=cache)
        theirs = trl_rewards.get_soft_overlong_punishment(max_len, cache)
        assert ours(["q"] * len(ids), ["a"] * len(ids), completion_ids=ids) == theirs(completion_ids=ids)


@pytest.mark.slow
def test_fresh_venv_without_trl_scores_a_batch(tmp_path):
    """Core + the rewardmap plugin in a plain venv with no TRL (about 2 minutes: torch comes from the
    local wheel cache, transformers/accelerate from the package index)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    no_trl = tmp_path / "no-trl.txt"
    no_trl.write_text("trl<0\n")  # no release satisfies it: anything that requires trl fails to install

    def pip(*args: str) -> None:
        proc = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(no_trl),
                               *args], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    pip("torch==2.13.0")
    # the core's and rewardmap's imports on the scoring path (datasets, evaluate, pillow, matplotlib are
    # declared but not needed to score); --no-deps below keeps pip from fetching the rest
    pip("pluggy>=1.5", "math-verify>=0.8", "pyyaml>=6", "rich>=13", "tqdm>=4.66", "transformers>=5",
        "accelerate>=1.10")
    pip("--no-deps", str(ROOT), str(ROOT / "plugins" / "rewardmap"))
    check = subprocess.run([py, "-c", "import importlib.util; print(importlib.util.find_spec('trl'))"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "None", check.stdout + check.stderr
    script = tmp_path / "score.py"
    script.write_text(SCORE_BATCH)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["REWARDKIT_LOAD_PLUGINS"] = "rewardmap"
    optional = ["rewardkit.metrics.prm_eval"]  # needs datasets (not installed here)
    proc = subprocess.run([py, str(script), json.dumps(_plugins_needing_trl()), json.dumps(optional)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout + proc.stderr
