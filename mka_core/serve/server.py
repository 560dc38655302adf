"""Running the app: uvicorn on a socket this module binds itself.

Binding first (rather than letting uvicorn bind) gives the caller the real port before the
server runs (``--port 0``) and turns "address in use" into an ``OSError`` at construction,
which ``mka serve`` reports in one sentence. :class:`ServeHTTPServer` keeps the shape of the
standard library's servers - ``serve_forever()`` blocks, ``shutdown()`` from another thread
stops it, ``server_close()`` closes the socket - so the CLI and the tests drive it alike.

Run in the main thread, uvicorn catches SIGINT and SIGTERM, finishes the requests in flight,
and raises the signal again once it has stopped, so ``mka serve``'s own handlers (Ctrl-C and
SIGTERM both mean "stop cleanly") run after the server is down.
"""

from __future__ import annotations

import socket
import threading

from mka_core.serve.api import Api
from mka_core.serve.app import create_app
from mka_core.serve.security import AccessPolicy

#: Seconds requests in flight get to finish once a stop is asked for.
GRACEFUL_SECONDS = 3
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE_SECONDS = 5


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when the host has a colon); OSError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class ServeHTTPServer:
    """The Starlette app for ``api`` under ``policy``, served by uvicorn on ``address``."""

    def __init__(self, address: tuple[str, int], api: Api, policy: AccessPolicy, *, log: bool = False) -> None:
        import uvicorn

        self.api, self.policy = api, policy
        self.app = create_app(api, policy, log_requests=log)
        self.socket = bind_socket(*address)
        self.server_address = self.socket.getsockname()
        self._server = uvicorn.Server(uvicorn.Config(
            self.app,
            log_config=None,  # mka prints its own lines; uvicorn's warnings and tracebacks still reach stderr
            log_level="warning",
            access_log=False,  # --log-requests is mka's RequestLog middleware
            server_header=False,
            proxy_headers=False,  # the access rules look at the connection itself, not at forwarded headers
            lifespan="off",  # the queue's lifetime is the caller's (see mka_core.serve.app)
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        ))
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serve until :meth:`shutdown` (or, in the main thread, SIGINT/SIGTERM). ``poll_interval`` is unused."""
        self._stopped.clear()
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Ask the server to stop and wait until :meth:`serve_forever` has returned."""
        self._server.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        self.socket.close()
