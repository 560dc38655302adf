"""What every HTTP request passes through before a route sees it (pure ASGI middleware).

* :class:`AccessGuard` applies the rules of :mod:`mka_core.serve.security` - Host, Origin,
  the access token - and refuses bodies it cannot bound (no numeric Content-Length, chunked
  transfer) before the application reads anything.
* :class:`SecurityHeaders` adds the same headers to every answer, refusals and errors included
  (and writes header names in their usual capitalisation).
* :class:`RequestLog` writes one line per request on stderr (``mka serve --log-requests``).
"""

from __future__ import annotations

import sys
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mka_core.serve.security import AccessPolicy

#: Sent with every response: no sniffing, no framing, no referrer (the URL may hold the token),
#: scripts, styles, media and audio worklets only from this server.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                                "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'self'"),
}
#: Methods that change something: they must not come from another site's page.
CHANGING_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def canonical_name(name: bytes) -> bytes:
    """``content-type`` -> ``Content-Type``: names are case-insensitive, but some clients (and
    dict-based test helpers) compare them exactly, and this is how they are usually written."""
    return b"-".join(part[:1].upper() + part[1:] for part in name.split(b"-"))


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The API's error shape: ``{"error": "one sentence."}``."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def refusal(policy: AccessPolicy, scope: Scope) -> Response | None:
    """The answer that stops this request before the application, or None to let it through."""
    connection = HTTPConnection(scope)
    headers = connection.headers
    method = scope["method"]
    host = headers.get("host")
    if not policy.host_allowed(host):
        return json_error(403, "This server answers only to localhost addresses (it is bound to a loopback address).")
    if method in CHANGING_METHODS and not policy.origin_allowed(headers.get("origin"), host):
        return json_error(403, "Requests from another site's page are refused.")
    length = headers.get("content-length")
    if length is not None and not length.strip().isdigit():
        return json_error(400, "The Content-Length header is not a number.")
    if "transfer-encoding" in headers:
        # Every body the API takes is bounded by its declared length, checked before reading.
        return json_error(411, "Send the body with a Content-Length (chunked transfer is not accepted).")
    query = connection.query_params
    if not policy.token_matches(policy.token_from(headers.get("authorization"), connection.cookies, query)):
        return json_error(401, "This server needs its access token: open the address it printed "
                               "(with ?token=...), or send 'Authorization: Bearer TOKEN'.")
    if policy.token and query.get("token") and method == "GET" and scope["path"] == "/":
        # First visit from the printed address: keep the token in a cookie, drop it from the URL.
        return Response(status_code=303, headers={"Location": "/", "Set-Cookie": policy.cookie_header()})
    return None


class AccessGuard:
    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            answer = refusal(self.policy, scope)
            if answer is not None:
                # The body (if any) is left unread; the server discards it without buffering.
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", []))
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if "cache-control" not in headers:  # answers change as jobs run: never cache them
                    headers["Cache-Control"] = "no-store"
                message["headers"] = [(canonical_name(name), value) for name, value in message["headers"]]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [0]
        started = time.perf_counter()

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client") or ("-", 0)
            # The path only: a query may hold the access token.
            sys.stderr.write(f"mka serve: {client[0]} {scope['method']} {scope['path'][:200]} {status[0] or '-'} "
                             f"{1000 * (time.perf_counter() - started):.0f} ms\n")
