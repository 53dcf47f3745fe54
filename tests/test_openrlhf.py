"""OpenRLHF's remote reward protocol on a real ``rewardkit serve`` (loopback) and its reward_func file.

The request and answer shapes are OpenRLHF's, as its rollout code sends and reads them
(OpenRLHF/OpenRLHF@3c3be6234e0cb353e76bb8019947db9dfe99fca7: ``openrlhf/utils/agent.py``
``SingleTurnAgentExecutor._fetch_rewards_via_http`` posts ``{"query", "prompts", "labels"}`` for one
rollout at a time and reads ``rewards``/``scores``/``extra_logs``; ``_fetch_rewards_via_func`` loads
``reward_func`` from a ``.py`` path with ``spec_from_file_location`` and calls it in a thread;
``openrlhf/trainer/ppo_utils/samples_generator.py`` turns each value into a tensor). OpenRLHF itself
needs CUDA builds (vLLM, DeepSpeed, flash-attn) and does not install on this CPU machine.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from rewardkit.integrations import openrlhf as rk_openrlhf
from rewardkit.serve.server import RewardServer, ServerConfig, start_server

SPEC = {"math.accuracy": 1.0, "format.boxed": 0.1}
# what OpenRLHF sends: query = decode(prompt_ids + response_ids, skip_special_tokens=False)
PROMPT = "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n"
RIGHT = PROMPT + "6*7=42, so \\boxed{42}<|im_end|>"
WRONG = PROMPT + "6*7=41, so \\boxed{41}<|im_end|>"
UNBOXED = PROMPT + "It is 40.<|im_end|>"


@pytest.fixture(scope="module")
def server():
    with start_server(RewardServer.from_spec(SPEC, ServerConfig(workers="thread", max_request_rows=8,
                                                                token="s3cret", max_wait_ms=20.0))) as h:
        yield h


def post(url, body, token="s3cret"):
    return httpx.post(url + "/get_reward", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def test_get_reward_answers_openrlhf(server):
    r = post(server.url, {"query": [RIGHT, WRONG, UNBOXED], "prompts": [PROMPT] * 3, "labels": ["42"] * 3})
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == {"rewards", "scores", "extra_logs"}
    assert got["rewards"] == pytest.approx([1.1, 0.1, 0.0]) and got["scores"] == got["rewards"]
    logs = got["extra_logs"]
    assert logs["math.accuracy"] == [1.0, 0.0, 0.0] and logs["format.boxed"] == [1.0, 1.0, 0.0]
    assert logs["rewardkit/none"] == [0.0] * 3 and logs["rewardkit/prompt_missing"] == [0.0] * 3
    # OpenRLHF turns every value into a tensor: all numbers, no nulls
    for value in logs.values():
        torch.tensor([value])
    torch.tensor([got["rewards"]])


def test_one_rollout_per_request_is_batched(server):
    """OpenRLHF posts one rollout per request; concurrent requests share reward calls."""
    before = httpx.get(server.url + "/health", headers={"Authorization": "Bearer s3cret"}).json()["stats"]
    bodies = [{"query": [RIGHT if i % 2 else WRONG], "prompts": [PROMPT], "labels": ["42"]} for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda b: post(server.url, b).json(), bodies))
    assert [a["rewards"][0] for a in answers] == pytest.approx([1.1 if i % 2 else 0.1 for i in range(24)])
    after = httpx.get(server.url + "/health", headers={"Authorization": "Bearer s3cret"}).json()["stats"]
    calls = after["math.accuracy"]["batches"] - before["math.accuracy"]["batches"]
    assert after["math.accuracy"]["requests"] - before["math.accuracy"]["requests"] == 24
    assert calls < 24  # merged


def test_labels_missing_prompts_and_no_applicable_reward(server):
    # a prompt that is not in its query is counted and scores 0, never scored on the whole query
    r = post(server.url, {"query": ["\\boxed{42}", RIGHT], "prompts": ["What is 1+1?", PROMPT],
                          "labels": [None, "42"]}).json()
    assert r["rewards"] == pytest.approx([0.0, 1.1])
    assert r["extra_logs"]["rewardkit/prompt_missing"] == [1.0, 0.0]
    assert r["extra_logs"]["rewardkit/none"] == [1.0, 0.0]


def test_errors_are_the_servers(server):
    assert post(server.url, {"query": [RIGHT], "prompts": [PROMPT], "labels": ["42"]}, token="x").status_code == 401
    assert post(server.url, {"query": [RIGHT], "prompts": [], "labels": ["42"]}).status_code == 422
    assert post(server.url, {"query": "x", "prompts": [PROMPT]}).status_code == 422
    assert post(server.url, {"query": [RIGHT] * 9, "prompts": [PROMPT] * 9, "labels": ["42"] * 9}).status_code == 413
    empty = post(server.url, {"query": [], "prompts": [], "labels": []}).json()
    assert empty["rewards"] == [] and empty["scores"] == []


def test_label_column_and_process_workers(tmp_path):
    """``rewardkit serve --label-column answer`` as a real process, default (process) workers."""
    from rewardkit.testing import free_port, wait_for_health

    spec = tmp_path / "rewards.yaml"
    spec.write_text("rewards:\n  acc:\n    reward: math.accuracy\n    gold_column: answer\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rewardkit.cli", "serve", "--spec", str(spec), "--port", str(port),
                             "--label-column", "answer", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc)
        r = httpx.post(f"http://127.0.0.1:{port}/get_reward", timeout=60,
                       json={"query": [RIGHT, WRONG], "prompts": [PROMPT] * 2, "labels": ["42", "42"]})
        assert r.status_code == 200 and r.json()["rewards"] == [1.0, 0.0], r.text
    finally:
        proc.terminate()
        proc.wait(30)


def _load_like_openrlhf(path: Path):
    spec = importlib.util.spec_from_file_location("reward_func", str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func


def test_reward_func_file(tmp_path, monkeypatch):
    spec = tmp_path / "rewards.yaml"
    spec.write_text("rewards:\n  math.accuracy: 1.0\n  format.boxed: 0.1\n")
    monkeypatch.setenv("REWARDKIT_SPEC", str(spec))
    fn = _load_like_openrlhf(Path(rk_openrlhf.__file__))
    out = fn([RIGHT, WRONG, UNBOXED], [PROMPT] * 3, ["42"] * 3)
    assert torch.allclose(out["rewards"], torch.tensor([1.1, 0.1, 0.0])) and out["scores"] is not out["rewards"]
    assert out["extra_logs"]["math.accuracy"].tolist() == [1.0, 0.0, 0.0]
    # OpenRLHF's own call: one rollout per thread, then torch.tensor([value]) and .flatten()[0].item()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        one = list(pool.map(lambda q: fn([q], [PROMPT], ["42"]), [RIGHT, WRONG] * 8))
    assert [float(torch.tensor([o["rewards"]]).flatten()[0]) for o in one] == pytest.approx([1.1, 0.1] * 8)
    assert all(o["extra_logs"]["math.accuracy"].flatten()[0].item() in (0.0, 1.0) for o in one)
    # a two-line file of the user's own
    own = tmp_path / "my_reward.py"
    own.write_text("from rewardkit.integrations.openrlhf import make_reward_func\n"
                   f"reward_func = make_reward_func({str(spec)!r})\n")
    assert _load_like_openrlhf(own)([RIGHT], [PROMPT], ["42"])["rewards"].tolist() == pytest.approx([1.1])


def test_reward_func_needs_a_spec(monkeypatch):
    monkeypatch.delenv("REWARDKIT_SPEC", raising=False)
    monkeypatch.setattr(rk_openrlhf, "_default", None)
    with pytest.raises(RuntimeError, match="REWARDKIT_SPEC"):
        rk_openrlhf.reward_func(["q"], ["q"], ["1"])


def test_cut_response():
    assert rk_openrlhf.cut_response(RIGHT, PROMPT) == "6*7=42, so \\boxed{42}<|im_end|>"
    assert rk_openrlhf.cut_response("<s>" + RIGHT, PROMPT) == "6*7=42, so \\boxed{42}<|im_end|>"  # a BOS before
    assert rk_openrlhf.cut_response("abc", "x") is None
    assert rk_openrlhf.cut_response("abc", "") == "abc"
