"""OpenAI-compatible chat completions over plain HTTP: one client call and a small local server.

Judges, teachers and frozen agent modules in the method plugins talk to any
``/v1/chat/completions`` endpoint (the OpenAI API, vLLM, SGLang, llama.cpp) through
:func:`post_chat_completions`, and tests and offline pipelines serve a local model the same way
with :class:`ChatCompletionsServer`. Standard library only, so no extra is needed.

    server = ChatCompletionsServer(lambda messages, request: ["42"]).start()
    reply = post_chat_completions(server.base_url, {"model": "local", "messages": [...]})
    texts = choice_texts(reply)
    server.stop()
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rewardkit.http import SERVER_ERROR_STATUS, HTTPError, HTTPTimeout, RetryPolicy, request_json

Messages = list[dict[str, Any]]
GenerateFn = Callable[[Messages, dict[str, Any]], list[str]]
"""``fn(messages, request_body) -> texts``: the server's model, one call per request."""


class ChatCompletionsError(RuntimeError):
    """The endpoint failed: HTTP error, unreachable after retries, malformed JSON or body."""


class ChatCompletionsTimeout(ChatCompletionsError, TimeoutError):
    """The endpoint did not answer within the timeout on any attempt."""


def post_chat_completions(base_url: str, body: dict[str, Any], *, api_key: str | None = None,
                          timeout: float = 60.0, max_retries: int = 2, backoff: float = 0.5) -> dict[str, Any]:
    """POST ``body`` to ``{base_url}/chat/completions`` and return the decoded JSON reply.

    Timeouts, connection errors and 5xx answers are retried ``max_retries`` times (exponential
    backoff from ``backoff`` seconds, with jitter: :func:`rewardkit.http.request_json`); a 4xx
    answer or a reply that is not JSON raises at once, since asking again would not change it.
    """
    url = f"{base_url.rstrip('/')}/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    policy = RetryPolicy(retries=max_retries, backoff_s=backoff, retry_status=SERVER_ERROR_STATUS)
    try:
        return request_json("POST", url, body, headers=headers, timeout=timeout, retry=policy)
    except HTTPTimeout as exc:
        raise ChatCompletionsTimeout(str(exc)) from None
    except HTTPError as exc:
        raise ChatCompletionsError(str(exc)) from None


def choice_texts(reply: dict[str, Any]) -> list[str]:
    """The message contents of a chat-completion reply, in ``index`` order (a null content is "")."""
    try:
        choices = sorted(reply["choices"], key=lambda c: c.get("index", 0))
        texts = [c["message"]["content"] for c in choices]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ChatCompletionsError(f"unexpected body in a chat-completion reply (missing {exc}): "
                                   f"{json.dumps(reply)[:200]}") from None
    return [t if isinstance(t, str) else "" for t in texts]


class _Handler(BaseHTTPRequestHandler):
    server: ChatCompletionsServer

    def log_message(self, format: str, *args: Any) -> None:  # the tests' output stays readable
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            messages = request["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError) as exc:
            self._send(400, {"error": {"message": f"bad request: {exc}"}})
            return
        try:
            with self.server.lock:
                texts = list(self.server.generate(messages, request))
        except Exception as exc:  # a failed generation is the client's 500, not the server's end
            self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})
            return
        with self.server.lock:
            self.server.requests += 1
            number = self.server.requests
        self._send(200, {
            "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", self.server.model_name),
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],
        })


class ChatCompletionsServer(ThreadingHTTPServer):
    """Serve ``generate`` at ``http://host:port/v1`` (``POST /chat/completions``, ``GET /models``).

    Requests are answered one at a time (local models are not thread-safe). Not a production
    server: use vLLM or SGLang for that; this one is for loopback tests and offline pipelines.
    ``port=0`` picks a free port; ``requests`` counts the answered requests.
    """

    daemon_threads = True

    def __init__(self, generate: GenerateFn, *, host: str = "127.0.0.1", port: int = 0,
                 model_name: str = "local") -> None:
        super().__init__((host, port), _Handler)
        self.generate = generate
        self.model_name = model_name
        self.lock = threading.Lock()
        self.requests = 0
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ChatCompletionsServer:
        """Serve in a daemon thread and return self."""
        self._thread = threading.Thread(target=self.serve_forever, name="chat-completions-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ChatCompletionsServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
