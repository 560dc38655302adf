"""The HTTP server: Python's own ThreadingHTTPServer in front of :class:`~mka_core.serve.api.Api`.

Each connection gets a thread (uploads and polls never wait for generation); generation itself
happens on the job queue's single worker. This module does the HTTP plumbing - access checks,
request bodies, file responses with byte ranges (so audio players can seek), security headers
- and nothing else.
"""

from __future__ import annotations

import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from mka_core.serve.api import Api, Request, Response, error_response
from mka_core.serve.security import AccessPolicy

#: Sent with every response: no sniffing, no framing, no referrer (the URL may hold the token),
#: scripts and media only from this server.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                                "style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
                                "base-uri 'none'; form-action 'self'"),
}
_FILE_CHUNK = 1 << 16
_DRAIN_LIMIT = 1 << 20
#: After refusing a large body, read and discard at most this much (and for at most this long)
#: before closing, so the client sees the answer rather than a reset connection.
_LINGER_BYTES = 64 << 20
_LINGER_SECONDS = 2.0


class _Body:
    """The request body, readable up to Content-Length and no further."""

    def __init__(self, stream, length: int) -> None:
        self._stream, self.remaining = stream, length

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.remaining:
            size = self.remaining
        data = self._stream.read(size) if size else b""
        self.remaining -= len(data)
        if size and not data:
            self.remaining = 0  # the client went away
        return data


class ServeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many short polls from one page: do not let a slow client hold the listen queue.
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], api: Api, policy: AccessPolicy, *, log: bool = False) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api, self.policy, self.log = api, policy, log
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: ServeHTTPServer
    server_version = "mka-serve"
    # Seconds a connection may sit idle (or stall mid-body) before it is closed, so a client
    # that stops sending cannot hold a thread forever.
    timeout = 120
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args) -> None:
        if self.server.log:
            sys.stderr.write(f"mka serve: {self.address_string()} {format % args}\n")

    # -- one request --------------------------------------------------------------------------
    def _serve(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        policy = self.server.policy
        length = self._content_length()
        response = None
        if not policy.host_allowed(self.headers.get("Host")):
            response = error_response(403, "This server answers only to localhost addresses (it is bound to a loopback address).")
        elif self.command in ("POST", "DELETE", "PUT") and not policy.origin_allowed(self.headers.get("Origin"),
                                                                                     self.headers.get("Host")):
            response = error_response(403, "Requests from another site's page are refused.")
        elif length == -1:
            response = error_response(400, "The Content-Length header is not a number.")
        elif self.headers.get("Transfer-Encoding"):
            response = error_response(411, "Send the body with a Content-Length (chunked transfer is not accepted).")
        elif not policy.token_matches(policy.token_from(self.headers, query)):
            response = error_response(401, "This server needs its access token: open the address it printed "
                                           "(with ?token=...), or send 'Authorization: Bearer TOKEN'.")
        elif policy.token and query.get("token") and self.command == "GET" and parts.path == "/":
            # First visit from the printed address: keep the token in a cookie, drop it from the URL.
            response = Response(303, b"", "text/plain", {"Location": "/", "Set-Cookie": policy.cookie_header()})
        if response is None:
            body = _Body(self.rfile, length) if length else None
            request = Request(self.command, parts.path, query, self.headers, body, length)
            try:
                response = self.server.api.handle(request)
            except Exception as exc:  # a bug: answer in JSON, keep serving
                import traceback

                traceback.print_exc(file=sys.stderr)
                response = error_response(500, f"Internal error ({exc.__class__.__name__}); see the server's log.")
            self._drain(body)
        else:
            self.close_connection = True  # the body (if any) was not read
            body = _Body(self.rfile, length) if length and length > 0 else None
        self._send(response)
        if self.close_connection and body is not None and body.remaining:
            self._linger(body)

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        try:
            length = int(value)
        except ValueError:
            return -1
        return length if length >= 0 else -1

    def _drain(self, body: _Body | None) -> None:
        """Read what a handler left of the body, so the connection can serve the next request;
        a large remainder (a refused upload) closes the connection instead."""
        if body is None or body.remaining == 0:
            return
        if body.remaining > _DRAIN_LIMIT:
            self.close_connection = True
            return
        while body.read(_FILE_CHUNK):
            pass

    def _linger(self, body: _Body) -> None:
        """Close gracefully after answering without reading the whole body: stop writing, then
        discard what the client is still sending (bounded), so that closing with unread data
        does not reset the connection and destroy the answer before the client reads it."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_LINGER_SECONDS)
            budget = _LINGER_BYTES
            while budget > 0 and body.remaining:
                chunk = body.read(min(_FILE_CHUNK, budget))
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:  # the client went away or took too long: nothing more to do
            pass

    def _send(self, response: Response) -> None:
        body = response.body
        headers = {**SECURITY_HEADERS, **response.headers}
        if isinstance(body, Path):
            self._send_file(response, body, headers)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", headers.pop("Cache-Control", "no-store"))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, response: Response, path: Path, headers: dict[str, str]) -> None:
        try:
            handle = path.open("rb")
        except OSError:
            self._send(error_response(404, "The file is gone."))
            return
        with handle:
            size = path.stat().st_size
            start, end, status = 0, size - 1, response.status
            ranged = _parse_range(self.headers.get("Range"), size)
            if ranged == "invalid":
                self._send(Response(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"}))
                return
            if ranged is not None:
                start, end = ranged
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self.send_response(status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(end - start + 1 if size else 0))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Cache-Control", headers.pop("Cache-Control", "no-store"))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command == "HEAD" or not size:
                return
            handle.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = handle.read(min(_FILE_CHUNK, remaining))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


def _parse_range(value: str | None, size: int):
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> (start, end), None (no range) or "invalid"."""
    if not value or not value.startswith("bytes=") or "," in value or size == 0:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":
            count = int(last)
            if count <= 0:
                return "invalid"
            return max(0, size - count), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "invalid"
    return start, min(end, size - 1)
