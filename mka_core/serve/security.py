"""Who may talk to the server: the access token, and Host / Origin checks.

* Bound to a loopback address (the default, 127.0.0.1) the server answers only requests whose
  ``Host`` header names a loopback host, so a web page on another site cannot reach it through
  DNS rebinding; no token is needed unless one is given.
* Bound anywhere else, a token is required: ``--token``, or a random one printed at start-up.
  It is accepted as ``Authorization: Bearer TOKEN``, as the ``mka_token`` cookie, or once as
  ``?token=TOKEN`` on the page address (the page then sets the cookie and drops it from the URL).
* Requests that change something (POST, DELETE) carrying an ``Origin`` header must come from
  the server's own origin, so another site's page cannot submit jobs from a visitor's browser.

This module decides; :mod:`mka_core.serve.middleware` applies the decisions to every request.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

COOKIE = "mka_token"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 optionally in brackets) is this machine only."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


def split_host(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` -> ``::1``)."""
    return urlsplit(f"//{value.strip()}").hostname or ""


@dataclass
class AccessPolicy:
    """The checks for one server: where it is bound and which token, if any, it requires."""

    bind_host: str
    token: str | None

    @classmethod
    def for_binding(cls, host: str, token: str | None) -> AccessPolicy:
        """A token is required off loopback: the given one, else a fresh random one."""
        if token is not None and not token.strip():
            token = None
        if token is None and not is_loopback(host):
            token = new_token()
        return cls(bind_host=host, token=token)

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.bind_host)

    def host_allowed(self, host_header: str | None) -> bool:
        """Loopback servers answer only to loopback host names (DNS-rebinding defence)."""
        if not self.loopback_only:
            return True
        return bool(host_header) and is_loopback(split_host(host_header))

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """No Origin (a script or curl), or exactly this server's origin."""
        if not origin:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host_header) and parts.netloc.lower() == host_header.strip().lower()

    def token_matches(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def token_from(self, authorization: str | None, cookies: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        """The token a request carries: from the Authorization header, else the cookie, else the query."""
        auth = authorization or ""
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if COOKIE in cookies:
            return cookies[COOKIE]
        return query.get("token")

    def cookie_header(self) -> str:
        return f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
