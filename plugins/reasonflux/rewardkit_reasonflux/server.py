"""Serve a judge backend as an OpenAI-compatible chat-completions endpoint.

It lets a judge run in another process (or on another machine) and is what the tests talk to
over loopback. The server is the core :class:`rewardkit.TextModelServer` (a request's
``max_tokens``, ``temperature``, ``top_p``, ``n``, ``seed`` and vLLM's ``guided_choice`` become
generation options of the backend); this module gives it ReasonFlux's name and a command line. Not a
production server: one model, requests are serialised.

    python -m rewardkit_reasonflux.server --model PATH --port 8000
"""

from __future__ import annotations

import argparse
from typing import Any

from rewardkit import TextModelServer
from rewardkit_reasonflux.judge import TransformersBackend


class JudgeHTTPServer(TextModelServer):
    """A judge backend (any :class:`rewardkit.TextModel`) behind ``/v1/chat/completions``; ``.base_url``
    is the endpoint."""

    def __init__(self, backend: Any, host: str = "127.0.0.1", port: int = 0, model_name: str = "local") -> None:
        super().__init__(backend, host=host, port=port, model_name=model_name)
        self.backend = self.text_model


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
