"""What stands between the network and the reward server: auth, body limits, slow-client timeouts.

* :class:`Guard` (ASGI, in front of the app): bearer-token auth (constant-time compare), a body
  size limit checked on ``Content-Length`` before anything is read and counted while reading
  (chunked bodies too), and a deadline for reading the whole body. Refusals close the connection.
* :func:`header_timeout_protocol`: uvicorn's h11 protocol plus a deadline for a request's headers.
  uvicorn only times out idle keep-alive connections; a client trickling its headers one byte at a
  time would otherwise hold its connection forever.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from typing import Any

from rewardkit.serve.errors import BadRequest

OPEN_PATHS = ("/health",)  # without a token /health says only {"status": "ok"} (load-balancer probes)


async def send_json(send: Any, status: int, payload: dict[str, Any], *, close: bool = False,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


def _refusal(error: str, kind: str) -> dict[str, Any]:
    return {"error": error, "type": kind, "retryable": False}


class Guard:
    """ASGI middleware: token, body size and body read deadline, before the app sees a request."""

    def __init__(self, app: Any, *, token: str | None, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.expected = None if not token else token.encode()
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.expected is None:
            return True
        got = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, got = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":  # the scheme is case-insensitive (RFC 7235)
                    got = b""
        return hmac.compare_digest(got.strip(), self.expected)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if not self.authorized(headers):
            if scope["path"] in OPEN_PATHS and scope["method"] == "GET":
                await send_json(send, 200, {"status": "ok"})
                return
            await send_json(send, 401, _refusal("missing or wrong bearer token (Authorization: Bearer ...)",
                                                "Unauthorized"),
                            close=True, headers=[(b"www-authenticate", b"Bearer")])
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for name, value in headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(send, 400, _refusal("bad Content-Length", "BadRequest"), close=True)
                    return
                if declared > self.max_body_bytes:
                    await send_json(send, 413, self._too_large(declared), close=True)
                    return
        try:
            body = await asyncio.wait_for(self._read(receive), self.body_timeout_s)
        except asyncio.TimeoutError:
            await send_json(send, 408, _refusal(f"the request body did not arrive within {self.body_timeout_s:g} s",
                                                "RequestTimeout"), close=True)
            return
        if body is None:  # the client went away
            return
        if isinstance(body, int):
            await send_json(send, 413, self._too_large(body), close=True)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> dict[str, Any]:
        return _refusal(f"request body of {size} bytes or more is over this server's limit of "
                        f"{self.max_body_bytes} bytes (--max-body-mb); send fewer rows per request", "TooLarge")

    async def _read(self, receive: Any) -> bytes | int | None:
        """The whole body; the byte count once it passes the limit; None if the client disconnected."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def header_timeout_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol class, closing a connection whose request headers are not complete
    ``header_timeout_s`` after the connection opened or its previous response was sent."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _headers_late(self) -> None:
            self._header_timer = None
            # IDLE: no complete request line + headers yet on this cycle
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return HeaderTimeoutH11Protocol


def resolve_under(root: str | None, value: Any, *, reward: str, column: str) -> Any:
    """A file-path column value, as an absolute real path inside ``root``; BadRequest otherwise.

    The message names the path the client sent, never anything read from a file."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"reward {reward!r}: column {column!r} holds file paths; got {type(value).__name__}")
    if root is None:
        raise BadRequest(f"reward {reward!r} reads files named in column {column!r}; this server was started "
                         "without --data-root, so it reads no client-named files (send the content instead, "
                         "or start it with --data-root DIR)")
    base = os.path.realpath(root)
    path = os.path.realpath(os.path.join(base, value))
    if os.path.commonpath([base, path]) != base:
        raise BadRequest(f"reward {reward!r}: column {column!r} path {value!r} is outside the server's data root")
    if not os.path.isfile(path):
        raise BadRequest(f"reward {reward!r}: column {column!r} path {value!r} is not a file under the "
                         "server's data root")
    return path
