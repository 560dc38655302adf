"""A real `mka serve` server in this process (for the API tests) and small HTTP helpers."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np


@dataclass
class LiveServer:
    url: str
    api: object
    server: object
    folders: object

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.api.queue.stop()


def start_server(runtime, root: Path, *, limits=None, token: str | None = None, host: str = "127.0.0.1") -> LiveServer:
    """An Api over ``runtime`` behind the real HTTP server, on a free loopback port."""
    from mka_core.serve.api import Api
    from mka_core.serve.folders import AppFolders
    from mka_core.serve.limits import Limits
    from mka_core.serve.security import AccessPolicy
    from mka_core.serve.server import ServeHTTPServer

    folders = AppFolders(root)
    api = Api(runtime, folders, limits or Limits())
    server = ServeHTTPServer((host, 0), api, AccessPolicy.for_binding(host, token))
    api.queue.start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return LiveServer(f"http://{host}:{server.port}", api, server, folders)


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body bytes) of one request."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            connection.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer a too-large body (413) and close before reading all of it;
            # its answer is still waiting in the socket, as a browser would read it.
            pass
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def call_json(url: str, method: str = "GET", data=None, headers: dict | None = None):
    body = None if data is None else json.dumps(data).encode()
    status, _, raw = call(url, method, body, {"Content-Type": "application/json", **(headers or {})})
    return status, json.loads(raw) if raw else None


def upload(base: str, kind: str, data: bytes, filename: str = "file"):
    status, _, raw = call(f"{base}/api/uploads?kind={kind}&filename={filename}", "POST", data)
    return status, json.loads(raw)


def wait_for_job(base: str, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, job = call_json(f"{base}/api/jobs/{job_id}")
        assert status == 200, job
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


# -- test media ------------------------------------------------------------------------------------


def wav_bytes(seconds: float = 1.0, rate: int = 16000, freq: float = 440.0) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def png_bytes(width: int = 48, height: int = 40) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_video(path: Path, num_frames: int = 12, width: int = 64, height: int = 48) -> Path:
    """An H.264 clip whose frame k is a solid grey of level 16 k (so picked frames can be told apart)."""
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for k in range(num_frames):
        frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 16 * k, dtype=np.uint8), format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path
