"""rewardkit.workers: real worker processes started from a target file, talked to, timed out, killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rewardkit.workers import (
    WorkerCancelled,
    WorkerDied,
    WorkerProcess,
    WorkerStartError,
    WorkerTimeout,
    wait_any,
)

TARGET = '''
import os, sys, time

from rewardkit.workers import Reply  # the worker loaded this module by path: no `import rewardkit`


def setup(init):
    if init == "raise":
        raise ValueError("no model here")
    if init == "exit":
        os._exit(3)
    if init == "slow":
        time.sleep(60)
    return handle


def handle(message, reply: Reply):
    if message == "sleep":
        time.sleep(60)
    elif message == "die":
        os._exit(5)
    elif message == "modules":
        reply(sorted(m for m in ("rewardkit", "rewardkit.answer_check") if m in sys.modules))
    else:
        reply(("got", message))
        reply(("twice", message))
'''


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("target") / "target.py"
    path.write_text(TARGET)
    return str(path)


def start(target: str, init: object = None) -> WorkerProcess:
    return WorkerProcess(target, "setup", init, name="the test worker", tag="rewardkit_test_worker")


def soon(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


def test_messages_and_replies_in_order_without_importing_rewardkit(target):
    w = start(target)
    try:
        w.wait_ready(60)
        w.send("a")
        assert w.receive(soon()) == ("got", "a")
        assert w.receive(soon()) == ("twice", "a")
        w.send("modules")
        assert w.receive(soon()) == []
        assert b"rewardkit_test_worker" in Path(f"/proc/{w.pid}/cmdline").read_bytes()
    finally:
        w.stop()
    assert w.proc.returncode == 0  # it left on its own when the pipe closed


def test_non_blocking_reads(target):
    w = start(target)
    try:
        deadline = soon(60)
        while not w.poll_ready():
            assert time.monotonic() < deadline
            wait_any([w], 1.0)
        w.send("b")
        got: list[object] = []
        while len(got) < 2:
            assert wait_any([w], 30.0) == [w]
            got += w.messages()
        assert got == [("got", "b"), ("twice", "b")]
    finally:
        w.kill()


def test_setup_error_is_a_start_error_with_its_message(target):
    w = start(target, "raise")
    with pytest.raises(WorkerStartError, match="the test worker failed to start: ValueError: no model here"):
        w.wait_ready(60)
    assert not w.alive()


def test_exit_on_start_is_a_start_error_with_its_exit_code(target):
    w = start(target, "exit")
    with pytest.raises(WorkerStartError, match=r"exited on start \(exit code 3\)"):
        w.wait_ready(60)


def test_missing_function_is_a_start_error(target):
    w = WorkerProcess(target, "no_such_function", name="the test worker", tag="rewardkit_test_worker")
    with pytest.raises(WorkerStartError, match="AttributeError"):
        w.wait_ready(60)


def test_start_timeout_kills_it(target):
    w = start(target, "slow")
    t0 = time.monotonic()
    with pytest.raises(WorkerStartError, match="did not start within 2 s"):
        w.wait_ready(2.0)
    assert time.monotonic() - t0 < 10
    assert w.proc.returncode == -signal.SIGKILL


def test_deadline_then_kill(target):
    w = start(target)
    w.wait_ready(60)
    w.send("sleep")
    t0 = time.monotonic()
    with pytest.raises(WorkerTimeout):
        w.receive(t0 + 1.0)
    assert 1.0 <= time.monotonic() - t0 < 5
    assert w.alive()  # a timeout leaves the decision to the caller
    w.kill()
    assert w.proc.returncode == -signal.SIGKILL


def test_cancelled_wait(target):
    w = start(target)
    try:
        w.wait_ready(60)
        w.send("sleep")
        t0 = time.monotonic()
        with pytest.raises(WorkerCancelled):
            w.receive(t0 + 60, cancelled=lambda: time.monotonic() > t0 + 0.5)
        assert time.monotonic() - t0 < 5
    finally:
        w.kill()


def test_death_while_working_and_killed_from_outside(target):
    w = start(target)
    w.wait_ready(60)
    w.send("die")
    with pytest.raises(WorkerDied) as died:
        w.receive(soon())
    assert died.value.exit_code == 5

    w = start(target)
    w.wait_ready(60)
    os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(WorkerDied) as died:
        w.receive(soon())
    assert died.value.exit_code == -signal.SIGKILL


def test_a_script_that_starts_a_worker_is_not_run_again(target, tmp_path):
    marker = tmp_path / "runs.txt"
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from rewardkit.workers import WorkerProcess

        with open({str(marker)!r}, "a") as f:
            f.write("run\\n")
        w = WorkerProcess({target!r}, "setup", name="w", tag="rewardkit_test_worker")
        w.wait_ready(60)
        w.send("x")
        print(w.receive(time.monotonic() + 30))
        w.stop()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('got', 'x')"
    assert marker.read_text() == "run\n"
