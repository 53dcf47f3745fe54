"""Built-in plugin: the ``rewardkit serve`` command and the ``remote.*`` rewards.

Imports nothing heavy: FastAPI, uvicorn and httpx load only when the server runs or a remote
reward makes its first call.

``remote.reward``   an outcome reward scored by a reward server (``url``, ``reward`` params).
``remote.process``  a process reward scored by a reward server; per-step scores come back too.
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Any

from rewardkit.hookspecs import hookimpl

TOKEN_ENV = "REWARDKIT_SERVE_TOKEN"

EPILOG = """examples:
  rewardkit serve --reward math.accuracy --reward format.boxed --port 8000
  rewardkit serve --spec rewards.yaml --max-batch-rows 128 --queue-size 2048
  REWARDKIT_SERVE_TOKEN=secret rewardkit serve --plugin mypkg.rewards --reward mypkg.prm --host 0.0.0.0
  rewardkit serve --reward rewardmap.route --data-root /data/ReasonMap   # 'json' paths resolve under it

then, in the training script:
  compose({"acc": {"reward": "remote.reward", "url": "http://host:8000", "reward_name": "math.accuracy"}})
  (the client sends $REWARDKIT_SERVE_TOKEN, or pass token=...)
"""


def _remote_reward(url: str, reward_name: str, **kwargs: Any):
    from rewardkit.serve.client import RemoteReward

    return RemoteReward(url, reward_name, **kwargs)


def _remote_process(url: str, reward_name: str, **kwargs: Any):
    from rewardkit.serve.client import RemoteProcessReward

    return RemoteProcessReward(url, reward_name, **kwargs)


@hookimpl
def rewardkit_register_rewards(register):
    register("remote.reward", _remote_reward, kind="outcome",
             description="an outcome reward scored by a `rewardkit serve` server (params: url, reward_name)")
    register("remote.process", _remote_process, kind="process",
             description="a process reward scored by a `rewardkit serve` server; step scores come back too")


def configure(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("--reward", action="append", default=[], metavar="NAME",
                   help="a registered reward to serve under its name; repeat for several")
    p.add_argument("--spec", help="a YAML compose spec ({alias: {reward?, **params}}); its weights make /get_reward's total")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="import MODULE and register it as a plugin first (its @hookimpl functions)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch-rows", type=int, default=64, help="rows merged into one reward call")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="wait for more requests before scoring")
    p.add_argument("--queue-size", type=int, default=1024, help="waiting requests per reward before 503")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds a request may wait (queued + scoring) before 504; a worker process still "
                        "scoring then is killed and restarted")
    p.add_argument("--max-request-rows", type=int, default=4096)
    p.add_argument("--max-body-mb", type=float, default=32.0, help="larger request bodies get 413 unread")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                   help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV}; prefer the variable, "
                        "arguments show in ps)")
    p.add_argument("--data-root", help="folder that file-path columns (e.g. RewardMap's 'json') must resolve "
                                       "under; without it such columns are refused")
    p.add_argument("--workers", choices=["process", "thread"], default="process",
                   help="process: each reward in its own child process (a stuck reward cannot freeze the "
                        "server); thread: in the server process")
    p.add_argument("--header-timeout", type=float, default=10.0, help="seconds to send request headers")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to send the request body (408)")
    p.add_argument("--shutdown-timeout", type=float, default=5.0,
                   help="on SIGTERM, seconds in-flight requests get before they are cancelled")
    p.add_argument("--on-error", choices=["raise", "none"], default="raise",
                   help="raise: a reward exception answers 500 with its message; none: the rows that "
                        "raised become null, with their messages in the answer's 'errors'")
    p.add_argument("--label-column", default="solution",
                   help="the column OpenRLHF's labels fill on POST /get_reward (math.accuracy reads 'solution')")
    p.add_argument("--log-level", default="info")


def run(args: argparse.Namespace) -> int:
    from rewardkit.compose import load_spec
    from rewardkit.plugins import register_plugin
    from rewardkit.serve.server import RewardServer, ServerConfig, serve_forever

    for modname in args.plugin:
        register_plugin(importlib.import_module(modname), name=modname)
    spec: dict[str, Any] = load_spec(args.spec) if args.spec else {}
    for name in args.reward:
        spec.setdefault(name, 1.0)
    if not spec:
        raise SystemExit("give at least one --reward NAME or a --spec file")
    if args.data_root and not os.path.isdir(args.data_root):
        raise SystemExit(f"--data-root {args.data_root!r} is not a folder")
    config = ServerConfig(max_batch_rows=args.max_batch_rows, max_wait_ms=args.max_wait_ms,
                          queue_size=args.queue_size, request_timeout_s=args.timeout,
                          max_request_rows=args.max_request_rows, max_body_mb=args.max_body_mb,
                          header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                          shutdown_timeout_s=args.shutdown_timeout, workers=args.workers,
                          data_root=args.data_root, token=args.token or None,
                          label_column=args.label_column)
    server = RewardServer.from_spec(spec, config, on_error=args.on_error)
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        raise SystemExit("rewardkit serve needs the 'serve' extra: pip install 'rewardkit[serve]'") from None
    served = ", ".join(f"{d['name']} ({d['kind']})" for d in server.describe())
    auth = "token required" if config.token else "no token"
    print(f"rewardkit serve: {served} on http://{args.host}:{args.port} ({auth}, {args.workers} workers)",
          flush=True)
    serve_forever(server, host=args.host, port=args.port, log_level=args.log_level)
    return 0


@hookimpl
def rewardkit_register_commands(register):
    register("serve", configure, run, help="serve registered rewards over HTTP (batching, bounded queue, /health)")
