"""One retrying JSON-over-HTTP client for every remote call rewardkit makes.

The reward-server client (:mod:`rewardkit.serve.client`), the OpenAI-compatible chat client
(:mod:`rewardkit.serve.openai_compat`, used by :mod:`rewardkit.textgen`) and the PRM
:class:`~rewardkit.prm.RemoteScorer` all send JSON and read JSON back through :func:`request_json`:

* transport failures (refused, reset, timeout) and answers whose status is in
  :attr:`RetryPolicy.retry_status` (or whose JSON body says ``"retryable": true``) are retried
  ``retries`` times, with exponential backoff and jitter between attempts;
* any other non-2xx answer raises at once (asking again would get the same answer);
* what is left raises :class:`HTTPError` (:class:`HTTPTimeout` when every attempt timed out), with
  the status, the decoded body, whether it was retryable and how many attempts were made.

Standard library only; pass ``session=`` an ``httpx.Client`` to reuse pooled keep-alive
connections (the reward server's client does).

    reply = request_json("POST", "http://127.0.0.1:8000/v1/score", {"reward": "len", ...},
                         retry=RetryPolicy(retries=3, backoff_s=0.1))
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

GATEWAY_STATUS = (502, 503, 504)
"""Statuses a proxy or an overloaded server answers while it is (temporarily) down."""
SERVER_ERROR_STATUS = tuple(range(500, 600))
"""Every 5xx: for endpoints where a 500 is often transient (an out-of-memory generation)."""


class HTTPError(RuntimeError):
    """A JSON-over-HTTP call failed for good.

    ``status`` is the HTTP status (None for transport errors), ``body`` the decoded JSON answer (or
    its first 500 characters of text), ``retryable`` whether the failure was of a retryable kind
    (so the server may recover), ``attempts`` how many requests went out.
    """

    def __init__(self, message: str, *, url: str, status: int | None = None, body: Any = None,
                 retryable: bool = False, attempts: int = 1) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.body = body
        self.retryable = retryable
        self.attempts = attempts

    @property
    def detail(self) -> str:
        """The server's own error message when the body carries one (``{"error": ...}``), else the body."""
        body = self.body
        if isinstance(body, dict) and "error" in body:
            err = body["error"]
            return str(err.get("message", err) if isinstance(err, dict) else err)
        return str(body)


class HTTPTimeout(HTTPError, TimeoutError):
    """Every attempt timed out."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry and how long to wait.

    The wait before retry ``k`` (1-based) is ``min(max_backoff_s, backoff_s * growth**(k-1))``
    times a random factor in ``[1 - jitter, 1 + jitter]`` (jitter spreads many clients' retries).
    """

    retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    growth: float = 2.0
    jitter: float = 0.5
    retry_status: Collection[int] = GATEWAY_STATUS

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_s < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("retries and backoff_s must be >= 0 and jitter in [0, 1]")

    def delay(self, retry: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * self.growth ** (retry - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    def retryable(self, status: int, body: Any) -> bool:
        return status in self.retry_status or (isinstance(body, dict) and bool(body.get("retryable")))


class _TransportError(Exception):
    def __init__(self, message: str, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def _send_urllib(method: str, url: str, data: bytes | None, headers: dict[str, str],
                 timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:  # the server answered: a status, not a transport failure
        return exc.code, exc.read()
    except TimeoutError as exc:
        raise _TransportError(f"timed out ({exc})", True) from None
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, TimeoutError)
        raise _TransportError(f"timed out ({exc.reason})" if timed_out else f"cannot reach: {exc.reason}",
                              timed_out) from None
    except (ConnectionError, OSError) as exc:  # reset mid-answer, ...
        raise _TransportError(f"cannot reach: {type(exc).__name__}: {exc}", False) from None


def _send_httpx(session: Any, method: str, url: str, data: bytes | None, headers: dict[str, str],
                timeout: float) -> tuple[int, bytes]:
    import httpx

    try:
        resp = session.request(method, url, content=data, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise _TransportError(f"{type(exc).__name__}: {exc}", True) from None
    except httpx.HTTPError as exc:
        raise _TransportError(f"{type(exc).__name__}: {exc}", False) from None
    return resp.status_code, resp.content


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return raw[:500].decode("utf-8", "replace")


def request_json(method: str, url: str, body: Any = None, *, headers: dict[str, str] | None = None,
                 timeout: float = 60.0, retry: RetryPolicy | None = None, session: Any = None,
                 on_retry: Callable[[int, HTTPError], None] | None = None) -> Any:
    """Send ``body`` as JSON (``bytes`` go as they are) and return the decoded JSON answer.

    Args:
        method / url: ``"POST"``, ``"GET"``, ...; the full URL.
        headers: extra headers (``Content-Type: application/json`` is always sent with a body).
        timeout: seconds per attempt.
        retry: the :class:`RetryPolicy` (default: 2 retries on transport errors and 502/503/504).
        session: an ``httpx.Client`` for pooled connections; None uses the standard library.
        on_retry: ``fn(retry_number, failure)`` called before each retry (for counting).

    Raises :class:`HTTPError` (:class:`HTTPTimeout`); a 2xx answer that is not JSON raises at once.
    """
    policy = retry or RetryPolicy()
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    last: HTTPError | None = None
    timeouts = 0
    attempts = policy.retries + 1
    for attempt in range(attempts):
        if attempt:
            assert last is not None
            if on_retry is not None:
                on_retry(attempt, last)
            time.sleep(policy.delay(attempt))
        try:
            if session is None:
                status, raw = _send_urllib(method, url, data, hdrs, timeout)
            else:
                status, raw = _send_httpx(session, method, url, data, hdrs, timeout)
        except _TransportError as exc:
            timeouts += exc.timed_out
            last = HTTPError(f"{url}: {exc}", url=url, retryable=True, attempts=attempt + 1)
            continue
        if 200 <= status < 300:
            try:
                return json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise HTTPError(f"{url} returned malformed JSON: {raw[:200]!r}", url=url, status=status,
                                body=raw[:500].decode("utf-8", "replace"), attempts=attempt + 1) from None
        answer = _decode(raw)
        err = HTTPError(f"{url} answered HTTP {status}", url=url, status=status, body=answer,
                        retryable=policy.retryable(status, answer), attempts=attempt + 1)
        err.args = (f"{url} answered HTTP {status}: {err.detail[:300]}",)
        if not err.retryable:
            raise err
        last = err
    assert last is not None
    if timeouts == attempts:
        raise HTTPTimeout(f"{url} did not answer within {timeout:g} s ({attempts} attempts)", url=url,
                          retryable=True, attempts=attempts)
    last.attempts = attempts
    raise last
