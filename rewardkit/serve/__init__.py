"""Serve rewards over HTTP and call them from training processes.

``rewardkit serve --reward NAME ...`` runs a FastAPI/uvicorn server (the ``serve`` extra) that
scores requests for any registered reward or process reward, batching concurrent requests into one
reward call, with a bounded queue, per-request deadlines, a ``/health`` endpoint, each reward in its
own worker process, and limits against hostile clients (bearer token, body size, slow clients).

:class:`RemoteReward` and :class:`RemoteProcessReward` are rewardkit rewards that call such a
server, with retries and a circuit breaker; :class:`RemoteStepScorer` is the same for the PRM
step-scorer interface. Nothing heavy is imported until one of them is used, so ``import rewardkit``
stays fast and works without the extra installed.
"""

from __future__ import annotations

from rewardkit.lazy import lazy_exports

_LAZY = {
    "RemoteReward": "rewardkit.serve.client",
    "RemoteProcessReward": "rewardkit.serve.client",
    "RemoteRewardError": "rewardkit.serve.client",
    "CircuitOpenError": "rewardkit.serve.client",
    "CircuitBreaker": "rewardkit.serve.client",
    "RemoteStepScorer": "rewardkit.serve.client",
    "RewardServer": "rewardkit.serve.server",
    "ServerConfig": "rewardkit.serve.server",
    "create_app": "rewardkit.serve.server",
    "start_server": "rewardkit.serve.server",
    "ServerHandle": "rewardkit.serve.server",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)

