"""A Hugging Face Hub stand-in on 127.0.0.1 for the pull tests (stdlib http.server in a thread).

It answers the requests ``huggingface_hub.hf_hub_download`` makes (read from the installed
version's ``file_download.py`` / ``utils/_http.py``):

* ``HEAD`` and ``GET`` of ``/{repo}/resolve/{revision}/{path}`` (models) and
  ``/spaces/{repo}/resolve/{revision}/{path}`` (Spaces), the path URL-quoted;
* headers ``X-Repo-Commit`` (the commit), ``ETag`` (a small file's git blob id) or, for large
  (LFS) files, ``X-Linked-Etag`` (the content's sha256) and ``X-Linked-Size``, plus
  ``Content-Length`` and ``Accept-Ranges``;
* ``Range: bytes=N-`` answered with ``206`` and ``Content-Range``;
* errors as the Hub gives them: ``404`` with ``X-Error-Code: RepoNotFound`` or ``EntryNotFound``.

Faults for the tests: ``cut_after[path] = n`` sends the first n bytes of the next full GET of
``path`` and closes the connection; ``fail_status[path] = code`` answers every later GET of
``path`` with that status; ``tamper[path] = bytes`` serves other bytes than the ones the
headers describe; ``stall_after[path] = n`` sends n bytes of the next full GET, sets
``stalled`` and holds the connection open (until the client goes away or ``stop``). ``log``
records (method, path, Range header) of every request. ``plain[name]`` is served at
``/plain/NAME`` like any https file (no hub headers), for the catalogue's address files.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors", ".bin")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


class LocalHub:
    def __init__(self, repos: dict[tuple[str, str], dict[str, bytes]]) -> None:
        self.repos = {key: dict(files) for key, files in repos.items()}
        self.cut_after: dict[str, int] = {}
        self.fail_status: dict[str, int] = {}
        self.tamper: dict[str, bytes] = {}
        self.stall_after: dict[str, int] = {}
        self.plain: dict[str, bytes] = {}
        self.stalled = threading.Event()
        self.released = threading.Event()
        self.log: list[tuple[str, str, str | None]] = []
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            owner = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def commit(self, key: tuple[str, str]) -> str:
        """The repo's commit id (fixed per repo, as tests add repos after start)."""
        return hashlib.sha1(repr(key).encode()).hexdigest()

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the GETs of ``path`` (None for a full GET)."""
        return [rng for method, p, rng in self.log if method == "GET" and p == path]

    # -- routing ------------------------------------------------------------------------------------
    def route(self, url_path: str) -> tuple[tuple[str, str] | None, str, str]:
        """((type, repo) or None, revision, file path) of a resolve URL."""
        parts = unquote(urlsplit(url_path).path).lstrip("/").split("/")
        kind = "model"
        if parts and parts[0] in ("spaces", "datasets"):
            kind = parts.pop(0)[:-1]
        if len(parts) < 5 or parts[2] != "resolve":
            return None, "", ""
        return (kind, f"{parts[0]}/{parts[1]}"), parts[3], "/".join(parts[4:])


class _Handler(BaseHTTPRequestHandler):
    owner: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _error(self, code: int, error_code: str, commit: str | None = None) -> None:
        self.send_response(code)
        self.send_header("X-Error-Code", error_code)
        self.send_header("X-Error-Message", error_code)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _plain(self, name: str, body: bool) -> None:
        hub = self.owner
        hub.log.append((self.command, name, self.headers.get("Range")))
        if name not in hub.plain:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = hub.plain[name]
        rng = self.headers.get("Range")
        start = int(rng[len("bytes="):].split("-")[0] or 0) if rng and rng.startswith("bytes=") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            self.wfile.write(data[start:])

    def _answer(self, *, body: bool) -> None:
        hub = self.owner
        if self.path.startswith("/plain/"):
            return self._plain(unquote(self.path[len("/plain/"):]), body)
        key, _revision, path = hub.route(self.path)
        hub.log.append((self.command, path, self.headers.get("Range")))
        if key is None or key not in hub.repos:
            return self._error(404, "RepoNotFound")
        commit = hub.commit(key)
        files = hub.repos[key]
        if path not in files:
            return self._error(404, "EntryNotFound", commit)
        data = files[path]
        if body and path in hub.fail_status:
            return self._error(hub.fail_status[path], "ServerError", commit)
        sent = hub.tamper.get(path, data) if body else data
        start = 0
        rng = self.headers.get("Range")
        if body and rng and rng.startswith("bytes="):
            start = int(rng[len("bytes="):].split("-")[0] or 0)
        chunk = sent[start:]
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if path.endswith(LFS_SUFFIXES):
            digest = hashlib.sha256(data).hexdigest()
            self.send_header("ETag", f'"{digest}"')
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(len(data)))
        else:
            self.send_header("ETag", f'"{git_blob_id(data)}"')
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(sent) - 1}/{len(sent)}")
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if not body:
            return
        stall = hub.stall_after.pop(path, None) if not start else None
        if stall is not None:
            self.wfile.write(chunk[:stall])
            self.wfile.flush()
            hub.stalled.set()
            hub.released.wait(60)
            self.close_connection = True
            return
        cut = hub.cut_after.pop(path, None) if not start else None
        if cut is not None:
            self.wfile.write(chunk[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)
