"""The routes: the page, its static files, and the JSON API (documented in docs/serve.md).

Handlers take a :class:`Request` and return a :class:`Response`; they never see a socket, so
the tests can call them directly. Every file a response carries is found through an id in an
in-memory table (uploads, jobs) or in the fixed table of static files; a URL segment is
never joined onto a folder.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mka_core.errors import InputError, MkaError
from mka_core.serve.folders import AppFolders, is_id
from mka_core.serve.jobs import Job, JobQueue, QueueFull
from mka_core.serve.limits import Limits
from mka_core.serve.requests import parse_job_request
from mka_core.serve.runtime import JobResult, ModelRuntime
from mka_core.serve.uploads import (
    ACCEPT,
    UnsupportedUpload,
    UploadStore,
    UploadTooLarge,
)

STATIC = Path(__file__).resolve().parent / "static"
#: URL -> (file in static/, content type). The only static files served.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/mask-canvas.js": ("mask-canvas.js", "text/javascript; charset=utf-8"),
    "/static/recorder.js": ("recorder.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
OUTPUT_FILES = {"audio": ("audio", "audio/wav"), "sidecar": ("sidecar", "application/json"),
                "spectrogram": ("spectrogram", "image/png"), "mel": ("mel", "application/octet-stream")}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: BinaryIO | None = None
    length: int | None = None

    def read_json_body(self, limit: int) -> bytes:
        if self.length is None:
            raise InputError("The request has no Content-Length; send a JSON body.")
        if self.length > limit:
            raise UploadTooLarge(f"The JSON body is {self.length} bytes, more than the limit of {limit}.")
        return self.body.read(self.length) if self.body is not None and self.length else b""


@dataclass
class Response:
    status: int
    body: bytes | Path = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, ensure_ascii=False).encode("utf-8"), "application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


class Api:
    """The routes over one runtime, upload store and job queue."""

    def __init__(self, runtime: ModelRuntime, folders: AppFolders, limits: Limits) -> None:
        self.runtime, self.folders, self.limits = runtime, folders, limits
        self.uploads = UploadStore(folders, limits.upload_bytes)
        self.queue = JobQueue(self._run_job, max_waiting=limits.queue_length, history=limits.history,
                              forget=self._forget_job)
        self._info: dict[str, Any] | None = None
        self._routes: list[tuple[str, re.Pattern, Callable[..., Response]]] = [
            ("GET", re.compile(r"^/api/info$"), self.info),
            ("POST", re.compile(r"^/api/uploads$"), self.upload),
            ("GET", re.compile(r"^/api/uploads/([^/]+)/(mel\.png|mel\.npy|file)$"), self.upload_file),
            ("POST", re.compile(r"^/api/jobs$"), self.submit),
            ("GET", re.compile(r"^/api/jobs$"), self.list_jobs),
            ("GET", re.compile(r"^/api/jobs/([^/]+)$"), self.job),
            ("DELETE", re.compile(r"^/api/jobs/([^/]+)$"), self.cancel),
            ("GET", re.compile(r"^/api/jobs/([^/]+)/outputs/(\d{1,4})/(audio|sidecar|spectrogram|mel|bundle)$"),
             self.output_file),
            ("GET", re.compile(r"^/api/jobs/([^/]+)/frames/(\d{1,3})/(\d{1,3})$"), self.frame_file),
        ]

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        if method == "GET" and request.path == "/favicon.ico":
            return Response(204, b"", "image/x-icon")
        if method == "GET" and request.path in STATIC_FILES:
            name, content_type = STATIC_FILES[request.path]
            return Response(200, STATIC / name, content_type, {"Cache-Control": "no-cache"})
        allowed = []
        for route_method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match:
                if route_method == method:
                    try:
                        return handler(request, *match.groups())
                    except UploadTooLarge as exc:
                        return error_response(413, str(exc))
                    except UnsupportedUpload as exc:
                        return error_response(415, str(exc))
                    except QueueFull as exc:
                        return error_response(503, str(exc))
                    except MkaError as exc:
                        return error_response(400, str(exc))
                allowed.append(route_method)
        if allowed:
            return error_response(405, f"{request.path} answers {', '.join(sorted(set(allowed)))}, not {request.method}.")
        return error_response(404, f"Nothing at {request.path[:80]}; the API is described in docs/serve.md.")

    # -- model ----------------------------------------------------------------------------------------
    def info(self, request: Request) -> Response:
        if self._info is None:
            self._info = {**self.runtime.describe(), "limits": self.limits.to_json(), "accept": ACCEPT}
        return json_response(self._info)

    # -- uploads --------------------------------------------------------------------------------------
    def upload(self, request: Request) -> Response:
        kind = request.query.get("kind", "")
        upload = self.uploads.receive(kind, request.body, request.length, request.query.get("filename"))
        if upload.kind == "audio":
            try:
                upload.info = self.runtime.analyse_audio(upload)
            except BaseException:
                self.uploads.discard(upload)
                raise
            upload.info["mel_png"] = f"/api/uploads/{upload.id}/mel.png"
            upload.info["mel_npy"] = f"/api/uploads/{upload.id}/mel.npy"
        upload.info["url"] = f"/api/uploads/{upload.id}/file"
        return json_response(upload.to_json(), 201)

    def upload_file(self, request: Request, upload_id: str, what: str) -> Response:
        upload = self._known_upload(upload_id)
        if upload is None:
            return error_response(404, "No such upload.")
        if what == "file":
            return Response(200, upload.path, _media_type(upload.kind, upload.format))
        if upload.kind != "audio":
            return error_response(404, "Only audio uploads have a spectrogram.")
        suffix = what.removeprefix("mel")
        return Response(200, upload.path.with_suffix(f".mel{suffix}"),
                        "image/png" if suffix == ".png" else "application/octet-stream")

    def _known_upload(self, upload_id: str):
        try:
            return self.uploads.get(upload_id)
        except InputError:
            return None

    # -- jobs -------------------------------------------------------------------------------------------
    def submit(self, request: Request) -> Response:
        job_request = parse_job_request(request.read_json_body(self.limits.json_bytes))
        resolved = self.runtime.resolve(job_request, self.uploads)
        job = self.queue.submit(resolved, resolved.summary())
        return json_response(self.describe_job(job), 202)

    def list_jobs(self, request: Request) -> Response:
        return json_response({"jobs": [self.describe_job(job) for job in reversed(self.queue.jobs())]})

    def job(self, request: Request, job_id: str) -> Response:
        job = self._known_job(job_id)
        return json_response(self.describe_job(job)) if job else error_response(404, "No such job.")

    def cancel(self, request: Request, job_id: str) -> Response:
        job = self._known_job(job_id)
        if job is None:
            return error_response(404, "No such job.")
        self.queue.cancel(job)
        return json_response(self.describe_job(job))

    def output_file(self, request: Request, job_id: str, index: str, what: str) -> Response:
        output = self._output(job_id, int(index))
        if output is None:
            return error_response(404, "No such output.")
        download = request.query.get("download") == "1"
        if what == "bundle":
            return Response(200, _bundle(output), "application/zip",
                            {"Content-Disposition": _attachment(output.audio.stem + ".zip")})
        attribute, content_type = OUTPUT_FILES[what]
        path = getattr(output, attribute)
        headers = {"Content-Disposition": _attachment(path.name)} if download else {}
        return Response(200, path, content_type, headers)

    def frame_file(self, request: Request, job_id: str, j: str, k: str) -> Response:
        job = self._known_job(job_id)
        result = job.result if job else None
        if not isinstance(result, JobResult) or int(j) >= len(result.frames) or int(k) >= len(result.frames[int(j)]):
            return error_response(404, "No such frame.")
        return Response(200, result.frames[int(j)][int(k)], "image/png")

    def _known_job(self, job_id: str) -> Job | None:
        return self.queue.get(job_id) if is_id(job_id) else None

    def _output(self, job_id: str, index: int):
        job = self._known_job(job_id)
        result = job.result if job else None
        if not isinstance(result, JobResult) or index >= len(result.outputs):
            return None
        return result.outputs[index]

    def describe_job(self, job: Job) -> dict[str, Any]:
        data = self.queue.snapshot(job)
        data["position"] = self.queue.position(job)
        data["url"] = f"/api/jobs/{job.id}"
        result = job.result if isinstance(job.result, JobResult) else None
        data["outputs"] = [] if result is None else [self._describe_output(job, n, o) for n, o in enumerate(result.outputs)]
        data["frames"] = [] if result is None else [
            [f"/api/jobs/{job.id}/frames/{j}/{k}" for k in range(len(files))] for j, files in enumerate(result.frames)]
        return data

    @staticmethod
    def _describe_output(job: Job, n: int, output) -> dict[str, Any]:
        base = f"/api/jobs/{job.id}/outputs/{n}"
        return {"index": output.index, "seed": output.seed, "input": output.input_label,
                "input_index": output.input_index, "candidate": output.candidate, "duration": output.duration,
                "name": output.audio.name,
                "urls": {"audio": f"{base}/audio", "sidecar": f"{base}/sidecar", "spectrogram": f"{base}/spectrogram",
                         "mel": f"{base}/mel", "bundle": f"{base}/bundle",
                         "download_audio": f"{base}/audio?download=1", "download_sidecar": f"{base}/sidecar?download=1"}}

    # -- the worker's side -------------------------------------------------------------------------------
    def _run_job(self, job: Job, progress) -> JobResult:
        folder = self.folders.job_folder(job.id)
        try:
            return self.runtime.run(job.payload, folder, progress)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # nothing half-written stays behind
            raise

    def _forget_job(self, job: Job) -> None:
        shutil.rmtree(self.folders.jobs / job.id, ignore_errors=True)


def _bundle(output) -> bytes:
    """The audio and its sidecar (and spectrogram) in one zip, for one download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in (output.audio, output.sidecar, output.spectrogram):
            archive.write(path, path.name)
    return buffer.getvalue()


def _attachment(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "download"
    return f'attachment; filename="{safe}"'


def _media_type(kind: str, fmt: str) -> str:
    table = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp",
             "MP4": "video/mp4", "MOV": "video/quicktime", "WEBM": "video/webm", "AVI": "video/x-msvideo",
             "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg", "AIFF": "audio/aiff"}
    return table.get(fmt, "audio/wav" if kind == "audio" else "application/octet-stream")
