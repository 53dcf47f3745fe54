"""The answer-check worker pool: a deadline that holds on every thread, recovery, pickling, forks.

Real worker processes throughout. ``\\boxed{10^{10^{10}}}`` is the pathological answer: sympy
computes the ten-billion-digit power in one C call that holds the GIL for minutes, which no
signal or thread timeout can interrupt.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from pathlib import Path

import pytest

import rewardkit
from rewardkit.answer_check import TIMEOUT, Job, check_here, prepare, read_gold, shared_pool
from rewardkit.reward import Sample
from rewardkit.testing import LogCapture

HANG = "\\boxed{10^{10^{10}}}"
DEADLINE = 1.5
SLACK = 4.0  # a shared, loaded CI machine: a kill and a reply take well under this


@pytest.fixture(scope="module")
def acc():
    reward = rewardkit.get_reward("math.accuracy", timeout=DEADLINE, workers=2)
    assert reward(["q"], ["\\boxed{1}"], solution=["1"]) == [1.0]  # workers started before timing
    return reward


def worker_pids() -> list[int]:
    me = str(os.getpid())
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[1] == me and b"rewardkit_answer_worker" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def call_with_hang(acc):
    cap = LogCapture()
    start = time.monotonic()
    values = acc(["q"] * 3, ["\\boxed{5}", HANG, "\\boxed{6}"], solution=["5", "5", "5"], **cap.kwargs())
    return values, time.monotonic() - start, cap


def test_hang_on_the_main_thread_is_none_within_the_deadline(acc):
    assert threading.current_thread() is threading.main_thread()
    values, took, cap = call_with_hang(acc)
    assert values == [1.0, None, 0.0]
    assert took < DEADLINE + SLACK
    assert cap.metrics["rewardkit/math.accuracy/timeouts"] == [1.0]
    assert cap.metrics["rewardkit/math.accuracy/none"] == [1.0]
    assert len(worker_pids()) <= 2  # the stuck worker was killed, not left burning a CPU
    assert acc(["q"], ["\\boxed{7}"], solution=["7"]) == [1.0]  # the pool recovered


def test_hang_on_another_thread_is_none_within_the_deadline(acc):
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=call_with_hang(acc)))
    thread.start()
    thread.join(DEADLINE + SLACK + 10)
    assert not thread.is_alive()
    values, took, cap = out["result"]
    assert values == [1.0, None, 0.0]
    assert took < DEADLINE + SLACK
    assert cap.metrics["rewardkit/math.accuracy/timeouts"] == [1.0]
    assert acc(["q"], ["\\boxed{8}"], solution=["8"]) == [1.0]


def test_score_one_sample_times_out_to_none_and_counts(acc):
    before = acc.counters["timeouts"]
    sample = Sample(index=0, prompt="q", text=HANG, completion=HANG, completion_ids=None, row={"solution": "5"})
    assert acc.score(sample) is None
    assert acc.counters["timeouts"] == before + 1
    sample.text = "\\boxed{5}"
    assert acc.score(sample) == 1.0


def test_threads_share_the_pool(acc):
    results = {}

    def work(k):
        results[k] = acc(["q"] * 4, [f"\\boxed{{{k}}}", f"\\boxed{{{k + 1}}}"] * 2, solution=[str(k)] * 4)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [1.0, 0.0, 1.0, 0.0] for k in range(4)}


def test_pickled_reward_has_no_pool_state_and_works(acc):
    copy = pickle.loads(pickle.dumps(acc))
    assert (copy.timeout, copy.workers) == (DEADLINE, 2)
    assert copy(["q"], ["\\boxed{\\frac{1}{2}}"], solution=["0.5"]) == [1.0]


def _score_in_child(queue):
    queue.put(rewardkit.get_reward("math.accuracy", workers=2)(["q"], ["\\boxed{3}"], solution=["3"]))


def test_a_forked_child_gets_its_own_pool(acc):
    parent_pool = shared_pool(2)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=120) == [1.0]
    child.join(30)
    assert child.exitcode == 0
    assert shared_pool(2) is parent_pool
    assert acc(["q"], ["\\boxed{4}"], solution=["4"]) == [1.0]  # the parent's workers are untouched


def test_pool_outcomes_and_dedupe():
    jobs = [prepare(read_gold("5"), "\\boxed{5}"), prepare(read_gold("5"), HANG)]
    assert all(isinstance(j, Job) for j in jobs)
    assert shared_pool(2).run(jobs + jobs[:1], timeout=DEADLINE) == [1.0, TIMEOUT, 1.0]
    assert check_here(jobs[0]) == 1.0  # the in-thread path the workers run


def test_config_is_checked():
    with pytest.raises(ValueError, match="timeout"):
        rewardkit.get_reward("math.accuracy", timeout=0)


def test_a_worker_killed_from_outside_is_replaced(acc):
    import signal

    pids = worker_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    golds = [str(k) for k in range(6)]
    assert acc(["q"] * 6, [f"\\boxed{{{g}}}" for g in golds], solution=golds) == [1.0] * 6


def test_workers_killed_before_they_are_ready_are_replaced(acc):
    import signal

    values, _, _ = call_with_hang(acc)  # the stuck worker's replacement is still importing math-verify
    assert values == [1.0, None, 0.0]
    pids = worker_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    golds = [str(k) for k in range(6)]
    assert acc(["q"] * 6, [f"\\boxed{{{g}}}" for g in golds], solution=golds) == [1.0] * 6
