"""rewardkit serve under abuse: real servers on loopback, real sockets, real worker processes.

A reward that spins in C holding the GIL, huge and slow bodies, missing tokens, malformed rows,
file paths outside the data root, and a server restart behind an open circuit breaker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import httpx
import pytest

from rewardkit import get_reward
from rewardkit.hookspecs import hookimpl
from rewardkit.reward import Reward, Sample
from rewardkit.serve import RemoteReward, RewardServer, ServerConfig, start_server
from rewardkit.testing import free_port, wait_for_health

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
HERE = Path(__file__).resolve().parent


class Pathological(Reward):
    """len(text) / 100; None on NONE; raises on BOOM; exits the process on CRASH; and on POW a
    modular power with a 2**24-bit exponent: a minute of C code that never releases the GIL."""

    def score(self, sample: Sample):
        text = sample.text
        if "POW" in text:
            return float(pow(3, 1 << (1 << 24), (1 << 2048) - 1) % 2)
        if "CRASH" in text:
            os._exit(3)
        if "BOOM" in text:
            raise ValueError(f"cannot score {text!r}")
        if "NONE" in text:
            return None
        return len(text) / 100


@hookimpl
def rewardkit_register_rewards(register):
    register("test.pathological", Pathological, kind="outcome", description="test reward that misbehaves on cue")


def post(url: str, body: dict, *, headers: dict | None = None, timeout: float = 30) -> httpx.Response:
    return httpx.post(url + "/v1/score", json=body, headers=AUTH if headers is None else headers, timeout=timeout)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("serve-data")
    root = base / "root"
    (root / "stations").mkdir(parents=True)
    (root / "stations" / "tiny.json").write_text(json.dumps({"Line 1": ["Aa", "Bb", "Cc"]}))
    (base / "secret.json").write_text(json.dumps({"TOPSECRET_KEY": 1}))
    (root / "escape.json").symlink_to(base / "secret.json")
    return root


@pytest.fixture(scope="module")
def server(data_root):
    rewards = {"len": Pathological(name="len"), "len_none": Pathological(name="len_none", on_error="none"),
               "route": get_reward("rewardmap.route")}
    config = ServerConfig(max_batch_rows=8, max_wait_ms=5, request_timeout_s=3, header_timeout_s=1,
                          body_timeout_s=1.5, data_root=str(data_root), token=TOKEN)
    with start_server(RewardServer(rewards, config)) as handle:
        yield handle


def test_gil_holding_reward_gets_504_health_stays_up_and_worker_restarts(temp_plugin):
    temp_plugin(sys.modules[__name__], "serve-reliability-test")
    srv = RewardServer({"spin": get_reward("test.pathological")},
                       ServerConfig(request_timeout_s=2, max_wait_ms=0))
    with start_server(srv) as h:
        pid = httpx.get(h.url + "/health").json()["workers"]["spin"]["pid"]
        got: dict = {}

        def stuck():
            t0 = time.perf_counter()
            got["resp"] = post(h.url, {"reward": "spin", "prompts": ["p"], "completions": ["POW"]}, headers={})
            got["seconds"] = time.perf_counter() - t0

        t = threading.Thread(target=stuck)
        t.start()
        time.sleep(0.5)  # the worker is spinning now
        for _ in range(5):  # the event loop answers while the reward holds its process's GIL
            t0 = time.perf_counter()
            assert httpx.get(h.url + "/health", timeout=2).status_code == 200
            assert time.perf_counter() - t0 < 1.0
        t.join(15)
        assert got["resp"].status_code == 504 and got["resp"].json()["retryable"] is True
        assert 1.9 < got["seconds"] < 4.0
        # the stuck worker was killed, a new one answers
        assert RemoteReward(h.url, "spin")(["p"], ["abcd"]) == [pytest.approx(0.04)]
        health = httpx.get(h.url + "/health").json()
        assert health["workers"]["spin"]["restarts"] == 1 and health["workers"]["spin"]["pid"] != pid
        assert health["stats"]["spin"]["timeouts"] == 1
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_sigterm_ends_the_cli_server_while_a_reward_spins():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "REWARDKIT_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "rewardkit.cli", "serve", "--plugin", "test_serve_reliability",
                             "--reward", "test.pathological", "--port", str(port), "--timeout", "60",
                             "--shutdown-timeout", "1", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, proc)
        worker = httpx.get(url + "/health", headers=AUTH).json()["workers"]["test.pathological"]["pid"]
        body = {"reward": "test.pathological", "prompts": ["p"], "completions": ["POW"]}
        threading.Thread(target=lambda: httpx.post(url + "/v1/score", json=body, headers=AUTH, timeout=30),
                         daemon=True).start()
        time.sleep(1.0)
        assert httpx.get(url + "/health", timeout=2).status_code == 200
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.perf_counter() - t0 < 5.0
        time.sleep(0.2)
        with pytest.raises(ProcessLookupError):  # the spinning worker went with it
            os.kill(worker, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_token_required(server):
    body = {"reward": "len", "prompts": ["p"], "completions": ["abc"]}
    assert post(server.url, body, headers={}).status_code == 401
    wrong = post(server.url, body, headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert post(server.url, body, headers={"authorization": TOKEN}).status_code == 401  # no "Bearer "
    assert post(server.url, body, headers={"authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert post(server.url, body).json()["rewards"] == [pytest.approx(0.03)]
    assert post(server.url, body, headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    assert httpx.get(server.url + "/v1/rewards").status_code == 401
    # a bare /health says only that the server is up; with the token, everything (never the token)
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    full = httpx.get(server.url + "/health", headers=AUTH).json()
    assert full["config"]["token"] == "set" and TOKEN not in json.dumps(full)
    with pytest.raises(Exception, match="401"):
        RemoteReward(server.url, "len", retries=0)(["p"], ["abc"])
    assert RemoteReward(server.url, "len", token=TOKEN)(["p"], ["abc"]) == [pytest.approx(0.03)]


def test_client_reads_the_token_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("REWARDKIT_SERVE_TOKEN", TOKEN)
    assert RemoteReward(server.url, "len")(["p"], ["abcde"]) == [pytest.approx(0.05)]


def test_warns_when_binding_a_non_loopback_address_without_a_token():
    from rewardkit.serve.server import warn_if_open

    with pytest.warns(RuntimeWarning, match="WITHOUT a token"):
        warn_if_open("0.0.0.0", ServerConfig())
    for quiet in (("127.0.0.1", ServerConfig()), ("::1", ServerConfig()), ("0.0.0.0", ServerConfig(token="t"))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warn_if_open(*quiet)


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    return s


def _read_all(s: socket.socket, seconds: float = 5) -> bytes:
    s.settimeout(seconds)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def test_oversize_body_refused_before_it_is_read(server):
    big = 64 * 2 ** 20
    # Content-Length: answered from the headers alone, not one body byte sent
    with _raw(server.url) as s:
        s.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {big}\r\n\r\n".encode())
        t0 = time.perf_counter()
        answer = _read_all(s)
        assert time.perf_counter() - t0 < 2
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
    # chunked: counted while read, refused as soon as it passes the limit (32 MB + 1 byte sent)
    with _raw(server.url) as s:
        s.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        mb = b"x" * 2 ** 20
        for _ in range(32):
            s.sendall(b"100000\r\n" + mb + b"\r\n")
        s.sendall(b"1\r\nx\r\n")
        answer = _read_all(s)
    assert answer.startswith(b"HTTP/1.1 413")
    # a body under the limit still works
    r = post(server.url, {"reward": "len", "prompts": ["p"], "completions": ["y" * (2 ** 20)]})
    assert r.status_code == 200


def test_slow_clients_are_dropped(server):
    n = 40
    slow_headers = [_raw(server.url) for _ in range(n)]
    slow_bodies = [_raw(server.url) for _ in range(n)]
    try:
        for s in slow_headers:
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
        for s in slow_bodies:
            s.sendall(f"POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"reward\"".encode())
        t0 = time.perf_counter()
        for _ in range(4):  # keep trickling: a byte now and then must not keep a connection alive
            time.sleep(0.5)
            for s in slow_headers + slow_bodies:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            assert httpx.get(server.url + "/health", timeout=2).status_code == 200  # others still served
        header_answers = [_read_all(s, 3) for s in slow_headers]
        body_answers = [_read_all(s, 3) for s in slow_bodies]
        assert time.perf_counter() - t0 < 8
    finally:
        for s in slow_headers + slow_bodies:
            s.close()
    assert all(a == b"" for a in header_answers)  # closed without an answer
    assert all(a.startswith(b"HTTP/1.1 408") for a in body_answers), body_answers[:2]


def test_big_request_is_scored_in_chunks_of_max_batch_rows_in_order(server):
    before = httpx.get(server.url + "/health", headers=AUTH).json()["stats"]["len"]
    texts = ["z" * (i % 97) + f"-{i}" for i in range(300)]
    r = post(server.url, {"reward": "len", "prompts": ["p"] * 300, "completions": texts})
    assert r.json()["rewards"] == [pytest.approx(len(t) / 100) for t in texts]
    after = httpx.get(server.url + "/health", headers=AUTH).json()["stats"]["len"]
    assert after["batches"] - before["batches"] == 38  # ceil(300 / 8)
    assert after["max_batch_rows"] == 8


@pytest.mark.parametrize("body,fragment", [
    ({"completions": [None]}, "completions[0]"),
    ({"completions": [7]}, "completions[0]"),
    ({"completions": [["not a message"]]}, "completions[0]"),
    ({"prompts": [3]}, "prompts[0]"),
    ({"columns": {"bonus": [1, 2]}}, "bonus"),
    ({"columns": {"bonus": "ab"}}, "bonus"),
    ({"completion_ids": [["a"]]}, "completion_ids"),
    ({"completion_ids": [[1], [2]]}, "completion_ids"),
    ({"steps": "yes"}, "steps"),
    ({"columns": []}, "columns"),
] + [({"columns": {name: ["v"]}}, "reserved") for name in
     ("completions", "prompts", "completion_ids", "log_metric", "log_extra", "trainer_state", "environments", "self")])
def test_malformed_rows_are_422_not_500(server, body, fragment):
    full = {"reward": "len", "prompts": ["p"], "completions": ["abc"], **body}
    r = post(server.url, full)
    assert r.status_code == 422, r.text
    assert fragment in r.json()["error"]


def test_file_path_columns_only_under_the_data_root(server, data_root):
    row = {"reward": "route", "prompts": ["p"], "completions": ["route: Aa -> Cc"],
           "columns": {"station_1": ["Aa"], "station_2": ["Cc"], "question_transfer_count": [0],
                       "difficulty_city": ["easy"]}}

    def with_path(path):
        return post(server.url, {**row, "columns": {**row["columns"], "json": [path]}})

    for bad in ("/etc/passwd", "../secret.json", str(data_root.parent / "secret.json"), "escape.json",
                "stations/../../secret.json", "stations/missing.json"):
        r = with_path(bad)
        assert r.status_code == 422, (bad, r.text)
        assert "data root" in r.json()["error"] and "TOPSECRET" not in r.text and "root:" not in r.text
    ok = with_path("./stations/tiny.json")  # how the released rows spell it, relative to the root
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["rewards"]) == 1


def test_no_data_root_refuses_file_path_columns():
    srv = RewardServer({"route": get_reward("rewardmap.route")}, ServerConfig(workers="thread"))
    with start_server(srv) as h:
        r = httpx.post(h.url + "/v1/score", json={"reward": "route", "prompts": ["p"], "completions": ["x"],
                                                  "columns": {"json": ["/etc/hostname"]}})
        assert r.status_code == 422 and "--data-root" in r.json()["error"]


def test_row_errors_and_nones_are_told_apart(server, log_capture):
    r = post(server.url, {"reward": "len_none", "prompts": ["p"] * 3, "completions": ["ok", "BOOM", "NONE"]})
    answer = r.json()
    assert answer["rewards"] == [pytest.approx(0.02), None, None]
    assert answer["errors"][0] is None and answer["errors"][2] is None
    assert answer["errors"][1].startswith("ValueError: cannot score")
    stats = httpx.get(server.url + "/health", headers=AUTH).json()["stats"]["len_none"]
    assert stats["row_errors"] >= 1 and stats["nones"] >= 1
    client = RemoteReward(server.url, "len_none", token=TOKEN, name="remote")
    assert client(["p"] * 3, ["ok", "BOOM", "NONE"], **log_capture.kwargs()) == [pytest.approx(0.02), None, None]
    assert log_capture.metrics["rewardkit/remote/errors"] == [1.0]  # the row that raised
    assert log_capture.metrics["rewardkit/remote/none"] == [2.0]    # every None, as for a local reward


def test_a_crashing_worker_fails_its_request_and_is_replaced(server):
    r = post(server.url, {"reward": "len", "prompts": ["p"], "completions": ["CRASH"]})
    assert r.status_code == 500 and "died" in r.json()["error"]
    assert post(server.url, {"reward": "len", "prompts": ["p"], "completions": ["ab"]}).json()["rewards"] == [0.02]


def test_breaker_half_open_probe_recovers_soon_after_a_real_restart():
    port = free_port()
    config = ServerConfig(workers="thread")
    client = RemoteReward(f"http://127.0.0.1:{port}", "len", retries=0, timeout=2, on_error="none",
                          breaker_threshold=2, breaker_reset_s=0.2, breaker_max_reset_s=0.8)
    with start_server(RewardServer({"len": Pathological(name="len")}, config), port=port):
        assert client(["p"], ["abc"]) == [pytest.approx(0.03)]
    for _ in range(4):  # down: errors, then the breaker opens and fails fast
        assert client(["p"], ["abc"]) == [None]
        time.sleep(0.1)
    assert client.breaker.state == "open"
    with start_server(RewardServer({"len": Pathological(name="len")}, config), port=port):
        up = time.perf_counter()
        while client(["p"], ["abc"]) != [pytest.approx(0.03)]:
            assert time.perf_counter() - up < 2.0, "rows stayed None after the server was back"
            time.sleep(0.05)
        assert client.breaker.state == "closed"
