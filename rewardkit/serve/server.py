"""The reward server: FastAPI app, per-reward request batching, bounded queues, timeouts, health.

Endpoints (JSON):

``GET /health``
    ``{"status": "ok", "rewards": {name: kind}, "queues": {name: depth}, "stats": {...}}``.
``GET /v1/rewards``
    ``[{"name", "kind", "class"}]``.
``POST /v1/score``
    body ``{"reward": NAME, "prompts": [...], "completions": [...], "completion_ids": [[...]]|null,
    "columns": {col: [...]}, "steps": false}``; answer ``{"reward": NAME, "rewards": [float|null],
    "steps": [{"scores": [...], "spans": [[s, e], ...]}|null] | null}``. ``steps`` is only filled
    for process rewards when asked. ``null`` is the reward's own "does not apply" (or its
    ``on_error="none"`` outcome); it is never turned into 0.

Errors come back with a status and ``{"error": message, "type": ..., "retryable": bool}``:
404 unknown reward, 413 too many rows, 422 malformed request, 500 the reward raised,
503 queue full (retry later), 504 the request waited longer than the server's timeout.

Batching: each reward has one worker. While it scores a batch, new requests wait in a bounded
queue; the worker then takes every waiting request (up to ``max_batch_rows`` rows, waiting at most
``max_wait_ms`` for more), concatenates their rows into one reward call and splits the results
back. If a merged call raises, each request is scored alone, so one bad request fails alone.
"""

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from rewardkit.reward import ProcessReward, Reward, RewardInputError


@dataclass
class ServerConfig:
    """Knobs of the reward server (also the ``rewardkit serve`` flags)."""

    max_batch_rows: int = 64      # rows merged into one reward call
    max_wait_ms: float = 2.0      # how long a worker waits for more requests before scoring
    queue_size: int = 1024        # waiting requests per reward; beyond it: 503
    request_timeout_s: float = 60.0  # a request waiting (queued + scoring) longer gets 504
    max_request_rows: int = 4096  # rows in one request; beyond it: 413


class ServeError(Exception):
    status = 500
    retryable = False


class UnknownReward(ServeError):
    status = 404


class TooLarge(ServeError):
    status = 413


class BadRequest(ServeError):
    status = 422


class Overloaded(ServeError):
    status = 503
    retryable = True


class TimedOut(ServeError):
    status = 504
    retryable = True


class RewardFailed(ServeError):
    status = 500


@dataclass
class _Item:
    prompts: list[Any]
    completions: list[Any]  # for scorer requests: the step lists
    completion_ids: list[list[int]] | None
    columns: dict[str, list[Any]]
    want_steps: bool
    future: asyncio.Future
    expired: bool = False
    mode: str = "reward"  # "reward": the reward's __call__; "scorer": its PRM step scorer

    @property
    def rows(self) -> int:
        return len(self.completions)

    def signature(self) -> tuple:
        return (self.mode, self.completion_ids is not None, tuple(sorted(self.columns)))


@dataclass
class RewardStats:
    requests: int = 0
    rows: int = 0
    batches: int = 0
    max_batch_rows: int = 0
    errors: int = 0
    rejected: int = 0
    timeouts: int = 0
    nones: int = 0
    score_seconds: float = 0.0


def _steps_json(s: Any) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"scores": [float(x) for x in s.scores], "spans": [[int(a), int(b)] for a, b in s.spans]}


class _Batcher:
    """One reward, one worker thread, one bounded queue of waiting requests."""

    def __init__(self, name: str, reward: Reward, config: ServerConfig) -> None:
        self.name = name
        self.reward = reward
        self.config = config
        self.stats = RewardStats()
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        # one thread per reward: a reward (and its model) is never called concurrently, so
        # ProcessReward.last_step_scores belongs to the call that just ran
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rk-{name}")

    def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.config.queue_size)
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"rewardkit-batcher-{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=False, cancel_futures=True)

    def depth(self) -> int:
        return 0 if self.queue is None else self.queue.qsize()

    async def submit(self, item: _Item) -> dict[str, Any]:
        assert self.queue is not None
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.rejected += 1
            raise Overloaded(f"reward {self.name!r}: queue full ({self.config.queue_size} requests waiting); "
                             "retry later") from None
        self.stats.requests += 1
        self.stats.rows += item.rows
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), self.config.request_timeout_s)
        except asyncio.TimeoutError:
            item.expired = True
            self.stats.timeouts += 1
            raise TimedOut(f"reward {self.name!r}: no result within {self.config.request_timeout_s:g} s") from None

    async def _collect(self) -> list[_Item]:
        assert self.queue is not None
        first = await self.queue.get()
        items, rows = [first], first.rows

        def drain() -> int:
            nonlocal rows
            while rows < self.config.max_batch_rows:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                items.append(item)
                rows += item.rows
            return rows

        # take everything that queued up while the last batch was scoring; then, if the batch is
        # still small, give concurrent clients max_wait_ms to join it (no cancellable get: an item
        # is never lost to a timeout)
        if drain() < self.config.max_batch_rows and self.config.max_wait_ms > 0:
            await asyncio.sleep(self.config.max_wait_ms / 1000.0)
            drain()
        return [i for i in items if not i.expired and not i.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            groups: dict[tuple, list[_Item]] = {}
            for item in items:
                groups.setdefault(item.signature(), []).append(item)
            for group in groups.values():
                try:
                    results = await loop.run_in_executor(self.executor, self._score_group, group)
                except Exception as exc:  # never let the worker die
                    results = [exc] * len(group)
                for item, res in zip(group, results):
                    if item.future.done() or item.expired:
                        continue
                    if isinstance(res, BaseException):
                        item.future.set_exception(res)
                    else:
                        item.future.set_result(res)

    # -- runs on the reward's thread ---------------------------------------------------------------
    def _call(self, items: list[_Item]) -> list[dict[str, Any]]:
        if items[0].mode == "scorer":
            return self._call_scorer(items)
        prompts: list[Any] = []
        completions: list[Any] = []
        ids: list[list[int]] | None = [] if items[0].completion_ids is not None else None
        columns: dict[str, list[Any]] = {k: [] for k in items[0].columns}
        for it in items:
            prompts += it.prompts
            completions += it.completions
            if ids is not None:
                ids += it.completion_ids or []
            for k in columns:
                columns[k] += it.columns[k]
        t0 = time.perf_counter()
        values = self.reward(prompts, completions, ids, **columns)
        steps = list(self.reward.last_step_scores) if isinstance(self.reward, ProcessReward) else None
        self.stats.score_seconds += time.perf_counter() - t0
        self.stats.batches += 1
        self.stats.max_batch_rows = max(self.stats.max_batch_rows, len(completions))
        self.stats.nones += sum(v is None for v in values)
        out, start = [], 0
        for it in items:
            end = start + it.rows
            res: dict[str, Any] = {"reward": self.name, "rewards": list(values[start:end]), "steps": None}
            if it.want_steps and steps is not None:
                res["steps"] = [_steps_json(s) for s in steps[start:end]]
            out.append(res)
            start = end
        return out

    def _call_scorer(self, items: list[_Item]) -> list[dict[str, Any]]:
        from collections import Counter

        prompts: list[Any] = []
        steps: list[Any] = []
        for it in items:
            prompts += it.prompts
            steps += it.completions
        stats: Counter[str] = Counter()
        t0 = time.perf_counter()
        scores = self.reward.scorer.score(prompts, steps, stats=stats)
        self.stats.score_seconds += time.perf_counter() - t0
        self.stats.batches += 1
        self.stats.max_batch_rows = max(self.stats.max_batch_rows, len(steps))
        self.stats.nones += sum(s is None for s in scores)
        if len(scores) != len(steps):
            raise RuntimeError(f"scorer of {self.name!r} returned {len(scores)} rows for {len(steps)}")
        out, start = [], 0
        for it in items:
            end = start + it.rows
            res: dict[str, Any] = {"scores": [None if r is None else [float(x) for x in r]
                                              for r in scores[start:end]]}
            if len(items) == 1:
                res["stats"] = {k: int(v) for k, v in stats.items() if k in ("truncated", "too_long")}
            out.append(res)
            start = end
        return out

    def _score_group(self, items: list[_Item]) -> list[dict[str, Any] | BaseException]:
        try:
            return list(self._call(items))
        except Exception as exc:
            if len(items) == 1:
                self.stats.errors += 1
                return [_as_serve_error(self.name, exc)]
        # a merged call failed: score each request alone so only the bad one fails
        results: list[dict[str, Any] | BaseException] = []
        for it in items:
            try:
                results.append(self._call([it])[0])
            except Exception as exc:
                self.stats.errors += 1
                results.append(_as_serve_error(self.name, exc))
        return results


def _has_scorer(reward: Any) -> bool:
    scorer = getattr(reward, "scorer", None)
    return scorer is not None and callable(getattr(scorer, "score", None))


def _as_serve_error(name: str, exc: Exception) -> ServeError:
    if isinstance(exc, RewardInputError):
        err: ServeError = BadRequest(f"reward {name!r}: {exc}")
    else:
        err = RewardFailed(f"reward {name!r} raised {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


class RewardServer:
    """The rewards a server answers for, their batchers and their stats (no HTTP here)."""

    def __init__(self, rewards: Mapping[str, Reward], config: ServerConfig | None = None) -> None:
        if not rewards:
            raise ValueError("a reward server needs at least one reward")
        self.config = config or ServerConfig()
        self.rewards = dict(rewards)
        self.batchers = {name: _Batcher(name, r, self.config) for name, r in self.rewards.items()}
        self.started = time.time()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], config: ServerConfig | None = None, **compose_kwargs: Any):
        """Build from a compose spec (``{alias: weight | {reward?, **params}}``; weights are ignored)."""
        from rewardkit.compose import compose

        rs = compose(spec, **compose_kwargs)
        return cls({r.name: r for r in rs.rewards}, config)

    async def start(self) -> None:
        for b in self.batchers.values():
            b.start()

    async def stop(self) -> None:
        for b in self.batchers.values():
            await b.stop()

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": n, "kind": r.kind, "class": type(r).__name__, "step_scorer": _has_scorer(r)}
                for n, r in self.rewards.items()]

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "uptime_s": round(time.time() - self.started, 3),
            "rewards": {n: r.kind for n, r in self.rewards.items()},
            "queues": {n: b.depth() for n, b in self.batchers.items()},
            "config": asdict(self.config),
            "stats": {n: asdict(b.stats) for n, b in self.batchers.items()},
        }

    def _validate(self, body: Mapping[str, Any]) -> tuple[str, _Item]:
        if not isinstance(body, Mapping):
            raise BadRequest("the request body must be a JSON object")
        name = body.get("reward")
        if not isinstance(name, str):
            raise BadRequest("'reward' must be the name of a served reward")
        if name not in self.rewards:
            raise UnknownReward(f"reward {name!r} is not served here; served: {sorted(self.rewards)}")
        prompts, completions = body.get("prompts"), body.get("completions")
        if not isinstance(completions, list) or not isinstance(prompts, list):
            raise BadRequest("'prompts' and 'completions' must be lists")
        n = len(completions)
        if len(prompts) != n:
            raise BadRequest(f"{len(prompts)} prompts but {n} completions")
        if n > self.config.max_request_rows:
            raise TooLarge(f"{n} rows in one request; this server takes at most {self.config.max_request_rows}")
        ids = body.get("completion_ids")
        if ids is not None and (not isinstance(ids, list) or len(ids) != n
                                or not all(isinstance(r, list) for r in ids)):
            raise BadRequest(f"'completion_ids' must be null or a list of {n} lists of token ids")
        columns = body.get("columns") or {}
        if not isinstance(columns, Mapping):
            raise BadRequest("'columns' must be an object of column name -> list")
        for k, v in columns.items():
            if not isinstance(v, list) or len(v) != n:
                raise BadRequest(f"column {k!r} must be a list with one value per completion ({n})")
        future = asyncio.get_running_loop().create_future()
        return name, _Item(prompts, completions, ids, dict(columns), bool(body.get("steps", False)), future)

    async def score_steps(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The PRM step scorer of reward ``name`` on ``{"prompts", "steps"}``."""
        if name not in self.rewards:
            raise UnknownReward(f"reward {name!r} is not served here; served: {sorted(self.rewards)}")
        if not _has_scorer(self.rewards[name]):
            raise UnknownReward(f"reward {name!r} has no PRM step scorer (only PRMReward-style rewards do); "
                                f"use POST /v1/score")
        if not isinstance(body, Mapping):
            raise BadRequest("the request body must be a JSON object")
        prompts, steps = body.get("prompts"), body.get("steps")
        if not isinstance(prompts, list) or not isinstance(steps, list) or len(prompts) != len(steps):
            raise BadRequest("'prompts' and 'steps' must be lists of the same length")
        if not all(isinstance(p, str) for p in prompts):
            raise BadRequest("'prompts' must be strings")
        for i, row in enumerate(steps):
            if not isinstance(row, list) or not all(isinstance(x, str) for x in row):
                raise BadRequest(f"steps[{i}] must be a list of step strings")
        if len(steps) > self.config.max_request_rows:
            raise TooLarge(f"{len(steps)} rows in one request; this server takes at most "
                           f"{self.config.max_request_rows}")
        if not steps:
            return {"scores": [], "stats": {}}
        item = _Item(prompts, steps, None, {}, False, asyncio.get_running_loop().create_future(), mode="scorer")
        return await self.batchers[name].submit(item)

    async def score(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name, item = self._validate(body)
        if item.rows == 0:
            return {"reward": name, "rewards": [], "steps": [] if item.want_steps else None}
        return await self.batchers[name].submit(item)


def create_app(server: RewardServer):
    """The FastAPI app serving ``server`` (imports FastAPI: needs the ``serve`` extra)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("rewardkit serve needs the 'serve' extra: pip install 'rewardkit[serve]'") from exc

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await server.start()
        try:
            yield
        finally:
            await server.stop()

    app = FastAPI(title="rewardkit reward server", lifespan=lifespan)
    app.state.reward_server = server

    def error(exc: ServeError) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"error": str(exc), "type": type(exc).__name__, "retryable": exc.retryable},
                            status_code=exc.status, headers=headers)

    @app.get("/health")
    async def health():
        return server.health()

    @app.get("/v1/rewards")
    async def rewards():
        return server.describe()

    @app.post("/v1/score")
    async def score(request: Request):
        try:
            body = await request.json()
        except Exception:
            return error(BadRequest("the request body is not valid JSON"))
        try:
            return await server.score(body)
        except ServeError as exc:
            return error(exc)

    @app.post("/v1/steps/{name}")
    async def steps(name: str, request: Request):
        try:
            body = await request.json()
        except Exception:
            return error(BadRequest("the request body is not valid JSON"))
        try:
            return await server.score_steps(name, body)
        except ServeError as exc:
            return error(exc)

    return app


@dataclass
class ServerHandle:
    """A server running on a background thread (tests, benchmarks, notebooks)."""

    url: str
    server: RewardServer
    _uvicorn: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self, timeout: float = 10.0) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_server(server: RewardServer, host: str = "127.0.0.1", port: int = 0, *,
                 log_level: str = "warning", startup_timeout: float = 30.0) -> ServerHandle:
    """Run ``server`` with uvicorn on a background thread; ``port=0`` picks a free port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(server), log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True, name="rewardkit-serve")
    thread.start()
    deadline = time.time() + startup_timeout
    while not uv.started:
        if not thread.is_alive() or time.time() > deadline:
            uv.should_exit = True
            raise RuntimeError(f"the reward server did not start on {host}:{port}")
        time.sleep(0.01)
    shown = f"[{host}]" if ":" in host else host
    return ServerHandle(f"http://{shown}:{port}", server, uv, thread)
