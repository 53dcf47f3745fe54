"""Clients of the reward server: rewards (and a PRM step scorer) that score over HTTP.

Failure handling, in order:

1. transport errors (refused, reset, client timeout) and 502/503/504 answers are retried with
   exponential backoff and jitter, ``retries`` times (:func:`rewardkit.http.request_json`);
2. every request that still fails counts against a :class:`CircuitBreaker`; after
   ``breaker_threshold`` failures in a row it opens and calls fail at once, without touching the
   network, for ``breaker_reset_s`` (doubling while the server stays down, up to
   ``breaker_max_reset_s``); then one caller probes ``GET /health`` (half-open): if the server
   answers, the circuit closes and that call goes on, else it opens again;
3. what is left is a :class:`RemoteRewardError` (or :class:`CircuitOpenError`) carrying the
   server's message. The reward's ``on_error`` policy decides: ``"raise"`` re-raises it,
   ``"none"`` makes the rows ``None`` and counts them in ``rewardkit/<name>/errors``. A failure is
   never turned into a 0.0.

Answers the server could not give (4xx, or 500 because the reward itself raised) are not retried:
the same request would fail again. A row the server marks as an error (it raised under the
served reward's ``on_error="none"``) is ``None`` here and counted in ``errors``, exactly as the
same reward run locally would count it; a plain ``null`` is the reward's "does not apply".

Auth: ``token=`` or the ``REWARDKIT_SERVE_TOKEN`` environment variable is sent as
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rewardkit.http import GATEWAY_STATUS, HTTPError, RetryPolicy, request_json
from rewardkit.prm.scorers import StepScorer, score_over_http
from rewardkit.reward import STEP_SCORES, Batch, ProcessReward, Reward, StepScores

RETRY_STATUS = GATEWAY_STATUS
TOKEN_ENV = "REWARDKIT_SERVE_TOKEN"


class RemoteRewardError(RuntimeError):
    """A remote reward call failed; ``status`` is the HTTP status (None for transport errors)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class CircuitOpenError(RemoteRewardError):
    """The circuit breaker is open: recent calls failed, so this one is not even tried."""


class CircuitBreaker:
    """Closed -> (``threshold`` failures in a row) open -> (reset time) half-open -> closed/open.

    The reset time is ``reset_after_s`` after the first opening and doubles each time a half-open
    trial fails, up to ``max_reset_s``; a success brings it back to ``reset_after_s``. Thread-safe.
    In the half-open state exactly one trial call goes through (:meth:`before_call` returns True
    for it); others fail fast.
    """

    def __init__(self, threshold: int = 5, reset_after_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, max_reset_s: float | None = None) -> None:
        if threshold < 1:
            raise ValueError("breaker threshold must be >= 1")
        self.threshold = threshold
        self.reset_after_s = reset_after_s
        self.max_reset_s = reset_after_s if max_reset_s is None else max(max_reset_s, reset_after_s)
        self.current_reset_s = reset_after_s
        self.clock = clock
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.times_opened = 0
        self._trial_in_flight = False
        self._lock = threading.Lock()

    def before_call(self, what: str = "remote reward") -> bool:
        """Raise :class:`CircuitOpenError` if the call must not go out; True if it is the half-open trial."""
        with self._lock:
            if self.state == "closed":
                return False
            if self.state == "open":
                wait = self.opened_at + self.current_reset_s - self.clock()
                if wait > 0:
                    raise CircuitOpenError(f"{what}: circuit open after {self.failures} failed calls in a row; "
                                           f"next try in {wait:.1f} s")
                self.state = "half_open"
                self._trial_in_flight = False
            if self._trial_in_flight:
                raise CircuitOpenError(f"{what}: circuit half-open, a trial call is already in flight")
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self.state = "closed"
            self.failures = 0
            self.current_reset_s = self.reset_after_s
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self.failures += 1
            self._trial_in_flight = False
            if self.state == "half_open" or self.failures >= self.threshold:
                if self.state == "half_open":  # still down: wait longer before the next probe
                    self.current_reset_s = min(self.max_reset_s, self.current_reset_s * 2)
                if self.state != "open":
                    self.times_opened += 1
                self.state = "open"
                self.opened_at = self.clock()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot send a value of type {type(obj).__name__} to a reward server (not JSON)")


class _RemoteMixin:
    """HTTP transport, retries and breaker shared by the remote reward classes and step scorer."""

    url: str
    remote_name: str
    timeout: float
    retries: int
    backoff_s: float
    max_backoff_s: float
    breaker_threshold: int
    breaker_reset_s: float
    breaker_max_reset_s: float
    max_rows_per_request: int
    token: str | None

    def _init_remote(self, url: str, reward: str, *, timeout: float, retries: int, backoff_s: float,
                     max_backoff_s: float, breaker_threshold: int, breaker_reset_s: float,
                     breaker_max_reset_s: float, max_rows_per_request: int, token: str | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"reward server url must start with http:// or https://, got {url!r}")
        if retries < 0 or max_rows_per_request < 1:
            raise ValueError("retries must be >= 0 and max_rows_per_request >= 1")
        self.url = url.rstrip("/")
        self.remote_name = reward
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.breaker_threshold = breaker_threshold
        self.breaker_reset_s = breaker_reset_s
        self.breaker_max_reset_s = breaker_max_reset_s
        self.max_rows_per_request = max_rows_per_request
        self.token = token
        self._lazy_client = None
        self._lazy_breaker = None
        self._lazy_lock = threading.Lock()

    # lazily built, never pickled (the base Reward drops every "_lazy_" attribute)
    def _client(self):
        if self._lazy_client is None:
            if getattr(self, "_lazy_lock", None) is None:
                self._lazy_lock = threading.Lock()
            with self._lazy_lock:
                if self._lazy_client is None:
                    try:
                        import httpx
                    except ImportError as exc:  # pragma: no cover
                        raise ImportError("remote rewards need httpx: pip install 'rewardkit[serve]'") from exc
                    token = self.token or os.environ.get(TOKEN_ENV)
                    headers = {"authorization": f"Bearer {token}"} if token else None
                    self._lazy_client = httpx.Client(
                        base_url=self.url, timeout=self.timeout, headers=headers,
                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        return self._lazy_client

    @property
    def breaker(self) -> CircuitBreaker:
        if self._lazy_breaker is None:
            self._lazy_breaker = CircuitBreaker(self.breaker_threshold, self.breaker_reset_s,
                                                max_reset_s=self.breaker_max_reset_s)
        return self._lazy_breaker

    def close(self) -> None:
        if self._lazy_client is not None:
            self._lazy_client.close()
            self._lazy_client = None

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        """The server's ``/health`` answer (raises :class:`RemoteRewardError` when unreachable)."""
        try:
            return request_json("GET", self.url + "/health", timeout=self.timeout if timeout is None else timeout,
                                retry=RetryPolicy(retries=0), session=self._client())
        except HTTPError as exc:
            if exc.status is None:
                raise RemoteRewardError(f"reward server {self.url} unreachable: {exc}") from exc
            raise RemoteRewardError(f"reward server {self.url} /health answered {exc.status}",
                                    status=exc.status) from exc

    def _post(self, body: dict[str, Any], stats: dict[str, int] | None = None,
              path: str = "/v1/score") -> dict[str, Any]:
        what = f"remote reward {self.remote_name!r} at {self.url}"
        if self.breaker.before_call(what):
            # half-open: a cheap probe decides, not a big scoring request that may time out
            try:
                self.health(timeout=min(self.timeout, 5.0))
            except RemoteRewardError as exc:
                self.breaker.record_failure()
                raise CircuitOpenError(f"{what}: circuit open, the half-open probe failed ({exc})",
                                       status=exc.status, retryable=True) from exc
            self.breaker.record_success()
        payload = json.dumps(body, default=_json_default, allow_nan=False).encode("utf-8")

        def count_retry(_retry: int, _failure: HTTPError) -> None:
            if stats is not None:
                stats["retries"] = stats.get("retries", 0) + 1

        policy = RetryPolicy(retries=self.retries, backoff_s=self.backoff_s, max_backoff_s=self.max_backoff_s,
                             retry_status=RETRY_STATUS)
        try:
            answer = request_json("POST", self.url + path, payload, timeout=self.timeout, retry=policy,
                                  session=self._client(), on_retry=count_retry)
        except HTTPError as exc:
            answered = exc.status is not None and exc.status >= 300  # else unreachable, or a 2xx that is not JSON
            message = f"{what} answered {exc.status}: {exc.detail}" if answered else f"{what}: {exc}"
            if not exc.retryable:
                # the server is up and answered: not a reason to open the circuit
                self.breaker.record_success()
                raise RemoteRewardError(message, status=exc.status) from None
            self.breaker.record_failure()
            raise RemoteRewardError(f"{message} (gave up after {exc.attempts} attempts)", status=exc.status,
                                    retryable=True) from exc
        self.breaker.record_success()
        return answer

    def _remote_batch(self, batch: Batch, *, steps: bool) -> tuple[list[int], list[Any], list[Any] | None]:
        """Send the batch's scorable rows to the server: their indices, their values and (with
        ``steps``) their step rows. Retries, and rows that raised on the server (``errors``), are
        counted on the batch even when the call fails."""
        idx, rows = _batch_rows(batch)
        if not idx:
            return idx, [], None
        stats: dict[str, int] = {}
        try:
            values, step_rows = self._remote_score(rows["prompts"], rows["completions"], rows["completion_ids"],
                                                   rows["columns"], steps=steps, stats=stats)
        finally:
            batch.counts["remote_retries"] += stats.get("retries", 0)
            batch.counts["errors"] += stats.get("row_errors", 0)
        return idx, values, step_rows

    def _remote_score(self, prompts: Sequence[Any], completions: Sequence[Any],
                      completion_ids: Sequence[Sequence[int]] | None, columns: dict[str, list[Any]],
                      *, steps: bool, stats: dict[str, int] | None = None) -> tuple[list[Any], list[Any] | None]:
        values: list[Any] = []
        step_rows: list[Any] | None = [] if steps else None
        n = len(completions)
        for start in range(0, n, self.max_rows_per_request):
            end = min(n, start + self.max_rows_per_request)
            body = {"reward": self.remote_name, "prompts": list(prompts[start:end]),
                    "completions": list(completions[start:end]),
                    "completion_ids": None if completion_ids is None else [list(c) for c in completion_ids[start:end]],
                    "columns": {k: list(v[start:end]) for k, v in columns.items()}, "steps": steps}
            answer = self._post(body, stats)
            got = answer.get("rewards")
            if not isinstance(got, list) or len(got) != end - start:
                raise RemoteRewardError(f"remote reward {self.remote_name!r} returned "
                                        f"{len(got) if isinstance(got, list) else got!r} values for {end - start} rows")
            for v in got:
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise RemoteRewardError(f"remote reward {self.remote_name!r} returned a non-number {v!r}")
            errors = answer.get("errors")
            if errors is not None:
                if not isinstance(errors, list) or len(errors) != end - start:
                    raise RemoteRewardError(f"remote reward {self.remote_name!r} returned a malformed 'errors' list")
                bad = [i for i, e in enumerate(errors) if e is not None]
                if any(got[i] is not None for i in bad):
                    raise RemoteRewardError(f"remote reward {self.remote_name!r} returned a value for a failed row")
                if stats is not None:
                    stats["row_errors"] = stats.get("row_errors", 0) + len(bad)
            values += got
            if step_rows is not None:
                srows = answer.get("steps")
                step_rows += srows if isinstance(srows, list) and len(srows) == end - start else [None] * (end - start)
        return values, step_rows


def _batch_rows(batch: Batch) -> tuple[list[int], dict[str, Any]]:
    idx = [i for i in range(len(batch)) if not batch.skip[i]]
    return idx, {
        "prompts": [batch.prompts[i] for i in idx],
        "completions": [batch.completions[i] for i in idx],
        "completion_ids": None if batch.completion_ids is None else [batch.completion_ids[i] for i in idx],
        "columns": {k: [v[i] for i in idx] for k, v in batch.columns.items()},
    }


REMOTE_DEFAULTS = dict(timeout=60.0, retries=3, backoff_s=0.1, max_backoff_s=5.0, breaker_threshold=5,
                       breaker_reset_s=1.0, breaker_max_reset_s=30.0, max_rows_per_request=512, token=None)


class RemoteReward(_RemoteMixin, Reward):
    """A reward scored by a rewardkit reward server: ``RemoteReward("http://host:8000", "math.accuracy")``.

    Args:
        url: the server's base URL.
        reward: the name the server serves the reward under.
        timeout: seconds per HTTP request (connect + answer).
        retries: extra attempts on transport errors and 502/503/504.
        backoff_s / max_backoff_s: exponential backoff between attempts (with 50-150% jitter).
        breaker_threshold / breaker_reset_s / breaker_max_reset_s: the circuit breaker (see the
            module docstring): first probe ``breaker_reset_s`` after it opens, then doubling.
        max_rows_per_request: bigger batches are split into several requests.
        token: bearer token for a server started with ``--token`` (default: ``$REWARDKIT_SERVE_TOKEN``).
        name, on_error, max_chars, ...: as for every :class:`rewardkit.Reward`; the name defaults to
            ``reward``. Columns, ``completion_ids`` and the original completions (plain or chat) are
            sent; empty and oversize completions are settled locally as the base class does.
    """

    def __init__(self, url: str, reward: str, *, name: str | None = None, **kwargs: Any) -> None:
        remote = {k: kwargs.pop(k, v) for k, v in REMOTE_DEFAULTS.items()}
        super().__init__(name=name or reward, **kwargs)
        self._init_remote(url, reward, **remote)

    def score_batch(self, batch: Batch) -> list[float | None]:
        idx, values, _ = self._remote_batch(batch, steps=False)
        out: list[float | None] = [None] * len(batch)
        for i, v in zip(idx, values):
            out[i] = v
        return out

    def log_components(self, batch: Batch) -> None:
        log = batch.context.log_metric
        if log is not None:  # same keys on every call, so every rank gathers the same names
            log(f"rewardkit/{self.name}/remote_retries", float(batch.counts.get("remote_retries", 0)))
            log(f"rewardkit/{self.name}/remote_circuit_open", float(self.breaker.state != "closed"))


class RemoteProcessReward(_RemoteMixin, ProcessReward):
    """A process reward scored by a reward server; per-step scores land in ``last_step_scores``.

    ``reducer=None`` (default) takes the server's own scalar; a reducer name re-reduces the
    returned step scores here.
    """

    def __init__(self, url: str, reward: str, *, reducer: str | None = None, name: str | None = None,
                 **kwargs: Any) -> None:
        remote = {k: kwargs.pop(k, v) for k, v in REMOTE_DEFAULTS.items()}
        super().__init__(reducer=reducer or "min", name=name or reward, **kwargs)
        self.use_server_values = reducer is None
        self._init_remote(url, reward, **remote)

    def _fetch(self, batch: Batch) -> tuple[list[float | None], list[StepScores | None]]:
        idx, got, srows = self._remote_batch(batch, steps=True)
        values: list[float | None] = [None] * len(batch)
        steps: list[StepScores | None] = [None] * len(batch)
        for j, i in enumerate(idx):
            values[i] = got[j]
            s = srows[j] if srows is not None else None
            if s is not None:
                steps[i] = StepScores([float(x) for x in s["scores"]], [(int(a), int(b)) for a, b in s["spans"]])
        return values, steps

    def step_scores_batch(self, batch: Batch) -> list[StepScores | None]:
        return self._fetch(batch)[1]

    def score_batch(self, batch: Batch) -> list[float | None]:
        from rewardkit.reducers import reduce_steps

        values, steps = self._fetch(batch)
        batch.share(STEP_SCORES, steps)
        if self.use_server_values:
            return values
        return [None if s is None else reduce_steps(s.scores, self.reducer) for s in steps]

    log_components = RemoteReward.log_components


class RemoteStepScorer(_RemoteMixin, StepScorer):
    """The PRM :class:`~rewardkit.prm.StepScorer` interface over a reward server, with retries
    and a circuit breaker: ``PRMReward(RemoteStepScorer("http://host:8000", "prm"), reducer="min")``.

    Calls ``POST {url}/v1/steps/{scorer}`` (served for every process reward that has a step scorer,
    e.g. ``prm.score``). Failures raise :class:`RemoteRewardError`; the wrapping reward's
    ``on_error`` policy turns them into counted ``None`` or an exception.
    """

    def __init__(self, url: str, scorer: str, **kwargs: Any) -> None:
        remote = {k: kwargs.pop(k, v) for k, v in REMOTE_DEFAULTS.items()}
        if kwargs:
            raise TypeError(f"unknown RemoteStepScorer arguments: {sorted(kwargs)}")
        self._init_remote(url, scorer, **remote)

    def score(self, prompts, steps, *, stats=None):
        if len(prompts) != len(steps):
            raise ValueError(f"{len(prompts)} prompts but {len(steps)} step lists")
        path = f"/v1/steps/{self.remote_name}"
        return score_over_http(lambda payload: self._post(payload, path=path), prompts, steps,
                               chunk_size=self.max_rows_per_request, where=f"remote scorer {self.remote_name!r}",
                               error=RemoteRewardError, stats=stats)
