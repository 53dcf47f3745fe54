"""The OpenAI-compatible client call and loopback server the plugins' judges and modules share."""

import json
import socket
import time
import urllib.request

import pytest

from rewardkit.serve.openai_compat import (
    ChatCompletionsError,
    ChatCompletionsServer,
    ChatCompletionsTimeout,
    choice_texts,
    post_chat_completions,
)

MESSAGES = [{"role": "user", "content": "2 + 2?"}]


def test_round_trip_returns_n_choices_in_order_and_counts_requests():
    seen = []

    def generate(messages, request):
        seen.append((messages, request["n"], request["temperature"]))
        return [f"answer {i}" for i in range(request["n"])]

    with ChatCompletionsServer(generate, model_name="tiny") as server:
        reply = post_chat_completions(server.base_url, {"model": "tiny", "messages": MESSAGES, "n": 3,
                                                        "temperature": 0.5})
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as resp:
            models = json.loads(resp.read())
        assert server.requests == 1
    assert choice_texts(reply) == ["answer 0", "answer 1", "answer 2"]
    assert reply["model"] == "tiny" and seen == [(MESSAGES, 3, 0.5)]
    assert [m["id"] for m in models["data"]] == ["tiny"]


def test_server_errors_are_retried_and_client_errors_are_not():
    calls = []

    def flaky(messages, request):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("out of memory")
        return ["ok"]

    with ChatCompletionsServer(flaky) as server:
        reply = post_chat_completions(server.base_url, {"messages": MESSAGES}, max_retries=2, backoff=0)
        assert choice_texts(reply) == ["ok"] and len(calls) == 3
        calls.clear()
        with pytest.raises(ChatCompletionsError, match="HTTP 500: .*out of memory"):
            post_chat_completions(server.base_url, {"messages": MESSAGES}, max_retries=1, backoff=0)
        assert len(calls) == 2
        # a retry would sleep 10 s first: raising at once shows that 4xx answers are not retried
        start = time.monotonic()
        with pytest.raises(ChatCompletionsError, match="HTTP 400"):   # empty messages: asking again won't help
            post_chat_completions(server.base_url, {"messages": []}, max_retries=5, backoff=10)
        with pytest.raises(ChatCompletionsError, match="HTTP 404"):
            post_chat_completions(server.base_url.replace("/v1", "/nope"), {"messages": MESSAGES}, backoff=10)
        assert time.monotonic() - start < 5


def test_unreachable_and_silent_endpoints_raise_named_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]      # closed again: nothing listens there
    with pytest.raises(ChatCompletionsError, match="cannot reach"):
        post_chat_completions(f"http://127.0.0.1:{port}/v1", {"messages": MESSAGES}, max_retries=1, backoff=0)

    with socket.socket() as silent:    # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        with pytest.raises(ChatCompletionsTimeout, match=r"did not answer within 0.2 s \(2 attempts\)"):
            post_chat_completions(url, {"messages": MESSAGES}, timeout=0.2, max_retries=1, backoff=0)


def test_choice_texts_orders_by_index_and_rejects_malformed_bodies():
    reply = {"choices": [{"index": 1, "message": {"content": "b"}}, {"index": 0, "message": {"content": None}}]}
    assert choice_texts(reply) == ["", "b"]
    with pytest.raises(ChatCompletionsError, match="missing 'choices'"):
        choice_texts({"error": "overloaded"})
    with pytest.raises(ChatCompletionsError, match="missing 'message'"):
        choice_texts({"choices": [{"text": "legacy completion"}]})
