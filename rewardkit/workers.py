"""Worker processes that can be killed: start one, talk to it over a pipe, wait with a deadline.

Work that may hang its caller (a reward spinning in C with the GIL held, a math check computing
``10^{10^{10}}``) runs in a worker process, which the caller kills when it misses a deadline and
replaces. A worker is a fresh interpreter started with ``subprocess``: never a fork (safe next to
CUDA and torch threads) and never multiprocessing's spawn, which re-runs the caller's ``__main__``
script (a training script would start training again in every worker).

The protocol, over one socket of pickled messages (``multiprocessing.connection``):

* the parent starts the worker with one ``init`` message; in the worker, ``function(init)`` of the
  worker's target module sets up and returns a :data:`Handler`; the worker then says it is ready,
  or sends the error that setting up raised (the parent raises :class:`WorkerStartError` with it);
* each later message from the parent is passed to ``handler(message, reply)``, which may call
  ``reply`` any number of times; the worker exits when the parent closes the pipe.

The target is a module name, or the path of a ``.py`` file: such a file is loaded from its path,
without importing its package (``import rewardkit`` would add half a second to the start of a
math-verify worker), and may import this module, which that worker loads the same way, under its
own name. This module therefore imports nothing from rewardkit.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from types import ModuleType
from typing import Any

Reply = Callable[[Any], None]  # sends one message from the worker to the parent
Handler = Callable[[Any, Reply], None]  # runs in the worker on each message from the parent

POLL_S = 0.05  # how often a blocking wait looks at its cancel flag and the process


class WorkerError(RuntimeError):
    """A worker process failed; the subclass says how."""


class WorkerStartError(WorkerError):
    """A worker process did not start: setting up raised, it exited, or it took too long."""


class WorkerDied(WorkerError):
    """A worker process is gone (killed, out of memory, a crash in C); ``exit_code`` says how."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class WorkerTimeout(WorkerError):
    """No message before the deadline; the worker still runs (kill or replace it)."""


class WorkerCancelled(WorkerError):
    """The caller cancelled a wait (its ``cancelled()`` turned true)."""


def _never() -> bool:
    return False


def _command(target: str, function: str, tag: str, fd: int) -> list[str]:
    args = [tag, target, function, str(fd)]  # the tag comes first so `ps` shows what the worker is
    if target.endswith(".py"):
        # this file under its own name, without the package: `from rewardkit.workers import` in the
        # target file then finds it in sys.modules
        boot = ("import importlib.util as u, sys; s = u.spec_from_file_location('rewardkit.workers', sys.argv[1]); "
                "m = sys.modules[s.name] = u.module_from_spec(s); s.loader.exec_module(m); m._child_main(sys.argv[2:])")
        return [sys.executable, "-c", boot, os.path.abspath(__file__), *args]
    return [sys.executable, "-c", "import sys; from rewardkit.workers import _child_main; _child_main(sys.argv[1:])",
            *args]


class WorkerProcess:
    """One worker process running ``function`` of ``target`` (see the module docstring), and the
    parent's end of its pipe. Starting does not wait for it: see :meth:`wait_ready` and
    :meth:`poll_ready`. ``name`` says what it is in error messages; ``tag`` is on its command line.
    """

    def __init__(self, target: str, function: str, init: Any = None, *, name: str, tag: str) -> None:
        self.name = name
        ours, theirs = socket.socketpair()
        # the parent's import path, so the worker imports the same modules (and the pickled classes)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self.proc = subprocess.Popen(_command(target, function, tag, theirs.fileno()),
                                         pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
        except OSError as exc:
            ours.close()
            raise WorkerStartError(f"{name} did not start: {sys.executable}: {exc}") from exc
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.started = time.monotonic()
        self.ready = False
        try:
            self.conn.send(init)
        except OSError:  # it ended before it read its first message
            raise self._gone() from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, message: Any) -> None:
        """Send one message; :class:`WorkerDied` when the worker is gone."""
        try:
            self.conn.send(message)
        except OSError:
            raise self._gone() from None

    def poll_ready(self) -> bool:
        """Take its start answer if it has arrived, without waiting: True once it is ready.
        Raises :class:`WorkerStartError` or :class:`WorkerDied` when it failed before that."""
        if not self.ready and self._readable(0):
            self._receive_one()
        return self.ready

    def check_start_deadline(self, timeout: float) -> None:
        """Kill it and raise :class:`WorkerStartError` when it is not ready ``timeout`` seconds
        after it was started."""
        if not self.ready and time.monotonic() >= self.started + timeout:
            self.kill()
            raise WorkerStartError(f"{self.name} did not start within {timeout:.0f} s")

    def wait_ready(self, timeout: float, cancelled: Callable[[], bool] = _never) -> None:
        """Block until it is ready: :class:`WorkerStartError` when it fails to start or is not ready
        within ``timeout`` seconds of its start; :class:`WorkerCancelled` as soon as ``cancelled()``."""
        while not self.ready:
            try:
                self._next(self.started + timeout, cancelled)
            except WorkerTimeout:
                self.check_start_deadline(timeout)
                raise

    def receive(self, deadline: float, cancelled: Callable[[], bool] = _never) -> Any:
        """The next message, waiting until ``deadline`` (a ``time.monotonic()`` value); raises
        :class:`WorkerTimeout` past it, :class:`WorkerCancelled` as soon as ``cancelled()`` is
        true, :class:`WorkerDied` (or :class:`WorkerStartError`) when the worker is gone."""
        while True:
            was_ready = self.ready
            message = self._next(deadline, cancelled)
            if was_ready:
                return message

    def messages(self) -> Iterator[Any]:
        """The messages that have arrived, without waiting, in order; raises :class:`WorkerDied`
        (or :class:`WorkerStartError`) after the last one when the worker is gone."""
        while self._readable(0):
            was_ready = self.ready
            message = self._receive_one()
            if was_ready:
                yield message

    def kill(self) -> None:
        """SIGKILL (a worker spinning in C ignores anything else), reap it, close the pipe. Safe to
        repeat, and from another thread."""
        self.proc.kill()  # a no-op once it has been reaped
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.conn.close()

    def stop(self, grace_s: float = 2.0) -> None:
        """Close its pipe (it exits at the end of its input), give it ``grace_s``, then kill it."""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.conn.close()
            self.proc.wait(timeout=grace_s)
        self.kill()

    def _readable(self, timeout: float) -> bool:
        try:
            return self.conn.poll(timeout)
        except OSError:  # closed by kill() on another thread
            raise self._gone() from None

    def _next(self, deadline: float, cancelled: Callable[[], bool]) -> Any:
        """The next message of any kind (the start answer is taken and returned as None)."""
        while True:
            if cancelled():
                raise WorkerCancelled(f"{self.name}: the wait was cancelled")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout(f"{self.name}: no answer before the deadline")
            if self._readable(min(POLL_S, left)):
                return self._receive_one()
            # it exited without closing the pipe (a forked grandchild holds it): what it wrote
            # before it exited is readable by now
            if not self.alive() and not self._readable(0):
                raise self._gone()

    def _receive_one(self) -> Any:
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            raise self._gone() from None
        if self.ready:
            return message
        status, detail = message
        if status != "ready":
            self.kill()
            raise WorkerStartError(f"{self.name} failed to start: {detail}")
        self.ready = True
        return None

    def _gone(self) -> WorkerError:
        """The error for a worker whose pipe or process has ended (reaped here)."""
        self.kill()
        code = self.proc.returncode
        if not self.ready and code is not None and code >= 0:  # it failed on its own: say so
            return WorkerStartError(f"{self.name} exited on start (exit code {code}); its error is on stderr")
        return WorkerDied(f"{self.name} died (exit code {code})", code)


def wait_any(workers: Sequence[WorkerProcess], timeout: float) -> list[WorkerProcess]:
    """The workers with something to read (a message, or their end), waiting at most ``timeout`` s."""
    readable = wait([w.conn for w in workers], timeout=timeout)
    return [w for w in workers if w.conn in readable]


# -- in the worker process ---------------------------------------------------------------------


class _ParentGone(Exception):
    pass


def _load(target: str, tag: str) -> ModuleType:
    if not target.endswith(".py"):
        return importlib.import_module(target)
    spec = importlib.util.spec_from_file_location(tag, target)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {target}")
    module = sys.modules[tag] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child_main(argv: list[str]) -> None:
    """Body of a worker process: set up, say so, then handle messages until the pipe closes."""
    tag, target, function, fd = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    conn = Connection(int(fd))

    def reply(message: Any) -> None:
        try:
            conn.send(message)
        except OSError as exc:  # the parent closed the pipe or is gone
            raise _ParentGone from exc

    try:
        init = conn.recv()  # first, so that the parent's send of a big init returns early
        handle: Handler = getattr(_load(target, tag), function)(init)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which says it did not start
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"))
        return
    try:
        reply(("ready", None))
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the parent closed the pipe: done
                return
            handle(message, reply)
    except _ParentGone:
        return
