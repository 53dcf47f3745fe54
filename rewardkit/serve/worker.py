"""Where a served reward actually runs: a child process per reward (default) or a thread.

A reward is arbitrary code. It can spin in C holding the GIL (``10**10**10`` inside a math
checker), crash the interpreter, or leak. In a child process none of that reaches the server:
the event loop keeps answering ``/health``, a request past its deadline gets 504 and the child is
killed and started again, and shutdown kills it instead of waiting for it. The thread worker
(``workers="thread"``) shares the server's process: cheaper, for rewards known to be well behaved,
but a reward stuck holding the GIL freezes the whole server.

Both run the same :class:`Scorer` on plain-data jobs, so the answers are the same:

* rows are scored in chunks of at most ``max_batch_rows`` (one big request cannot make one huge
  reward call), and re-assembled in order;
* the reward runs with ``on_error="raise"``; when a merged call raises, each request is scored
  alone, and under the reward's own ``on_error="none"`` each row of a failing request alone, so a
  row that raised comes back as ``null`` with its error message in ``errors`` (an error, not a
  "does not apply" ``null``).
"""

from __future__ import annotations

import pickle
import threading
import time
from typing import Any

from rewardkit.reward import ProcessReward, Reward, RewardInputError
from rewardkit.serve.errors import BadRequest, RewardFailed, ServeError, TimedOut
from rewardkit.workers import (
    Handler,
    Reply,
    WorkerCancelled,
    WorkerDied,
    WorkerError,
    WorkerProcess,
    WorkerTimeout,
)

Job = dict[str, Any]  # {"mode", "prompts", "completions", "completion_ids", "columns", "steps"}
STAT_KEYS = ("batches", "max_batch_rows", "errors", "row_errors", "nones", "score_seconds")
MAX_ERROR_CHARS = 300


def _steps_json(s: Any) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"scores": [float(x) for x in s.scores], "spans": [[int(a), int(b)] for a, b in s.spans]}


def _concat(jobs: list[Job]) -> Job:
    if len(jobs) == 1:
        return jobs[0]
    first = jobs[0]
    return {"mode": first["mode"], "steps": any(j["steps"] for j in jobs),
            "prompts": [p for j in jobs for p in j["prompts"]],
            "completions": [c for j in jobs for c in j["completions"]],
            "completion_ids": None if first["completion_ids"] is None
            else [r for j in jobs for r in j["completion_ids"]],
            "columns": {k: [v for j in jobs for v in j["columns"][k]] for k in first["columns"]}}


def _slice(job: Job, start: int, end: int) -> Job:
    ids = job["completion_ids"]
    return {**job, "prompts": job["prompts"][start:end], "completions": job["completions"][start:end],
            "completion_ids": None if ids is None else ids[start:end],
            "columns": {k: v[start:end] for k, v in job["columns"].items()}}


def _short(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}"
    return msg if len(msg) <= MAX_ERROR_CHARS else msg[:MAX_ERROR_CHARS] + "..."


class Scorer:
    """Scores jobs for one reward; returns per-job answers (or :class:`ServeError`) and stats."""

    def __init__(self, name: str, reward: Reward, max_batch_rows: int) -> None:
        self.name = name
        self.row_policy = reward.on_error
        # a shallow copy that shares loaded models but always raises, so the server can tell
        # which row failed (pickle-free: __getstate__ would drop the models)
        quiet = object.__new__(type(reward))
        quiet.__dict__.update(reward.__dict__)
        quiet.on_error = "raise"
        self.reward = quiet
        self.max_batch_rows = max(1, max_batch_rows)

    def run(self, jobs: list[Job]) -> tuple[list[dict[str, Any] | ServeError], dict[str, float]]:
        stats = dict.fromkeys(STAT_KEYS, 0.0)
        try:
            merged = self._score(_concat(jobs), stats)
            out: list[dict[str, Any] | ServeError] = []
            start = 0
            for job in jobs:
                end = start + len(job["completions"])
                steps = merged["steps"]
                out.append(self._answer(job, {"values": merged["values"][start:end],
                                              "steps": None if steps is None else steps[start:end],
                                              "stats": merged["stats"] if len(jobs) == 1 else {}}))
                start = end
        except Exception:
            out = [self._alone(job, stats) for job in jobs]
        for res in out:
            if isinstance(res, ServeError):
                stats["errors"] += 1
            elif "rewards" in res:
                errs = res.get("errors") or []
                stats["row_errors"] += sum(e is not None for e in errs)
                stats["nones"] += sum(v is None for v in res["rewards"]) - sum(e is not None for e in errs)
            else:
                stats["nones"] += sum(v is None for v in res["scores"])
        return out, stats

    def _alone(self, job: Job, stats: dict[str, float]) -> dict[str, Any] | ServeError:
        try:
            return self._answer(job, self._score(job, stats))
        except Exception as exc:
            if isinstance(exc, RewardInputError) or job["mode"] != "reward" or self.row_policy != "none":
                return self._error(exc)
        # on_error="none": the rows that raise become null and are reported as errors
        rows: dict[str, list[Any]] = {"values": [], "steps": [], "errors": []}
        for i in range(len(job["completions"])):
            try:
                got = self._score(_slice(job, i, i + 1), stats)
                rows["values"] += got["values"]
                rows["steps"] += got["steps"] or [None]
                rows["errors"].append(None)
            except Exception as exc:
                if isinstance(exc, RewardInputError):
                    return self._error(exc)
                rows["values"].append(None)
                rows["steps"].append(None)
                rows["errors"].append(_short(exc))
        if not isinstance(self.reward, ProcessReward):
            rows["steps"] = None  # outcome rewards have no steps to report
        return self._answer(job, rows)

    def _error(self, exc: Exception) -> ServeError:
        if isinstance(exc, RewardInputError):
            return BadRequest(f"reward {self.name!r}: {exc}")
        return RewardFailed(f"reward {self.name!r} raised {_short(exc)}")

    def _answer(self, job: Job, rows: dict[str, Any]) -> dict[str, Any]:
        if job["mode"] == "scorer":
            return {"scores": rows["values"], "stats": rows.get("stats") or {}}
        errors = rows.get("errors")
        return {"reward": self.name, "rewards": rows["values"],
                "steps": [_steps_json(s) for s in rows["steps"]] if job["steps"] and rows["steps"] is not None
                else None,
                "errors": errors if errors and any(e is not None for e in errors) else None}

    def _score(self, job: Job, stats: dict[str, float]) -> dict[str, Any]:
        """Every row of ``job``, in chunks of ``max_batch_rows``; raises whatever the reward raises."""
        n = len(job["completions"])
        values: list[Any] = []
        steps: list[Any] | None = [] if isinstance(self.reward, ProcessReward) else None
        counts: dict[str, int] = {}
        for start in range(0, n, self.max_batch_rows):
            part = _slice(job, start, min(n, start + self.max_batch_rows)) if n > self.max_batch_rows else job
            rows = len(part["completions"])
            t0 = time.perf_counter()
            if job["mode"] == "scorer":
                from collections import Counter

                c: Counter[str] = Counter()
                got = self.reward.scorer.score(part["prompts"], part["completions"], stats=c)
                if len(got) != rows:
                    raise RuntimeError(f"scorer of {self.name!r} returned {len(got)} rows for {rows}")
                values += [None if r is None else [float(x) for x in r] for r in got]
                for k in ("truncated", "too_long"):
                    if c.get(k):
                        counts[k] = counts.get(k, 0) + int(c[k])
            else:
                values += self.reward(part["prompts"], part["completions"], part["completion_ids"],
                                      **part["columns"])
                if steps is not None:
                    steps += list(self.reward.last_step_scores)
            stats["score_seconds"] += time.perf_counter() - t0
            stats["batches"] += 1
            stats["max_batch_rows"] = max(stats["max_batch_rows"], rows)
        return {"values": values, "steps": steps, "stats": counts}


def _setup_worker(init: tuple[str, bytes, int]) -> Handler:
    """In a worker process (see :mod:`rewardkit.workers`): load the reward, then answer each list
    of jobs with :meth:`Scorer.run`."""
    name, payload, max_batch_rows = init
    scorer = Scorer(name, pickle.loads(payload), max_batch_rows)

    def handle(jobs: list[Job], reply: Reply) -> None:
        try:
            answer = scorer.run(jobs)
        except BaseException as exc:  # noqa: BLE001 - never leave the server without an answer
            answer = ([RewardFailed(f"reward {name!r} worker failed: {_short(exc)}")] * len(jobs),
                      dict.fromkeys(STAT_KEYS, 0.0))
        reply(answer)

    return handle


class ThreadWorker:
    """Scores in the server's own process (on the batcher's thread); deadlines cannot stop it."""

    kind = "thread"

    def __init__(self, name: str, reward: Reward, max_batch_rows: int) -> None:
        self.scorer = Scorer(name, reward, max_batch_rows)
        self.restarts = 0
        self.pid: int | None = None

    def start(self) -> None:
        pass

    def call(self, jobs: list[Job], deadline: float) -> tuple[list[Any], dict[str, float]]:
        return self.scorer.run(jobs)

    def stop(self) -> None:
        pass


class ProcessWorker:
    """One worker process per reward (:class:`rewardkit.workers.WorkerProcess`: a fresh interpreter,
    safe with CUDA and threads); killed and started again when it misses a deadline or dies, killed
    when the server stops."""

    kind = "process"

    def __init__(self, name: str, reward: Reward, max_batch_rows: int, *, start_timeout_s: float = 300.0) -> None:
        self.name = name
        self.max_batch_rows = max_batch_rows
        self.start_timeout_s = start_timeout_s
        if type(reward).__module__ == "__main__":
            raise ValueError(f"reward {name!r} is an instance of {type(reward).__name__} defined in the __main__ "
                             "script, which a worker process cannot import; define it in a module, or serve it "
                             "with workers='thread'")
        try:
            self.payload = pickle.dumps(reward)
        except Exception as exc:
            raise ValueError(f"reward {name!r} cannot be pickled into a worker process ({_short(exc)}); "
                             "make it picklable or serve it with workers='thread'") from exc
        self.process: WorkerProcess | None = None
        self.restarts = 0
        self.stopping = False
        self._lock = threading.Lock()  # start/kill from the batcher thread vs stop from the event loop

    @property
    def pid(self) -> int | None:
        process = self.process
        return None if process is None else process.pid

    def _stopping(self) -> bool:
        return self.stopping

    def start(self) -> None:
        if self.stopping:
            raise RewardFailed("the server is shutting down")
        try:
            process = WorkerProcess("rewardkit.serve.worker", "_setup_worker",
                                    (self.name, self.payload, self.max_batch_rows),
                                    name=f"the worker process of reward {self.name!r}", tag="rewardkit_serve_worker")
        except WorkerError as exc:
            raise RewardFailed(str(exc)) from None
        with self._lock:
            self.process = process
        if self.stopping:  # stop() ran while it was starting, before it could see this process
            self.kill()
        try:
            process.wait_ready(self.start_timeout_s, cancelled=self._stopping)
        except WorkerError as exc:
            self.kill()
            raise RewardFailed("the server is shutting down" if isinstance(exc, WorkerCancelled)
                               else str(exc)) from None

    def kill(self) -> None:
        with self._lock:
            process, self.process = self.process, None
        if process is not None:
            process.kill()

    def call(self, jobs: list[Job], deadline: float) -> tuple[list[Any], dict[str, float]]:
        if self.process is None or not self.process.alive():
            if self.process is not None:
                self.kill()
                self.restarts += 1
            self.start()
        process = self.process
        if process is None:
            raise RewardFailed("the server is shutting down")
        try:
            process.send(jobs)
            return process.receive(deadline, cancelled=self._stopping)
        except WorkerCancelled:
            self.kill()
            raise RewardFailed("the server is shutting down") from None
        except WorkerTimeout:
            self._restart()
            raise TimedOut(f"reward {self.name!r}: no result before the deadline; its worker process "
                           "was killed and restarted") from None
        except WorkerError as exc:
            code = exc.exit_code if isinstance(exc, WorkerDied) else None
            self._restart()
            raise RewardFailed(f"reward {self.name!r}: its worker process died (exit code {code}); "
                               "restarted") from None

    def _restart(self) -> None:
        self.kill()
        self.restarts += 1
        if not self.stopping:
            self.start()

    def stop(self) -> None:
        self.stopping = True
        self.kill()
