"""What the JSON API does (documented in docs/serve.md), apart from HTTP.

:class:`Api` holds the upload store and the job queue over one :class:`ModelRuntime`; the
HTTP layer (:mod:`mka_core.serve.app`) routes requests to its methods. Every file an answer
carries is found through an id in an in-memory table (uploads, jobs) or in the fixed table
of static files; a URL segment is never joined onto a folder.
"""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mka_core.errors import InputError, MkaError
from mka_core.serve.folders import AppFolders, is_id
from mka_core.serve.jobs import Job, JobQueue, QueueFull
from mka_core.serve.limits import Limits
from mka_core.serve.requests import parse_job_request
from mka_core.serve.runtime import JobResult, ModelRuntime
from mka_core.serve.uploads import (
    ACCEPT,
    BodyStalled,
    PendingUpload,
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
    "/static/recorder-worklet.js": ("recorder-worklet.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
OUTPUT_FILES = {"audio": ("audio", "audio/wav"), "sidecar": ("sidecar", "application/json"),
                "spectrogram": ("spectrogram", "image/png"), "mel": ("mel", "application/octet-stream")}


class NotFound(InputError):
    """Nothing is known under this id or name (answered with HTTP 404)."""


@dataclass
class FileReply:
    """A file to send: a path the server made itself (never one built from request text), or bytes."""

    body: Path | bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def http_status(exc: BaseException) -> int:
    """The HTTP status that answers an error raised by the API (500 for anything that is not mka's own)."""
    for kind, status in ((NotFound, 404), (BodyStalled, 408), (UploadTooLarge, 413), (UnsupportedUpload, 415),
                         (QueueFull, 503), (MkaError, 400)):
        if isinstance(exc, kind):
            return status
    return 500


class Api:
    """What the server can do, over one runtime, upload store and job queue.

    Methods take plain values (ids, bytes, an upload being received) and return JSON-ready
    dicts or :class:`FileReply`; errors are exceptions that :func:`http_status` maps to a status.
    The HTTP layer (:mod:`mka_core.serve.app`) only routes and converts; tests can call these
    methods directly.
    """

    def __init__(self, runtime: ModelRuntime, folders: AppFolders, limits: Limits) -> None:
        self.runtime, self.folders, self.limits = runtime, folders, limits
        self.uploads = UploadStore(folders, limits.upload_bytes)
        self.queue = JobQueue(self._run_job, max_waiting=limits.queue_length, history=limits.history,
                              forget=self._forget_job)
        self._info: dict[str, Any] | None = None

    def check_json_length(self, length: int | None) -> None:
        """Refuse a JSON body before reading it: it needs a declared length within the limit."""
        if length is None:
            raise InputError("The request has no Content-Length; send a JSON body.")
        if length > self.limits.json_bytes:
            raise UploadTooLarge(f"The JSON body is {length} bytes, more than the limit of {self.limits.json_bytes}.")

    # -- model ----------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = {**self.runtime.describe(), "limits": self.limits.to_json(), "accept": ACCEPT}
        return self._info

    # -- uploads --------------------------------------------------------------------------------------
    def upload(self, pending: PendingUpload) -> dict[str, Any]:
        """Identify a fully received upload, analyse it if it is audio, and describe it (blocking)."""
        upload = pending.finish()
        if upload.kind == "audio":
            try:
                upload.info = self.runtime.analyse_audio(upload)
            except BaseException:
                self.uploads.discard(upload)
                raise
            upload.info["mel_png"] = f"/api/uploads/{upload.id}/mel.png"
            upload.info["mel_npy"] = f"/api/uploads/{upload.id}/mel.npy"
        upload.info["url"] = f"/api/uploads/{upload.id}/file"
        return upload.to_json()

    def upload_file(self, upload_id: str, what: str) -> FileReply:
        upload = self._known_upload(upload_id)
        if upload is None or what not in ("file", "mel.png", "mel.npy"):
            raise NotFound("No such upload.")
        if what == "file":
            return FileReply(upload.path, _media_type(upload.kind, upload.format))
        if upload.kind != "audio":
            raise NotFound("Only audio uploads have a spectrogram.")
        suffix = what.removeprefix("mel")
        return FileReply(upload.path.with_suffix(f".mel{suffix}"),
                         "image/png" if suffix == ".png" else "application/octet-stream")

    def _known_upload(self, upload_id: str):
        try:
            return self.uploads.get(upload_id)
        except InputError:
            return None

    # -- jobs -------------------------------------------------------------------------------------------
    def submit(self, body: bytes) -> dict[str, Any]:
        job_request = parse_job_request(body)
        resolved = self.runtime.resolve(job_request, self.uploads)
        job = self.queue.submit(resolved, resolved.summary())
        return self.describe_job(job)

    def list_jobs(self) -> dict[str, Any]:
        return {"jobs": [self.describe_job(job) for job in reversed(self.queue.jobs())]}

    def job(self, job_id: str) -> dict[str, Any]:
        return self.describe_job(self._job_or_404(job_id))

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self._job_or_404(job_id)
        self.queue.cancel(job)
        return self.describe_job(job)

    def output_file(self, job_id: str, index: int, what: str, download: bool = False) -> FileReply:
        output = self._output(job_id, index)
        if output is None or (what != "bundle" and what not in OUTPUT_FILES):
            raise NotFound("No such output.")
        if what == "bundle":
            return FileReply(_bundle(output), "application/zip",
                             {"Content-Disposition": _attachment(output.audio.stem + ".zip")})
        attribute, content_type = OUTPUT_FILES[what]
        path = getattr(output, attribute)
        return FileReply(path, content_type, {"Content-Disposition": _attachment(path.name)} if download else {})

    def frame_file(self, job_id: str, j: int, k: int) -> FileReply:
        job = self._known_job(job_id)
        result = job.result if job else None
        if not isinstance(result, JobResult) or j >= len(result.frames) or k >= len(result.frames[j]):
            raise NotFound("No such frame.")
        return FileReply(result.frames[j][k], "image/png")

    def _job_or_404(self, job_id: str) -> Job:
        job = self._known_job(job_id)
        if job is None:
            raise NotFound("No such job.")
        return job

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
