"""rewardkit serve: real uvicorn servers on loopback, real HTTP clients, no mocks."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rewardkit import Reward, compose, get_reward
from rewardkit.reward import Sample
from rewardkit.serve import (
    CircuitBreaker,
    CircuitOpenError,
    RemoteProcessReward,
    RemoteReward,
    RemoteRewardError,
    RemoteStepScorer,
    RewardServer,
    ServerConfig,
    start_server,
)
from rewardkit.testing import free_port, wait_for_health


class LengthPlusBonus(Reward):
    """len(text) / 100 + bonus column; None when the text says NONE; raises on BOOM."""

    def score(self, sample: Sample):
        if "BOOM" in sample.text:
            raise ValueError(f"cannot score {sample.text!r}")
        if "NONE" in sample.text:
            return None
        return len(sample.text) / 100 + float(sample.row.get("bonus", 0.0))


class Slow(Reward):
    def __init__(self, delay: float, **kw):
        super().__init__(**kw)
        self.delay = delay

    def score(self, sample: Sample):
        time.sleep(self.delay)
        return 1.0


@pytest.fixture
def server():
    srv = RewardServer({"len": LengthPlusBonus(name="len"), "boxed": get_reward("format.boxed"),
                        "acc": get_reward("math.accuracy")}, ServerConfig(max_wait_ms=20))
    with start_server(srv) as handle:
        yield handle


def test_remote_values_equal_local_values(server):
    prompts = ["What is 1+2?", "What is 2+2?", "x"]
    completions = ["so \\boxed{3}", "\\boxed{5}", [{"role": "assistant", "content": "\\boxed{7}"}]]
    gold = ["3", "4", "7"]
    local = compose({"acc": {"reward": "math.accuracy"}, "boxed": {"reward": "format.boxed"}}).score(
        prompts, completions, solution=gold)
    assert RemoteReward(server.url, "acc")(prompts, completions, solution=gold) == local["acc"] == [1.0, 0.0, 1.0]
    assert RemoteReward(server.url, "boxed")(prompts, completions) == local["boxed"] == [1.0, 1.0, 1.0]
    # hand-computed: len/100 + bonus
    got = RemoteReward(server.url, "len")(["p", "p"], ["abcd", "NONE"], bonus=[1.0, 2.0])
    assert got == [pytest.approx(1.04), None]


def test_health_and_listing(server):
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok"
    assert h["rewards"] == {"len": "outcome", "boxed": "outcome", "acc": "outcome"}
    assert set(h["queues"]) == {"len", "boxed", "acc"}
    listed = httpx.get(server.url + "/v1/rewards").json()
    assert [d["name"] for d in listed] == ["len", "boxed", "acc"]
    assert RemoteReward(server.url, "len").health()["status"] == "ok"


def test_malformed_requests_get_clear_errors(server):
    r = httpx.post(server.url + "/v1/score", json={"reward": "nope", "prompts": [], "completions": []})
    assert r.status_code == 404 and "not served here" in r.json()["error"] and "len" in r.json()["error"]
    r = httpx.post(server.url + "/v1/score", json={"reward": "len", "prompts": ["a"], "completions": ["a", "b"]})
    assert r.status_code == 422 and "1 prompts but 2 completions" in r.json()["error"]
    r = httpx.post(server.url + "/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = httpx.post(server.url + "/v1/score", json={"reward": "len", "prompts": ["a"], "completions": ["a"],
                                                   "columns": {"bonus": [1, 2]}})
    assert r.status_code == 422 and "bonus" in r.json()["error"]
    # a missing gold column is the reward's own input error: 422 with its message, never a 0.0
    with pytest.raises(RemoteRewardError, match="solution") as info:
        RemoteReward(server.url, "acc")(["p"], ["\\boxed{1}"])
    assert info.value.status == 422


def test_reward_exception_fails_only_its_request(server):
    """Concurrent requests are merged into one reward call; the bad one must fail alone."""
    texts = [f"row {i}" for i in range(40)]
    texts[17] = "BOOM here"
    client = RemoteReward(server.url, "len", retries=0)

    def one(t):
        try:
            return client(["p"], [t])[0]
        except RemoteRewardError as exc:
            return exc

    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(one, texts))
    for t, res in zip(texts, results):
        if t.startswith("BOOM"):
            assert isinstance(res, RemoteRewardError) and res.status == 500 and "BOOM" in str(res)
        else:
            assert res == pytest.approx(len(t) / 100)
    stats = httpx.get(server.url + "/health").json()["stats"]["len"]
    assert stats["errors"] == 1 and stats["requests"] == 40


def test_on_error_none_counts_errors_never_zero(server, log_capture):
    r = RemoteReward(server.url, "len", retries=0, on_error="none", name="remote_len")
    out = r(["p"] * 3, ["ok", "BOOM", "NONE"], **log_capture.kwargs())
    # one request holds all three rows: the reward raised, so the whole request is an error -> None
    assert out == [None, None, None]
    assert log_capture.metrics["rewardkit/remote_len/errors"] == [3.0]
    assert log_capture.metrics["rewardkit/remote_len/none"] == [3.0]
    assert log_capture.metrics["rewardkit/remote_len/remote_circuit_open"] == [0.0]


def test_batching_merges_concurrent_requests(server):
    client = RemoteReward(server.url, "len")
    texts = [f"text number {i}" for i in range(64)]
    with ThreadPoolExecutor(16) as ex:
        got = list(ex.map(lambda t: client(["p"], [t])[0], texts))
    assert got == [pytest.approx(len(t) / 100) for t in texts]
    stats = httpx.get(server.url + "/health").json()["stats"]["len"]
    assert stats["requests"] == 64 and stats["rows"] == 64
    assert stats["batches"] < 64 and stats["max_batch_rows"] > 1


def test_queue_full_answers_503_and_client_retries():
    srv = RewardServer({"slow": Slow(0.3, name="slow")}, ServerConfig(queue_size=1, max_batch_rows=1, max_wait_ms=0))
    with start_server(srv) as h:
        body = {"reward": "slow", "prompts": ["p"], "completions": ["x"]}
        with ThreadPoolExecutor(5) as ex:
            codes = list(ex.map(lambda _: httpx.post(h.url + "/v1/score", json=body, timeout=30), range(5)))
        statuses = sorted(r.status_code for r in codes)
        assert 503 in statuses and 200 in statuses
        rejected = [r for r in codes if r.status_code == 503]
        assert rejected[0].headers["retry-after"] == "1" and rejected[0].json()["retryable"] is True
        # the client backs off and retries until the queue has room: every row gets its value
        client = RemoteReward(h.url, "slow", retries=20, backoff_s=0.1, max_backoff_s=0.3)
        with ThreadPoolExecutor(4) as ex:
            vals = list(ex.map(lambda _: client(["p"], ["x"])[0], range(4)))
        assert vals == [1.0] * 4
        assert h.server.batchers["slow"].stats.rejected >= 2


def test_request_timeout_answers_504():
    srv = RewardServer({"slow": Slow(1.0, name="slow")}, ServerConfig(request_timeout_s=0.2))
    with start_server(srv) as h:
        with pytest.raises(RemoteRewardError, match="504") as info:
            RemoteReward(h.url, "slow", retries=0)(["p"], ["x"])
        assert info.value.status == 504
        assert h.server.batchers["slow"].stats.timeouts == 1


def test_circuit_breaker_opens_fails_fast_and_recovers():
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}"
    r = RemoteReward(url, "len", retries=1, backoff_s=0.01, breaker_threshold=2, breaker_reset_s=0.5, timeout=2)
    for _ in range(2):
        with pytest.raises(RemoteRewardError, match="gave up after 2 attempts"):
            r(["p"], ["abc"])
    assert r.breaker.state == "open"
    t0 = time.perf_counter()
    with pytest.raises(CircuitOpenError, match="circuit open"):
        r(["p"], ["abc"])
    assert time.perf_counter() - t0 < 0.1  # no network, no backoff
    # the server comes up on that port; after reset_after_s one trial call closes the circuit
    srv = RewardServer({"len": LengthPlusBonus(name="len")})
    with start_server(srv, port=port):
        time.sleep(0.6)
        assert r(["p"], ["abc"]) == [pytest.approx(0.03)]
        assert r.breaker.state == "closed" and r.breaker.times_opened == 1


def test_circuit_breaker_states_with_a_clock():
    now = [0.0]
    b = CircuitBreaker(threshold=3, reset_after_s=10, clock=lambda: now[0])
    for _ in range(2):
        b.before_call()
        b.record_failure()
    assert b.state == "closed"
    b.before_call()
    b.record_failure()
    assert b.state == "open"
    now[0] = 9.9
    with pytest.raises(CircuitOpenError):
        b.before_call()
    now[0] = 10.0
    b.before_call()  # the trial
    assert b.state == "half_open"
    with pytest.raises(CircuitOpenError, match="trial"):
        b.before_call()  # only one trial at a time
    b.record_failure()  # the trial failed: open again for another period
    assert b.state == "open"
    now[0] = 20.5
    b.before_call()
    b.record_success()
    assert b.state == "closed" and b.failures == 0


def test_remote_reward_pickles_after_use(server):
    r = RemoteReward(server.url, "len")
    assert r(["p"], ["ab"]) == [pytest.approx(0.02)]
    r2 = pickle.loads(pickle.dumps(r))
    assert r2._lazy_client is None and r2(["p"], ["abc"]) == [pytest.approx(0.03)]


def test_remote_reward_through_registry_and_compose(server):
    rs = compose({"len_remote": {"reward": "remote.reward", "url": server.url, "reward_name": "len"}})
    assert rs["len_remote"].kind == "outcome"
    assert rs.score(["p"], ["abcde"])["len_remote"] == [pytest.approx(0.05)]


def test_load_2000_requests_32_concurrent_no_lost_or_mismatched_results(server):
    client = RemoteReward(server.url, "len", retries=5)
    n = 2000
    jobs = []
    for i in range(n):
        rows = 1 + i % 3
        texts = [f"req{i}-row{j}-" + "x" * ((i * 7 + j) % 50) for j in range(rows)]
        bonus = [float(i * 10 + j) for j in range(rows)]
        jobs.append((texts, bonus))

    def run(job):
        texts, bonus = job
        return client(["p"] * len(texts), texts, bonus=bonus)

    with ThreadPoolExecutor(32) as ex:
        results = list(ex.map(run, jobs))
    mismatched = [i for i, ((texts, bonus), got) in enumerate(zip(jobs, results))
                  if got != [pytest.approx(len(t) / 100 + b) for t, b in zip(texts, bonus)]]
    assert len(results) == n and not mismatched
    stats = httpx.get(server.url + "/health").json()["stats"]["len"]
    assert stats["requests"] == n and stats["rows"] == sum(len(t) for t, _ in jobs)
    assert stats["errors"] == 0 and stats["timeouts"] == 0
    assert stats["batches"] < n  # concurrent requests were merged


def test_prm_step_scorer_endpoint_matches_local_scorer(tiny_prm_path):
    from rewardkit.prm import PRMReward, RemoteScorer, TaggedScorer

    srv = RewardServer.from_spec({"prm": {"reward": "prm.score", "model": str(tiny_prm_path), "head": "token_cls"}})
    prompts, steps = ["What is 2+2?", "q"], [["2+2 = 4", "so 4"], ["one step"]]
    local = TaggedScorer(str(tiny_prm_path), head="token_cls").score(prompts, steps)
    with start_server(srv) as h:
        remote = RemoteStepScorer(h.url, "prm").score(prompts, steps)
        assert remote == [pytest.approx(row) for row in local]
        # the core client speaks the same protocol
        assert RemoteScorer(h.url + "/v1/steps/prm").score(prompts, steps) == [pytest.approx(r) for r in local]
        # a PRMReward built on the remote scorer, and the remote process reward, match the local reward
        text = "2+2 = 4\n\nso the answer is 4"
        loc = PRMReward(TaggedScorer(str(tiny_prm_path), head="token_cls"), reducer="min")
        want = loc(["What is 2+2?"], [text])
        via_scorer = PRMReward(RemoteStepScorer(h.url, "prm"), reducer="min")
        assert via_scorer(["What is 2+2?"], [text]) == [pytest.approx(want[0])]
        rp = RemoteProcessReward(h.url, "prm")
        assert rp(["What is 2+2?"], [text]) == [pytest.approx(want[0])]
        assert rp.last_step_scores[0].spans == loc.last_step_scores[0].spans
        assert rp.last_step_scores[0].scores == pytest.approx(loc.last_step_scores[0].scores)
        r = httpx.post(h.url + "/v1/steps/nope", json={"prompts": [], "steps": []})
        assert r.status_code == 404
        r = httpx.post(h.url + "/v1/steps/prm", json={"prompts": ["a"], "steps": ["not a list"]})
        assert r.status_code == 422


def test_remote_reward_in_a_real_grpo_run(server, tiny_model_path, tmp_path):
    from trl import GRPOTrainer

    from rewardkit.testing import tiny_grpo_config, tiny_prompt_dataset

    remote = RemoteReward(server.url, "len", name="remote_len")
    seen = []

    class Spy(Reward):
        def score(self, sample):
            seen.append(sample.text)
            return 0.0

    trainer = GRPOTrainer(model=str(tiny_model_path), reward_funcs=[remote, Spy(name="spy")],
                          args=tiny_grpo_config(tmp_path, max_steps=1), train_dataset=tiny_prompt_dataset(8))
    trainer.train()
    logged = [h for h in trainer.state.log_history if "rewards/remote_len/mean" in h]
    assert logged, trainer.state.log_history
    # the logged mean is the mean of len/100 over the same completions, computed here
    want = sum(len(t) / 100 for t in seen) / len(seen)
    assert logged[0]["rewards/remote_len/mean"] == pytest.approx(want, rel=1e-4)


def test_cli_serve_subprocess_and_lazy_imports(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rewardkit.cli", "serve", "--reward", "format.boxed",
                             "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, proc)
        assert RemoteReward(url, "format.boxed")(["p", "p"], ["\\boxed{1}", "none"]) == [1.0, 0.0]
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # import rewardkit and list everything: no server or HTTP library gets imported
    code = ("import sys, rewardkit; from rewardkit.plugins import list_commands; rewardkit.list_rewards();"
            "assert 'serve' in list_commands();"
            "bad=[m for m in ('fastapi','uvicorn','httpx','starlette') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_thread_safety_of_one_client_across_threads(server):
    client = RemoteReward(server.url, "len")
    errors = []

    def worker(k):
        for i in range(20):
            t = f"{k}-{i}" * (1 + i % 4)
            got = client(["p"], [t])[0]
            if got != pytest.approx(len(t) / 100):
                errors.append((t, got))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
