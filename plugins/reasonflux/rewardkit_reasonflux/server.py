"""Serve a judge backend as an OpenAI-compatible chat-completions endpoint.

It lets a judge run in another process (or on another machine) and is what the tests talk to
over loopback. The HTTP side is :class:`rewardkit.serve.openai_compat.ChatCompletionsServer`;
this module maps a request's ``max_tokens``, ``temperature``, ``n``, ``seed`` and vLLM's
``guided_choice`` onto :meth:`JudgeBackend.complete`. Not a production server: one model,
requests are serialised.

    python -m rewardkit_reasonflux.server --model PATH --port 8000
"""

from __future__ import annotations

import argparse
from typing import Any

from rewardkit.serve.openai_compat import ChatCompletionsServer
from rewardkit_reasonflux.judge import JudgeBackend, TransformersBackend


class JudgeHTTPServer(ChatCompletionsServer):
    """A :class:`JudgeBackend` behind ``/v1/chat/completions``; ``.base_url`` is the endpoint."""

    def __init__(self, backend: JudgeBackend, host: str = "127.0.0.1", port: int = 0,
                 model_name: str = "local") -> None:
        super().__init__(self._complete, host=host, port=port, model_name=model_name)
        self.backend = backend

    def _complete(self, messages: list[dict[str, Any]], request: dict[str, Any]) -> list[str]:
        return self.backend.complete(
            [messages], max_tokens=int(request.get("max_tokens", 64)),
            temperature=float(request.get("temperature", 0.0) or 0.0), n=int(request.get("n", 1)),
            choices=request.get("guided_choice"), seed=request.get("seed"))[0]


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
