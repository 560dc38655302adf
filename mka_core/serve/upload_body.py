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
the file's bytes, ready to be identified (sniffed) by the upload store. A body that stalls
(no bytes for ``Limits.body_idle_seconds``) is refused with :class:`BodyStalled` (408), and
what arrived of it is removed.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from mka_core.errors import InputError
from mka_core.serve.uploads import BodyStalled, PendingUpload, UploadStore, UploadTooLarge, megabytes

#: Room for a form's boundaries and part headers on top of the file itself.
FORM_OVERHEAD = 64 * 1024
FORM_FIELD = "file"


def declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


async def chunks(request: Request, idle_seconds: float) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; :class:`BodyStalled` when none comes for ``idle_seconds``."""
    stream = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(idle_seconds):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise BodyStalled(f"The request body stalled (nothing arrived for {idle_seconds:g} s); send it again.") from exc
        if chunk:
            yield chunk


async def read_body(request: Request, idle_seconds: float) -> bytes:
    """The whole body (the caller has bounded its declared length)."""
    return b"".join([chunk async for chunk in chunks(request, idle_seconds)])


async def receive_upload(request: Request, store: UploadStore, kind: str, filename: str | None,
                         idle_seconds: float) -> PendingUpload:
    """Receive the request's file into a new pending upload (the caller finishes or aborts it)."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _receive_form(request, store, kind, filename, idle_seconds)
    pending = store.begin(kind, declared_length(request), filename)
    try:
        async for chunk in chunks(request, idle_seconds):
            pending.write(chunk)
    except BaseException:
        pending.abort()
        raise
    return pending


async def _receive_form(request: Request, store: UploadStore, kind: str, filename: str | None,
                        idle_seconds: float) -> PendingUpload:
    length = declared_length(request)
    limit = store.limit(kind)
    if length is None:
        raise InputError("The upload has no Content-Length; send the form with its length.")
    if length > limit + FORM_OVERHEAD:
        raise UploadTooLarge(f"The {kind} upload is {megabytes(length)}, more than the limit of {megabytes(limit)}.")
    # Starlette's own multipart parser, fed through the same stall-checked chunks as a raw body.
    parser = MultiPartParser(request.headers, chunks(request, idle_seconds), max_files=1, max_fields=4,
                             max_part_size=FORM_OVERHEAD)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InputError(f"The form could not be read ({exc.message.rstrip('.')}); send one file as '{FORM_FIELD}'.") from exc
    try:
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
    finally:
        await form.close()
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
