"""The ASGI stack under `mka serve`: the serve extra, bodies refused before they are read, form
uploads, the security headers on every answer, and create_app() for another ASGI server."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest

from mka_core.errors import InputError
from mka_core.serve.limits import Limits
from tests.serve.helpers import call, call_json, png_bytes, start_server, wav_bytes


@pytest.fixture(scope="module")
def runtime(tiny_model_dir):
    from mka_core.pipeline import Pipeline
    from mka_core.serve.runtime import ModelRuntime

    return ModelRuntime(Pipeline.from_pretrained(tiny_model_dir, device="cpu"), tiny_model_dir, Limits())


@pytest.fixture(scope="module")
def live(runtime, tmp_path_factory):
    server = start_server(runtime, tmp_path_factory.mktemp("serve"),
                          limits=Limits(upload_bytes={"audio": 200_000, "image": 200_000, "video": 200_000}))
    yield server
    server.close()


def raw_request(url: str, head: str, body: bytes = b"", timeout: float = 10.0):
    """Send a request whose body may be shorter than it declares; (status, headers, body) of the answer.

    The socket timeout bounds the wait: a server that tried to read the declared body first
    would never answer in time.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "mka-test-boundary-7d1c"
    chunks = []
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                      "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


# -- the extra ---------------------------------------------------------------------------------------------


def test_serve_without_the_extra_says_which_extra_to_install(tiny_model_dir):
    blocked = ("import sys; sys.modules['uvicorn'] = None; from mka_core.cli.main import main; "
               "sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", blocked, "serve", "--model", str(tiny_model_dir), "--port", "0"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("mka: error:") and 'pip install "mka[serve]"' in lines[0] and "uvicorn" in lines[0]
    assert result.stdout == ""  # refused before any model was loaded or address printed


def test_the_factory_is_importable_the_way_asgi_servers_name_it():
    from uvicorn.importer import import_from_string

    from mka_core.serve.factory import create_app

    assert import_from_string("mka_core.serve:create_app") is create_app
    assert import_from_string("mka_core.serve.factory:create_app") is create_app


# -- bodies are bounded before they are read ------------------------------------------------------------------


def test_an_upload_declaring_more_than_the_limit_is_answered_without_reading_it(live):
    host = urlsplit(live.url).netloc
    before = sorted(live.folders.uploads.iterdir())
    status, headers, raw = raw_request(
        live.url, f"POST /api/uploads?kind=audio HTTP/1.1\nHost: {host}\nContent-Length: {10 ** 10}\n", b"RIFF" * 256)
    assert status == 413 and "limit" in json.loads(raw)["error"], raw
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert sorted(live.folders.uploads.iterdir()) == before
    assert call(f"{live.url}/api/info")[0] == 200


def test_a_json_body_declaring_more_than_the_limit_is_answered_without_reading_it(live):
    host = urlsplit(live.url).netloc
    status, _, raw = raw_request(live.url, f"POST /api/jobs HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                                           f"Content-Length: {Limits().json_bytes + 1}\n", b'{"inputs": [')
    assert status == 413 and "limit" in json.loads(raw)["error"], raw


def test_a_post_without_a_length_is_one_sentence(live):
    host = urlsplit(live.url).netloc
    status, _, raw = raw_request(live.url, f"POST /api/jobs HTTP/1.1\nHost: {host}\n")
    assert status == 400 and json.loads(raw)["error"] == "The request has no Content-Length; send a JSON body."
    status, _, raw = raw_request(live.url, f"POST /api/uploads?kind=audio HTTP/1.1\nHost: {host}\n")
    assert status == 400 and "Content-Length" in json.loads(raw)["error"]
    status, _, raw = call(f"{live.url}/api/uploads?kind=audio", "POST", b"")
    assert status == 400 and "empty" in json.loads(raw)["error"]


def test_a_body_that_stalls_is_refused_and_leaves_nothing(runtime, tmp_path):
    server = start_server(runtime, tmp_path, limits=Limits(body_idle_seconds=0.5))
    try:
        host = urlsplit(server.url).netloc
        status, _, raw = raw_request(server.url, f"POST /api/uploads?kind=audio HTTP/1.1\nHost: {host}\n"
                                                 "Content-Length: 100000\n", wav_bytes(1.0)[:4000])
        assert status == 408 and "stalled" in json.loads(raw)["error"], raw
        assert list(server.folders.uploads.iterdir()) == []  # the half-received .part file is gone
        status, _, raw = raw_request(server.url, f"POST /api/jobs HTTP/1.1\nHost: {host}\nContent-Length: 50\n",
                                     b'{"inputs": ')
        assert status == 408 and "stalled" in json.loads(raw)["error"], raw
        body, content_type = multipart({"file": ("tone.wav", wav_bytes(0.5))})
        status, _, raw = raw_request(server.url, f"POST /api/uploads?kind=audio HTTP/1.1\nHost: {host}\n"
                                                 f"Content-Type: {content_type}\nContent-Length: {len(body)}\n",
                                     body[: len(body) // 2])
        assert status == 408 and "stalled" in json.loads(raw)["error"], raw
        assert list(server.folders.uploads.iterdir()) == []
    finally:
        server.close()


# -- form uploads (curl -F file=@x) ----------------------------------------------------------------------


def test_a_one_file_form_uploads_like_a_raw_body(live):
    body, content_type = multipart({"file": ("../photo.png", png_bytes())})
    status, _, raw = call(f"{live.url}/api/uploads?kind=image", "POST", body, {"Content-Type": content_type})
    upload = json.loads(raw)
    assert status == 201 and upload["format"] == "PNG" and upload["label"] == "photo.png", upload
    assert upload["size"] == len(png_bytes())
    assert live.api.uploads.get(upload["id"]).path.read_bytes() == png_bytes()

    body, content_type = multipart({"file": ("tone.wav", wav_bytes(0.5))})
    status, _, raw = call(f"{live.url}/api/uploads?kind=audio&filename=mine.wav", "POST", body,
                          {"Content-Type": content_type})
    upload = json.loads(raw)
    assert status == 201 and upload["label"] == "mine.wav" and upload["frames"] > 0, upload


def test_bad_forms_are_one_sentence_and_leave_nothing(live):
    before = sorted(live.folders.uploads.iterdir())
    body, content_type = multipart({"other": (None, b"hello")})
    status, _, raw = call(f"{live.url}/api/uploads?kind=image", "POST", body, {"Content-Type": content_type})
    assert status == 400 and "no file field named 'file'" in json.loads(raw)["error"]

    for size in (230_000, 300_000):  # over the limit as a part, and already as a declared form length
        body, content_type = multipart({"file": ("big.wav", b"\0" * size)})
        status, _, raw = call(f"{live.url}/api/uploads?kind=audio", "POST", body, {"Content-Type": content_type})
        assert status == 413 and "limit" in json.loads(raw)["error"], raw

    body, content_type = multipart({"file": ("notes.png", wav_bytes(0.2))})
    status, _, raw = call(f"{live.url}/api/uploads?kind=image", "POST", body, {"Content-Type": content_type})
    assert status == 415 and json.loads(raw)["error"].startswith("The file is audio, not an image")
    assert sorted(live.folders.uploads.iterdir()) == before


# -- every answer carries the rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/nowhere", {}, 404),
        ("DELETE", "/api/info", {}, 405),
        ("GET", "/api/info", {"Host": "evil.example"}, 403),
        ("POST", "/api/jobs", {"Transfer-Encoding": "chunked"}, 411),
        ("GET", "/static/recorder-worklet.js", {}, 200),
        ("GET", "/", {}, 200),
    ],
)
def test_every_answer_carries_the_security_headers(live, method, path, headers, status):
    body = iter([b"{}"]) if "Transfer-Encoding" in headers else None
    got, answer_headers, raw = call(live.url + path, method, body, headers)
    assert got == status
    assert answer_headers["X-Content-Type-Options"] == "nosniff" and answer_headers["X-Frame-Options"] == "DENY"
    assert "default-src 'self'" in answer_headers["Content-Security-Policy"]
    if status >= 400:
        assert answer_headers["Content-Type"] == "application/json" and list(json.loads(raw)) == ["error"]


def test_the_recorder_worklet_is_served_as_javascript(live):
    status, headers, raw = call(f"{live.url}/static/recorder-worklet.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"registerProcessor(" in raw and b"ScriptProcessor" not in raw


def test_log_requests_writes_one_line_per_request_without_the_query(runtime, tmp_path, capfd):
    import re

    from mka_core.serve.api import Api
    from mka_core.serve.folders import AppFolders
    from mka_core.serve.security import AccessPolicy
    from mka_core.serve.server import ServeHTTPServer

    api = Api(runtime, AppFolders(tmp_path), Limits())
    server = ServeHTTPServer(("127.0.0.1", 0), api, AccessPolicy.for_binding("127.0.0.1", "tok3n"), log=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert call(f"{url}/api/info?token=tok3n")[0] == 200
        assert call(f"{url}/api/info")[0] == 401
    finally:
        server.shutdown()
        server.server_close()
    assert not thread.is_alive()
    err = capfd.readouterr().err
    assert re.search(r"^mka serve: 127\.0\.0\.1 GET /api/info 200 \d+ ms$", err, re.M), err
    assert re.search(r"^mka serve: 127\.0\.0\.1 GET /api/info 401 \d+ ms$", err, re.M), err
    assert "tok3n" not in err


# -- create_app() under another ASGI server -------------------------------------------------------------


def serve_in_thread(app):
    """uvicorn with its lifespan on (as `uvicorn --factory` runs it), on a free loopback port."""
    import uvicorn

    from mka_core.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and thread.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    assert server.started
    return server, thread, sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_create_app_reads_the_environment_and_owns_the_queue_and_folder(tiny_model_dir):
    from mka_core.serve import create_app

    app = create_app({"MKA_SERVE_MODEL": str(tiny_model_dir), "MKA_SERVE_DEVICE": "cpu", "MKA_SERVE_QUEUE": "3"})
    root = app.state.api.folders.root
    server, thread, sock, url = serve_in_thread(app)
    try:
        status, info = call_json(f"{url}/api/info")
        assert status == 200 and info["limits"]["queue_length"] == 3
        status, job = call_json(f"{url}/api/jobs", "POST", {"inputs": ["x"], "steps": 1, "duration": 0.2, "seed": 1})
        assert status == 202, job
        deadline = time.time() + 60
        while job["status"] not in ("done", "failed") and time.time() < deadline:  # the lifespan started the queue
            time.sleep(0.05)
            job = call_json(f"{url}/api/jobs/{job['id']}")[1]
        assert job["status"] == "done", job
        assert call(f"{url}/api/info", headers={"Host": "evil.example"})[0] == 403  # loopback rules by default
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not root.exists()  # the temporary work folder went with the lifespan


def test_create_app_off_loopback_needs_the_token(tiny_model_dir, tmp_path):
    from mka_core.serve import create_app

    app = create_app({"MKA_SERVE_MODEL": str(tiny_model_dir), "MKA_SERVE_DEVICE": "cpu", "MKA_SERVE_HOST": "0.0.0.0",
                      "MKA_SERVE_TOKEN": "s3cret", "MKA_SERVE_WORKDIR": str(tmp_path / "work")})
    server, thread, sock, url = serve_in_thread(app)
    try:
        assert call(f"{url}/api/info", headers={"Host": "my-box.lan:7410"})[0] == 401
        assert call(f"{url}/api/info", headers={"Host": "my-box.lan:7410", "Authorization": "Bearer s3cret"})[0] == 200
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert (tmp_path / "work" / "uploads").is_dir()  # a given work folder is kept


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [({"MKA_SERVE_QUEUE": "0"}, "MKA_SERVE_QUEUE must be at least 1"),
     ({"MKA_SERVE_MAX_UPLOAD_MB": "lots"}, "MKA_SERVE_MAX_UPLOAD_MB must be a number")],
)
def test_create_app_refuses_bad_settings_in_one_sentence(tiny_model_dir, environ, fragment):
    from mka_core.serve import create_app

    with pytest.raises(InputError, match=fragment):
        create_app({"MKA_SERVE_MODEL": str(tiny_model_dir), **environ})
