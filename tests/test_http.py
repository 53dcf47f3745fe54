"""rewardkit.http: the one retrying JSON-over-HTTP client, against real loopback servers."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rewardkit.http import (
    GATEWAY_STATUS,
    SERVER_ERROR_STATUS,
    HTTPError,
    HTTPTimeout,
    RetryPolicy,
    request_json,
)
from rewardkit.testing import free_port

NO_WAIT = {"backoff_s": 0.0}


class Script(BaseHTTPRequestHandler):
    """Answers POSTs from a script: a list of (status, body) popped one per request."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        srv = self.server
        srv.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        srv.headers.append(dict(self.headers))
        status, body = srv.script.pop(0) if srv.script else (200, {"ok": True})
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    srv.daemon_threads = True
    srv.script, srv.seen, srv.headers = [], [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/score"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_retryable_answers_are_retried_and_counted(server):
    server.script = [(503, {"error": "busy"}), (502, "bad gateway"), (200, {"scores": [1, 2]})]
    retries = []
    got = request_json("POST", server.url, {"x": [1]}, retry=RetryPolicy(retries=2, **NO_WAIT),
                       headers={"Authorization": "Bearer t"}, on_retry=lambda k, err: retries.append((k, err.status)))
    assert got == {"scores": [1, 2]}
    assert server.seen == [{"x": [1]}] * 3 and retries == [(1, 503), (2, 502)]
    assert server.headers[0]["Authorization"] == "Bearer t"


def test_final_failure_carries_status_body_and_attempts(server):
    server.script = [(503, {"error": {"message": "overloaded"}})] * 3
    with pytest.raises(HTTPError, match="answered HTTP 503: overloaded") as info:
        request_json("POST", server.url, {}, retry=RetryPolicy(retries=2, **NO_WAIT))
    err = info.value
    assert (err.status, err.attempts, err.retryable, err.detail) == (503, 3, True, "overloaded")


def test_other_statuses_raise_at_once_unless_classified_retryable(server):
    server.script = [(500, {"error": "reward raised"})]
    start = time.monotonic()
    with pytest.raises(HTTPError, match="HTTP 500") as info:  # a 10 s backoff would show a retry
        request_json("POST", server.url, {}, retry=RetryPolicy(retries=3, backoff_s=10))
    assert time.monotonic() - start < 5 and info.value.attempts == 1 and not info.value.retryable
    # a 500 is retryable where the policy says so, and so is any answer whose body says so
    server.script = [(500, {"error": "oom"}), (409, {"error": "later", "retryable": True})]
    assert request_json("POST", server.url, {}, retry=RetryPolicy(retries=2, retry_status=SERVER_ERROR_STATUS,
                                                                  **NO_WAIT)) == {"ok": True}
    assert len(server.seen) == 4


def test_malformed_json_and_transport_errors(server):
    server.script = [(200, b"<html>")]
    with pytest.raises(HTTPError, match="malformed JSON") as info:
        request_json("POST", server.url, {})
    assert info.value.status == 200
    with pytest.raises(HTTPError, match="cannot reach") as info:
        request_json("POST", f"http://127.0.0.1:{free_port()}/x", {}, retry=RetryPolicy(retries=1, **NO_WAIT))
    assert info.value.status is None and info.value.attempts == 2 and info.value.retryable
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        with pytest.raises(HTTPTimeout, match=r"did not answer within 0.2 s \(2 attempts\)"):
            request_json("POST", f"http://127.0.0.1:{silent.getsockname()[1]}/x", {}, timeout=0.2,
                         retry=RetryPolicy(retries=1, **NO_WAIT))


def test_httpx_session_is_the_same_client(server):
    httpx = pytest.importorskip("httpx")
    server.script = [(504, {"error": "slow"}), (200, {"v": 1})]
    with httpx.Client() as session:
        assert request_json("POST", server.url, b'{"raw": true}', session=session,
                            retry=RetryPolicy(retries=1, **NO_WAIT)) == {"v": 1}
        with pytest.raises(HTTPError, match="cannot reach|ConnectError"):
            request_json("GET", f"http://127.0.0.1:{free_port()}/x", session=session, retry=RetryPolicy(retries=0))
    assert server.seen == [{"raw": True}] * 2


def test_backoff_is_exponential_capped_and_jittered():
    p = RetryPolicy(backoff_s=0.1, max_backoff_s=0.3, jitter=0.5)
    for _ in range(50):
        assert 0.05 <= p.delay(1) <= 0.15 and 0.1 <= p.delay(2) <= 0.3 and 0.15 <= p.delay(5) <= 0.45
    assert RetryPolicy(backoff_s=0.1, jitter=0).delay(3) == pytest.approx(0.4)
    assert GATEWAY_STATUS == (502, 503, 504)
    with pytest.raises(ValueError):
        RetryPolicy(retries=-1)
