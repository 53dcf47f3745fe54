"""Judge backends against a real loopback HTTP server, parsing, caching, timeouts, quality, trajectory."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rewardkit_reasonflux.judge import (
    CachedGenerator,
    CallableBackend,
    JudgeError,
    JudgeTimeoutError,
    OpenAIBackend,
    TransformersBackend,
    load_template,
    parse_score,
    render,
)
from rewardkit_reasonflux.rewards import JudgeAnswerError
from rewardkit_reasonflux.server import JudgeHTTPServer

import rewardkit
from rewardkit.testing import LogCapture

COMP = "<think>x y\n\ny</think>y"


@pytest.mark.parametrize("text,expected", [
    ("Score: 7", 0.7), ("score: 10", 1.0), ("Score = 3/4", 0.75), ("The step is fine.\nScore: **8**", 0.8),
    ("7", 0.7), (" 7/10 ", 0.7), ("Rating: 0.5/1", 0.5), ("Score: 2 ... final Score: 9", 0.9),
    ("Score: 11", None), ("Score: -1", None), ("great step", None), ("", None), (None, None),
    ("I give it 7 because", None), ("Score: 3/0", None),
])
def test_parse_score_is_strict(text, expected):
    got = parse_score(text, 10)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_render_fills_fields_once_and_keeps_latex():
    t = "Q: {{question}} / S: {{step}}"
    assert render(t, question="\\frac{a}{b} {{step}}", step="s") == "Q: \\frac{a}{b} {{step}} / S: s"
    with pytest.raises(KeyError, match="step"):
        render(t, question="q")
    assert "{{step}}" in load_template("quality")


@pytest.fixture(scope="module")
def tiny_server(tiny_model_path):
    srv = JudgeHTTPServer(TransformersBackend(str(tiny_model_path)), model_name="tiny")
    srv.start()
    yield srv
    srv.stop()


def test_http_backend_matches_local_model(tiny_server, tiny_model_path):
    local = TransformersBackend(str(tiny_model_path))
    http = OpenAIBackend(tiny_server.base_url, "tiny", timeout=30)
    prompts = ["Grade this step: 5 + 9 = 14.", [{"role": "user", "content": "Is 2 + 2 = 4?"}]]
    assert http.complete(prompts, max_tokens=6) == local.complete(prompts, max_tokens=6)
    # constrained choices: the server scores every choice with the model (vLLM's guided_choice)
    http_g = OpenAIBackend(tiny_server.base_url, "tiny", guided_choice_field="guided_choice")
    choices = [f"Score: {i}" for i in range(11)]
    assert http_g.complete(prompts, choices=choices) == local.complete(prompts, choices=choices)
    # n samples come back as n answers
    assert len(http.complete(prompts[:1], max_tokens=4, n=3, temperature=1.0, seed=1)[0]) == 3


def test_quality_over_http_equals_local_and_is_cached(tiny_server, tiny_model_path):
    http = OpenAIBackend(tiny_server.base_url, "tiny", guided_choice_field="guided_choice")
    q_http = rewardkit.get_reward("reasonflux.quality", judge=http, choices=True)
    q_local = rewardkit.get_reward("reasonflux.quality", judge=str(tiny_model_path), choices=True)
    prompts, comps = ["x", "x"], [COMP, COMP]
    before = tiny_server.requests
    v_http = q_http(prompts, comps)
    assert tiny_server.requests - before == 2  # two steps, the duplicate row deduplicated
    assert v_http == pytest.approx(q_local(prompts, comps))
    assert all(0.0 <= v <= 1.0 for v in v_http)
    steps = q_http.score_steps(prompts, comps)  # answered from the cache: no new request
    assert tiny_server.requests - before == 2
    assert len(steps[0].scores) == 2
    assert q_http.judge.generator.stats["hits"] >= 4


def test_free_text_judge_that_rambles_gives_counted_none_not_zero(tiny_server):
    # the untrained tiny model does not answer "Score: N": every answer is malformed
    judge = OpenAIBackend(tiny_server.base_url, "tiny")
    q = rewardkit.get_reward("reasonflux.quality", judge=judge, max_tokens=4)
    log = LogCapture()
    out = q(["x"], [COMP], **log.kwargs())
    answers = q.judge.last_answers
    assert all(parse_score(a) is None for a in answers), answers
    assert out == [None]
    assert log.metrics["rewardkit/reasonflux.quality/judge_malformed"] == [2.0]
    assert log.metrics["rewardkit/reasonflux.quality/none"] == [1.0]


class _SlowHandler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        time.sleep(1.5)
        try:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")
        except OSError:  # the client gave up (that is the point)
            pass


class _GarbageHandler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = b"<html>not json</html>" if "garbage" in self.path else json.dumps({"choices": [{"oops": 1}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_timeout_is_a_clear_error_or_counted_none():
    srv = _serve(_SlowHandler)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        backend = OpenAIBackend(url, "m", timeout=0.3, max_retries=1, backoff=0.0)
        with pytest.raises(JudgeTimeoutError, match="did not answer within 0.3 s"):
            backend.complete(["hi"])
        strict = rewardkit.get_reward("reasonflux.quality", judge=backend)
        with pytest.raises(JudgeTimeoutError):
            strict(["x"], [COMP])
        lenient = rewardkit.get_reward("reasonflux.quality", judge=backend, on_error="none")
        log = LogCapture()
        assert lenient(["x"], [COMP], **log.kwargs()) == [None]
        assert log.metrics["rewardkit/reasonflux.quality/errors"] == [1.0]
    finally:
        srv.shutdown()
        srv.server_close()


def test_malformed_http_bodies_are_clear_errors():
    srv = _serve(_GarbageHandler)
    try:
        port = srv.server_address[1]
        with pytest.raises(JudgeError, match="malformed JSON"):
            OpenAIBackend(f"http://127.0.0.1:{port}/garbage", "m").complete(["hi"])
        with pytest.raises(JudgeError, match="unexpected body"):
            OpenAIBackend(f"http://127.0.0.1:{port}/v1", "m").complete(["hi"])
    finally:
        srv.shutdown()
        srv.server_close()


def _grader(prompt, **_):
    step = prompt.split("Current step:\n", 1)[1].split("\n\nFinal response:", 1)[0]
    return {"x y": "Score: 8", "y": "Score: 4/10"}.get(step, "no idea")


def test_quality_hand_computed_and_malformed_policies():
    judge = CallableBackend(_grader, name="grader")
    q = rewardkit.get_reward("reasonflux.quality", judge=judge)
    assert q.score_steps(["x"], [COMP])[0].scores == pytest.approx([0.8, 0.4])
    assert q(["x"], [COMP]) == pytest.approx([0.6])
    bad = "<think>x y\n\nz</think>y"  # the judge has no grade for "z"
    assert q(["x"], [bad]) == [None]
    skip = rewardkit.get_reward("reasonflux.quality", judge=judge, on_malformed="skip_step")
    assert skip(["x"], [bad]) == pytest.approx([0.8])
    strict = rewardkit.get_reward("reasonflux.quality", judge=judge, on_malformed="raise")
    with pytest.raises(JudgeAnswerError, match="no idea"):
        strict(["x"], [bad])


def test_quality_template_file_and_sqlite_cache(tmp_path):
    calls = []

    def fn(prompt, **_):
        calls.append(prompt)
        return "Score: 5"

    tpl = tmp_path / "judge.txt"
    tpl.write_text("Q={{question}} STEP={{step}}")
    db = tmp_path / "cache.sqlite"
    q1 = rewardkit.get_reward("reasonflux.quality", judge=CallableBackend(fn, name="f"), template=str(tpl),
                              cache_path=str(db))
    assert q1(["x"], [COMP]) == pytest.approx([0.5])
    assert calls == ["Q=x STEP=x y", "Q=x STEP=y"]
    q2 = rewardkit.get_reward("reasonflux.quality", judge=CallableBackend(fn, name="f"), template=str(tpl),
                              cache_path=str(db))
    assert q2(["x"], [COMP]) == pytest.approx([0.5])
    assert len(calls) == 2  # the second reward read the answers from the SQLite cache


def test_cached_generator_key_depends_on_content():
    g = CachedGenerator(CallableBackend(lambda p, **_: p.upper(), name="up"))
    assert g.key("a", max_tokens=1) != g.key("b", max_tokens=1)
    assert g.key("a", max_tokens=1) != g.key("a", max_tokens=2)
    assert g.generate(["a", "b", "a"]) == [["A"], ["B"], ["A"]]
    assert g.stats == {"requests": 3, "hits": 1, "generated": 2}


def test_trajectory_reward_fraction_correct():
    writes, solves = [], []

    def writer(prompt, **_):
        writes.append(prompt)
        return "1. Add the two amounts."

    def policy(prompt, *, n, **_):
        solves.append(prompt)
        assert "1. Add the two amounts." in prompt
        return ["\\boxed{14}", "\\boxed{14}", "\\boxed{15}", "\\boxed{14}"][:n]

    r = rewardkit.get_reward("reasonflux.trajectory", judge=CallableBackend(writer, name="w"),
                             policy=CallableBackend(policy, name="p"), n=4)
    q = "Ben has 5 stones and gets 9 more. How many?"
    out = r([q, q, q], ["<think>5 + 9 = 14</think>\\boxed{14}", "14", "15"], solution=["14", "", "14"])
    assert out == [pytest.approx(0.75), None, pytest.approx(0.75)]
    assert "5 + 9 = 14" in writes[0] and q in writes[0]
    assert r.last_call.detail("templates")[0] == "1. Add the two amounts."
    with pytest.raises(Exception, match="solution"):
        r([q], ["x"])


def test_trajectory_reward_end_to_end_over_http(tiny_server):
    backend = OpenAIBackend(tiny_server.base_url, "tiny")
    r = rewardkit.get_reward("reasonflux.trajectory", judge=backend, n=2, template_max_tokens=8, solve_max_tokens=8)
    out = r(["What is 2 + 2?"], ["<think>2 + 2 = 4</think>\\boxed{4}"], solution=["4"])
    assert out[0] in (0.0, 0.5, 1.0)
    assert len(r.last_call.detail("solutions")[0]) == 2


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.sampled_from([1.0, 5.0, 10.0, 100.0]))
def test_parse_score_never_leaves_unit_interval(text, scale):
    v = parse_score(text, scale)
    assert v is None or 0.0 <= v <= 1.0


def test_quality_reward_with_http_judge_pickles(tiny_server):
    import pickle

    r = rewardkit.get_reward("reasonflux.quality", judge={"type": "openai", "base_url": tiny_server.base_url,
                                                          "model": "tiny", "guided_choice_field": "guided_choice"},
                             choices=True)
    first = r(["x"], [COMP])
    clone = pickle.loads(pickle.dumps(r))
    assert clone.judge.generator._lazy_mem is None  # the cache is not pickled
    assert clone(["x"], [COMP]) == pytest.approx(first)
