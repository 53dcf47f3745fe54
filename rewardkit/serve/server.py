"""The reward server: FastAPI app, per-reward request batching, bounded queues, deadlines, health.

Endpoints (JSON; with a token every one but a bare ``GET /health`` needs ``Authorization: Bearer``):

``GET /health``
    ``{"status": "ok", "rewards": {name: kind}, "queues": {name: depth}, "workers": {...},
    "stats": {...}}`` (without the token, only ``{"status": "ok"}``).
``GET /v1/rewards``
    ``[{"name", "kind", "class", "step_scorer"}]``.
``POST /v1/score``
    body ``{"reward": NAME, "prompts": [...], "completions": [...], "completion_ids": [[...]]|null,
    "columns": {col: [...]}, "steps": false}``; answer ``{"reward": NAME, "rewards": [float|null],
    "steps": [{"scores": [...], "spans": [[s, e], ...]}|null] | null, "errors": [str|null] | null}``.
    ``steps`` is only filled for process rewards when asked. A ``null`` reward with a ``null`` error
    is the reward's own "does not apply"; a ``null`` with an error message is a row that raised
    (under the reward's ``on_error="none"``). Neither is ever turned into 0.

``POST /get_reward``
    OpenRLHF's remote reward: ``{"query", "prompts", "labels"}`` -> ``{"rewards", "scores",
    "extra_logs"}``, every served reward summed with the spec's weights (:mod:`.openrlhf`).

Errors come back with a status and ``{"error": message, "type": ..., "retryable": bool}``:
401 missing/wrong token, 404 unknown reward, 408 body too slow, 413 body or row count over the
limit, 422 malformed request, 500 the reward raised, 503 queue full (retry later), 504 no result
within the request deadline.

Batching: each reward has one worker (a child process by default, see :mod:`.worker`). While it
scores, new requests wait in a bounded queue; the batcher then takes every waiting request (waiting
at most ``max_wait_ms`` for more), and the worker scores their rows in chunks of at most
``max_batch_rows``. If a merged call raises, each request is scored alone, so one bad request
fails alone. A worker that misses the deadline of every request it holds is killed and restarted.
"""

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import socket
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from rewardkit.reward import TRL_CONTEXT_KWARGS, Reward
from rewardkit.serve.errors import (  # noqa: F401 - re-exported: the server's error vocabulary
    BadRequest,
    Overloaded,
    RequestTimeout,
    RewardFailed,
    ServeError,
    TimedOut,
    TooLarge,
    Unauthorized,
    UnknownReward,
)
from rewardkit.serve.guard import Guard, header_timeout_protocol, resolve_under
from rewardkit.serve.worker import STAT_KEYS, Job, ProcessWorker, ThreadWorker

TOKEN_ENV = "REWARDKIT_SERVE_TOKEN"
# names a column cannot have: the reward call's own parameters and TRL's side channels
RESERVED_COLUMNS = frozenset({"self", "prompts", "completions", "completion_ids", *TRL_CONTEXT_KWARGS})


@dataclass
class ServerConfig:
    """Knobs of the reward server (also the ``rewardkit serve`` flags)."""

    max_batch_rows: int = 64      # rows in one reward call (bigger requests are scored in chunks)
    max_wait_ms: float = 2.0      # how long a worker waits for more requests before scoring
    queue_size: int = 1024        # waiting requests per reward; beyond it: 503
    request_timeout_s: float = 60.0  # a request waiting (queued + scoring) longer gets 504
    max_request_rows: int = 4096  # rows in one request; beyond it: 413
    max_body_mb: float = 32.0     # request body size; beyond it: 413, refused before it is read
    header_timeout_s: float = 10.0  # a connection must send complete request headers within this
    body_timeout_s: float = 30.0  # ... and the whole body within this; else 408 / closed
    keep_alive_s: float = 5.0     # idle keep-alive connections are closed after this
    shutdown_timeout_s: float = 5.0  # on SIGTERM, in-flight requests get this long, then are cancelled
    workers: str = "process"      # "process": each reward in its own child process; "thread": in-process
    data_root: str | None = None  # file-path columns (Reward.path_columns) must resolve under this
    token: str | None = field(default=None, repr=False)  # bearer token; None: no auth
    label_column: str = "solution"  # the column OpenRLHF's labels fill on POST /get_reward

    def __post_init__(self) -> None:
        if self.workers not in ("process", "thread"):
            raise ValueError(f"workers must be 'process' or 'thread', got {self.workers!r}")
        if self.max_batch_rows < 1 or self.max_body_mb <= 0 or self.request_timeout_s <= 0:
            raise ValueError("max_batch_rows, max_body_mb and request_timeout_s must be positive")

    def public(self) -> dict[str, Any]:
        """The config as /health shows it (never the token)."""
        out = asdict(self)
        out["token"] = "set" if self.token else None
        return out


@dataclass
class _Item:
    job: Job
    future: asyncio.Future
    deadline: float  # time.monotonic() after which nobody waits for the answer
    expired: bool = False

    @property
    def rows(self) -> int:
        return len(self.job["completions"])

    def signature(self) -> tuple:
        return (self.job["mode"], self.job["completion_ids"] is not None, tuple(sorted(self.job["columns"])))


@dataclass
class RewardStats:
    requests: int = 0
    rows: int = 0
    batches: int = 0          # reward calls (chunks of at most max_batch_rows rows)
    max_batch_rows: int = 0
    errors: int = 0           # requests answered 422/500 because the reward raised
    row_errors: int = 0       # rows that raised under on_error="none" (null + an error message)
    rejected: int = 0         # 503: queue full
    timeouts: int = 0         # 504
    nones: int = 0            # rows the reward itself answered None ("does not apply")
    score_seconds: float = 0.0
    worker_restarts: int = 0

    def add(self, delta: Mapping[str, float]) -> None:
        for k in STAT_KEYS:
            if k == "max_batch_rows":
                self.max_batch_rows = max(self.max_batch_rows, int(delta[k]))
            elif k == "score_seconds":
                self.score_seconds += delta[k]
            else:
                setattr(self, k, getattr(self, k) + int(delta[k]))


class _Batcher:
    """One reward, one worker, one bounded queue of waiting requests."""

    def __init__(self, name: str, reward: Reward, config: ServerConfig) -> None:
        self.name = name
        self.reward = reward
        self.config = config
        self.stats = RewardStats()
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        worker_cls = ProcessWorker if config.workers == "process" else ThreadWorker
        self.worker: ProcessWorker | ThreadWorker = worker_cls(name, reward, config.max_batch_rows)
        # one thread per reward talks to its worker: a reward is never called concurrently, so
        # ProcessReward.last_step_scores belongs to the call that just ran
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rk-{name}")

    async def start(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.config.queue_size)
        await asyncio.get_running_loop().run_in_executor(self.executor, self.worker.start)
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"rewardkit-batcher-{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.worker.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def depth(self) -> int:
        return 0 if self.queue is None else self.queue.qsize()

    async def submit(self, job: Job) -> dict[str, Any]:
        assert self.queue is not None
        item = _Item(job, asyncio.get_running_loop().create_future(),
                     time.monotonic() + self.config.request_timeout_s)
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
        except TimedOut:  # the worker hit the deadline a moment before this request's own timer
            self.stats.timeouts += 1
            raise

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
                live = [i for i in group if not i.expired and not i.future.done()]
                if not live:
                    continue
                # the worker may run until the last request of the group stops waiting
                deadline = max(i.deadline for i in live)
                restarts = self.worker.restarts
                try:
                    results, delta = await loop.run_in_executor(self.executor, self.worker.call,
                                                                [i.job for i in live], deadline)
                    self.stats.add(delta)
                except Exception as exc:  # never let the batcher die
                    err = exc if isinstance(exc, ServeError) else RewardFailed(
                        f"reward {self.name!r}: {type(exc).__name__}: {exc}")
                    results = [err] * len(live)
                self.stats.worker_restarts += self.worker.restarts - restarts
                for item, res in zip(live, results):
                    if item.future.done() or item.expired:
                        continue
                    if isinstance(res, BaseException):
                        item.future.set_exception(res)
                    else:
                        item.future.set_result(res)


def _has_scorer(reward: Any) -> bool:
    scorer = getattr(reward, "scorer", None)
    return scorer is not None and callable(getattr(scorer, "score", None))


def _is_completion(c: Any) -> bool:
    if isinstance(c, str):
        return True
    if isinstance(c, dict):
        return True
    return isinstance(c, list) and all(isinstance(m, dict) for m in c)


class RewardServer:
    """The rewards a server answers for, their batchers and their stats (no HTTP here)."""

    def __init__(self, rewards: Mapping[str, Reward], config: ServerConfig | None = None,
                 weights: Mapping[str, float] | None = None) -> None:
        if not rewards:
            raise ValueError("a reward server needs at least one reward")
        self.config = config or ServerConfig()
        self.rewards = dict(rewards)
        # the spec's weights: only POST /get_reward (OpenRLHF) sums the rewards into one
        self.weights = {name: float((weights or {}).get(name, 1.0)) for name in self.rewards}
        self.batchers = {name: _Batcher(name, r, self.config) for name, r in self.rewards.items()}
        self.started = time.time()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], config: ServerConfig | None = None, **compose_kwargs: Any):
        """Build from a compose spec (``{alias: weight | {reward?, **params}}``; weights are used only by
        ``POST /get_reward``)."""
        from rewardkit.compose import compose

        rs = compose(spec, **compose_kwargs)
        return cls({r.name: r for r in rs.rewards}, config, weights=dict(zip(rs.names, rs.weights)))

    async def start(self) -> None:
        # worker processes load their rewards in parallel
        await asyncio.gather(*(b.start() for b in self.batchers.values()))

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
            "workers": {n: {"kind": b.worker.kind, "pid": b.worker.pid, "restarts": b.worker.restarts}
                        for n, b in self.batchers.items()},
            "config": self.config.public(),
            "stats": {n: asdict(b.stats) for n, b in self.batchers.items()},
        }

    def _validate(self, body: Any) -> tuple[str, Job]:
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
        for i, c in enumerate(completions):
            if not _is_completion(c):
                raise BadRequest(f"completions[{i}] must be a string or a list of chat messages (objects); "
                                 f"got {type(c).__name__}")
        for i, p in enumerate(prompts):
            if not _is_completion(p):
                raise BadRequest(f"prompts[{i}] must be a string or a list of chat messages (objects); "
                                 f"got {type(p).__name__}")
        ids = body.get("completion_ids")
        if ids is not None and (not isinstance(ids, list) or len(ids) != n or not all(
                isinstance(r, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in r) for r in ids)):
            raise BadRequest(f"'completion_ids' must be null or a list of {n} lists of token ids")
        columns = body.get("columns")
        columns = {} if columns is None else columns
        if not isinstance(columns, Mapping):
            raise BadRequest("'columns' must be an object of column name -> list")
        reserved = sorted(k for k in columns if k in RESERVED_COLUMNS)
        if reserved:
            raise BadRequest(f"column names {reserved} are reserved (the reward call's own arguments); rename them")
        for k, v in columns.items():
            if not isinstance(v, list) or len(v) != n:
                raise BadRequest(f"column {k!r} must be a list with one value per completion ({n})")
        steps = body.get("steps", False)
        if not isinstance(steps, bool):
            raise BadRequest("'steps' must be true or false")
        columns = dict(columns)
        for col in self.rewards[name].path_columns:
            if col in columns:
                columns[col] = [resolve_under(self.config.data_root, v, reward=name, column=col)
                                for v in columns[col]]
        image_columns = tuple(getattr(self.rewards[name], "image_columns", ()) or ())
        if image_columns:  # a reward that takes images gets them decoded (rewardkit.serve.images)
            from rewardkit.serve.images import decode_column, decode_prompt

            root = self.config.data_root
            for col in image_columns:
                if col in columns:
                    columns[col] = decode_column(columns[col], root=root, reward=name, column=col)
            prompts = [decode_prompt(p, root=root, reward=name, row=i) for i, p in enumerate(prompts)]
        return name, {"mode": "reward", "prompts": prompts, "completions": completions, "completion_ids": ids,
                      "columns": columns, "steps": steps}

    async def score_steps(self, name: str, body: Any) -> dict[str, Any]:
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
        images = body.get("images")
        if images is not None:  # one list of images per row, for a scorer that takes them
            if not getattr(self.rewards[name].scorer, "takes_images", False):
                raise BadRequest(f"reward {name!r} does not take images")
            if not isinstance(images, list) or len(images) != len(prompts) or not all(
                    r is None or isinstance(r, list) for r in images):
                raise BadRequest("'images' must be a list with one list of images (or null) per prompt")
            from rewardkit.prm.multimodal import ImagePrompt
            from rewardkit.serve.images import decode_column

            rows = decode_column([r or [] for r in images], root=self.config.data_root, reward=name, column="images")
            prompts = [ImagePrompt(p, r) if r else p for p, r in zip(prompts, rows)]
        job = {"mode": "scorer", "prompts": prompts, "completions": steps, "completion_ids": None, "columns": {},
               "steps": False}
        return await self.batchers[name].submit(job)

    async def score(self, body: Any) -> dict[str, Any]:
        name, job = self._validate(body)
        if not job["completions"]:
            return {"reward": name, "rewards": [], "steps": [] if job["steps"] else None, "errors": None}
        return await self.batchers[name].submit(job)


def create_app(server: RewardServer):
    """The ASGI app serving ``server``: the FastAPI app behind the :class:`~.guard.Guard` (token,
    body limit and body deadline). Imports FastAPI: needs the ``serve`` extra."""
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

    async def answer(request: Request, handler) -> Any:
        try:
            body = await request.json()
        except Exception:
            return error(BadRequest("the request body is not valid JSON"))
        try:
            return await handler(body)
        except ServeError as exc:
            return error(exc)

    @app.post("/v1/score")
    async def score(request: Request):
        return await answer(request, server.score)

    @app.post("/v1/steps/{name}")
    async def steps(name: str, request: Request):
        return await answer(request, lambda body: server.score_steps(name, body))

    @app.post("/get_reward")
    async def get_reward(request: Request):  # OpenRLHF's remote reward protocol
        from rewardkit.serve.openrlhf import get_reward

        return await answer(request, lambda body: get_reward(server, body))

    return Guard(app, token=server.config.token, max_body_bytes=int(server.config.max_body_mb * 2 ** 20),
                 body_timeout_s=server.config.body_timeout_s)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_open(host: str, config: ServerConfig) -> None:
    """Say it loudly when anyone on the network may call the rewards (and read their files)."""
    if config.token or _is_loopback(host):
        return
    msg = (f"rewardkit serve: listening on {host} WITHOUT a token: anyone who can reach this port can run "
           f"the served rewards. Set --token or {TOKEN_ENV}.")
    print("WARNING: " + msg, file=sys.stderr, flush=True)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def uvicorn_config(server: RewardServer, *, log_level: str = "warning", **kwargs: Any):
    """The uvicorn config every rewardkit server runs with: its slow-client and shutdown limits."""
    import uvicorn

    c = server.config
    return uvicorn.Config(create_app(server), log_level=log_level, access_log=False, lifespan="on",
                          http=header_timeout_protocol(c.header_timeout_s), timeout_keep_alive=c.keep_alive_s,
                          timeout_graceful_shutdown=c.shutdown_timeout_s, h11_max_incomplete_event_size=64 * 1024,
                          **kwargs)


def serve_forever(server: RewardServer, host: str = "127.0.0.1", port: int = 8000, *,
                  log_level: str = "info") -> None:
    """Run ``server`` in this process until SIGINT/SIGTERM (the ``rewardkit serve`` command)."""
    import uvicorn

    warn_if_open(host, server.config)
    uvicorn.Server(uvicorn_config(server, log_level=log_level, host=host, port=port)).run()


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
                 log_level: str = "warning", startup_timeout: float = 120.0) -> ServerHandle:
    """Run ``server`` with uvicorn on a background thread; ``port=0`` picks a free port."""
    import uvicorn

    warn_if_open(host, server.config)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn_config(server, log_level=log_level))
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
