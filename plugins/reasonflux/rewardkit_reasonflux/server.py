"""A minimal OpenAI-compatible chat-completions server for a local transformers model.

It lets a judge run in another process (or on another machine) and is what the tests talk to
over loopback. Standard library only (``http.server``). Supported: ``POST /v1/chat/completions``
with ``messages``, ``max_tokens``, ``temperature``, ``n``, ``seed`` and vLLM's ``guided_choice``;
``GET /v1/models``. Not a production server: one model, requests are serialised.

    python -m rewardkit_reasonflux.server --model PATH --port 8000
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rewardkit_reasonflux.judge import JudgeBackend, TransformersBackend


class _Handler(BaseHTTPRequestHandler):
    server: JudgeHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
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
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError) as exc:
            self._send(400, {"error": {"message": f"bad request: {exc}"}})
            return
        n = int(body.get("n", 1))
        try:
            with self.server.lock:
                answers = self.server.backend.complete(
                    [messages], max_tokens=int(body.get("max_tokens", 64)),
                    temperature=float(body.get("temperature", 0.0) or 0.0), n=n,
                    choices=body.get("guided_choice"), seed=body.get("seed"))[0]
        except Exception as exc:  # report, don't kill the server
            self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})
            return
        self.server.requests += 1
        self._send(200, {
            "id": f"chatcmpl-{self.server.requests}", "object": "chat.completion", "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [{"index": i, "message": {"role": "assistant", "content": a}, "finish_reason": "stop"}
                        for i, a in enumerate(answers)],
        })


class JudgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, backend: JudgeBackend, host: str = "127.0.0.1", port: int = 0,
                 model_name: str = "local") -> None:
        super().__init__((host, port), _Handler)
        self.backend = backend
        self.model_name = model_name
        self.lock = threading.Lock()
        self.requests = 0
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> JudgeHTTPServer:
        self._thread = threading.Thread(target=self.serve_forever, name="reasonflux-judge-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> JudgeHTTPServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve(model: str, *, host: str = "127.0.0.1", port: int = 0, model_name: str = "local",
          device: str = "cpu") -> JudgeHTTPServer:
    """Start serving ``model`` in a background thread; ``.base_url`` is the endpoint, ``.stop()`` ends it."""
    return JudgeHTTPServer(TransformersBackend(model, device=device), host, port, model_name).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", default="local")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    srv = JudgeHTTPServer(TransformersBackend(args.model, device=args.device), args.host, args.port, args.model_name)
    print(f"serving {args.model} at {srv.base_url}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
