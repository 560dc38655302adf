"""Reading an upload's bytes off a Starlette request, bounded before anything is read.

Two shapes are accepted on ``POST /api/uploads?kind=...``:

* the file as the raw body (what the page and ``curl --data-binary @file`` send): the
  declared ``Content-Length`` is checked against the kind's limit, then the body streams
  chunk by chunk into the upload's ``.part`` file;
* a ``multipart/form-data`` form with one file field named ``file`` (``curl -F file=@x.wav``,
  a plain HTML form): the whole form must declare a length within the kind's limit plus a
  little room for the form's own framing; Starlette's parser spools the part, and its size
  is checked again against the limit before it is copied.

Either way the result is a :class:`~mka_core.serve.uploads.PendingUpload` holding exactly
the file's bytes, ready to be identified (sniffed) by the upload store.
"""

from __future__ import annotations

import shutil

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request

from mka_core.errors import InputError
from mka_core.serve.uploads import PendingUpload, UploadStore, UploadTooLarge, megabytes

#: Room for a form's boundaries and part headers on top of the file itself.
FORM_OVERHEAD = 64 * 1024
FORM_FIELD = "file"


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


async def receive_upload(request: Request, store: UploadStore, kind: str, filename: str | None) -> PendingUpload:
    """Receive the request's file into a new pending upload (the caller finishes or aborts it)."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _receive_form(request, store, kind, filename)
    pending = store.begin(kind, declared_length(request), filename)
    try:
        async for chunk in request.stream():
            if chunk:
                pending.write(chunk)
    except BaseException:
        pending.abort()
        raise
    return pending


async def _receive_form(request: Request, store: UploadStore, kind: str, filename: str | None) -> PendingUpload:
    length = declared_length(request)
    limit = store.limit(kind)
    if length is None:
        raise InputError("The upload has no Content-Length; send the form with its length.")
    if length > limit + FORM_OVERHEAD:
        raise UploadTooLarge(f"The {kind} upload is {megabytes(length)}, more than the limit of {megabytes(limit)}.")
    async with request.form(max_files=1, max_fields=4, max_part_size=FORM_OVERHEAD) as form:
        part = form.get(FORM_FIELD)
        if not isinstance(part, UploadFile):
            raise InputError(f"The form has no file field named '{FORM_FIELD}'; send the file as '{FORM_FIELD}' "
                             "or as the raw request body.")
        pending = store.begin(kind, part.size, filename or part.filename)
        try:
            await run_in_threadpool(_copy_part, part, pending)
        except BaseException:
            pending.abort()
            raise
    return pending


def _copy_part(part: UploadFile, pending: PendingUpload) -> None:
    part.file.seek(0)
    shutil.copyfileobj(part.file, _Writer(pending), 1 << 16)


class _Writer:
    """A file-like front for :meth:`PendingUpload.write`."""

    def __init__(self, pending: PendingUpload) -> None:
        self.pending = pending

    def write(self, chunk: bytes) -> int:
        self.pending.write(chunk)
        return len(chunk)
