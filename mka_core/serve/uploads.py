"""Uploaded images, videos and audio: size and type limits, sniffing, validation, storage.

An upload arrives as the request body with its kind named in the URL (the HTTP layer also
unwraps a one-file multipart form). Its declared size is checked against the limit before
anything is read; it is then streamed into the uploads folder under a new random id (never
past the declared size) and identified from its *content*, never from the client's file name
or Content-Type: an image must open with Pillow as PNG, JPEG, GIF, WebP or BMP and decode
completely; audio must be a format libsndfile reads (WAV, FLAC, OGG, MP3, AIFF); a video must
be an MP4/MOV, WebM/Matroska or AVI container with a decodable video stream. The stored file
takes the suffix of the detected format. Anything else is an :class:`InputError` with one
sentence, and nothing is kept.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mka_core.errors import InputError
from mka_core.serve.folders import AppFolders, is_id, new_id

KINDS = ("audio", "image", "video")
IMAGE_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
AUDIO_FORMATS = {"WAV": ".wav", "WAVEX": ".wav", "RF64": ".wav", "W64": ".w64", "FLAC": ".flac", "OGG": ".ogg",
                 "MP3": ".mp3", "AIFF": ".aiff"}
#: What the page's file pickers offer (the server still checks the content).
ACCEPT = {
    "image": "image/png,image/jpeg,image/gif,image/webp,image/bmp",
    "audio": "audio/*,.wav,.flac,.ogg,.mp3,.aiff",
    "video": "video/mp4,video/quicktime,video/webm,video/x-matroska,video/x-msvideo,.mp4,.mov,.webm,.mkv,.avi",
}
_CHUNK = 1 << 16


class UploadTooLarge(InputError):
    """The body passed the size limit (answered with HTTP 413)."""


class BodyStalled(InputError):
    """No bytes of the request body arrived for too long (answered with HTTP 408)."""


class UnsupportedUpload(InputError):
    """The content is not of the kind asked for (answered with HTTP 415)."""


@dataclass
class Upload:
    """A validated upload: only the server's own id and path, plus what it learnt from the content."""

    id: str
    kind: str
    path: Path
    label: str
    size: int
    format: str
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "size": self.size, "format": self.format,
                **self.info}


def display_label(filename: str | None, kind: str) -> str:
    """A short printable name for the page (never used as a path)."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()[:80]
    return name or f"{kind} upload"


def guess_kind(head: bytes) -> str | None:
    """What the first bytes look like, to say so when the kind is wrong."""
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3") or (head[:4] == b"RIFF" and head[8:11] == b"AVI"):
        return "video"
    if (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or head.startswith((b"fLaC", b"OggS", b"ID3", b"FORM")):
        return "audio"
    return None


class PendingUpload:
    """An upload being received: the body streams into ``<id>.part``, never past the declared length.

    :meth:`finish` identifies the content (blocking: call it off an event loop) and keeps it
    under its detected suffix; :meth:`abort` removes what was written. Writing happens on the
    caller's side, so an async server can feed it chunk by chunk as they arrive.
    """

    def __init__(self, store: UploadStore, upload_id: str, kind: str, length: int, filename: str | None,
                 part: Path) -> None:
        self.store, self.id, self.kind, self.length, self.filename, self.part = store, upload_id, kind, length, filename, part
        self.received = 0
        self._handle = part.open("wb")

    @property
    def missing(self) -> int:
        return self.length - self.received

    def write(self, chunk: bytes) -> None:
        if len(chunk) > self.missing:  # more than declared: a broken client, never buffered
            raise InputError(f"The upload sent more than the {self.length} bytes it declared; send it again.")
        self._handle.write(chunk)
        self.received += len(chunk)

    def finish(self) -> Upload:
        self._handle.close()
        if self.received < self.length:
            raise InputError(f"The upload stopped after {self.received} of {self.length} bytes; send it again.")
        fmt, suffix = self.store._identify(self.kind, self.part)
        path = self.store.folders.upload_path(self.id, suffix)
        os.replace(self.part, path)
        upload = Upload(id=self.id, kind=self.kind, path=path, label=display_label(self.filename, self.kind),
                        size=self.length, format=fmt)
        self.store._keep(upload)
        return upload

    def abort(self) -> None:
        self._handle.close()
        self.part.unlink(missing_ok=True)


class UploadStore:
    """Receives uploads into ``folders.uploads`` and remembers them by id."""

    def __init__(self, folders: AppFolders, upload_bytes: dict[str, int]) -> None:
        self.folders = folders
        self.upload_bytes = dict(upload_bytes)
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()

    # -- receiving -------------------------------------------------------------------------
    def limit(self, kind: str) -> int:
        """The largest upload of this kind, in bytes (an unknown kind is an InputError)."""
        if kind not in KINDS:
            raise InputError(f"Unknown upload kind '{kind}'; use one of: {', '.join(KINDS)}.")
        return self.upload_bytes[kind]

    def begin(self, kind: str, length: int | None, filename: str | None) -> PendingUpload:
        """Check the kind and the declared size, and open a new file to stream the body into.

        Every size check happens here, from the declared length, before one byte is read:
        a body over the limit is refused (:class:`UploadTooLarge`) without reading it.
        """
        limit = self.limit(kind)
        if length is None:
            raise InputError("The upload has no Content-Length; send the file as the request body.")
        if length <= 0:
            raise InputError("The upload is empty; choose a non-empty file.")
        if length > limit:
            raise UploadTooLarge(f"The {kind} upload is {megabytes(length)}, more than the limit of {megabytes(limit)}.")
        upload_id = new_id()
        return PendingUpload(self, upload_id, kind, length, filename, self.folders.upload_path(upload_id, ".part"))

    def receive(self, kind: str, stream: BinaryIO, length: int | None, filename: str | None) -> Upload:
        """Read ``length`` bytes from a blocking ``stream``, validate them as ``kind`` and keep the upload."""
        pending = self.begin(kind, length, filename)
        try:
            while pending.missing:
                chunk = stream.read(min(_CHUNK, pending.missing))
                if not chunk:
                    break
                pending.write(chunk)
            return pending.finish()
        except BaseException:
            pending.abort()
            raise

    def _keep(self, upload: Upload) -> None:
        with self._lock:
            self._uploads[upload.id] = upload

    def discard(self, upload: Upload) -> None:
        with self._lock:
            self._uploads.pop(upload.id, None)
        upload.path.unlink(missing_ok=True)

    def get(self, upload_id: Any, kind: str | tuple[str, ...] | None = None) -> Upload:
        """The upload with this id (and of this kind), or an InputError naming the problem."""
        upload = self._uploads.get(upload_id) if isinstance(upload_id, str) and is_id(upload_id) else None
        if upload is None:
            raise InputError(f"There is no upload with id {str(upload_id)[:40]!r} on this server; upload the file first.")
        kinds = (kind,) if isinstance(kind, str) else kind
        if kinds and upload.kind not in kinds:
            raise InputError(f"Upload {upload_id} is {_a(upload.kind)}, but {' or '.join(_a(k) for k in kinds)} is needed here.")
        return upload

    # -- identifying ---------------------------------------------------------------------------
    def _identify(self, kind: str, path: Path) -> tuple[str, str]:
        head = _head(path)
        try:
            return {"image": _identify_image, "audio": _identify_audio, "video": _identify_video}[kind](path)
        except UnsupportedUpload as exc:
            seen = guess_kind(head)
            if seen is not None and seen != kind:
                raise UnsupportedUpload(f"The file is {_a(seen)}, not {_a(kind)}; {_expected(kind)}.") from exc
            raise


def _identify_image(path: Path) -> tuple[str, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                fmt = image.format or ""
                if fmt not in IMAGE_FORMATS:
                    raise UnsupportedUpload(f"The image format {fmt or 'unknown'} is not accepted; {_expected('image')}.")
                if image.width * image.height == 0:
                    raise InputError("The image is empty (0 pixels).")
                image.load()  # decodes every pixel: truncated or corrupt data fails here
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"The image has more than {Image.MAX_IMAGE_PIXELS:,} pixels; downscale it first.") from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedUpload(f"The file is not an image Pillow can open; {_expected('image')}.") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"The image is truncated or corrupt ({_short(exc)}); upload an intact file.") from exc
    return fmt, IMAGE_FORMATS[fmt]


def _identify_audio(path: Path) -> tuple[str, str]:
    import numpy as np
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile says "format not recognised" in several ways
        raise UnsupportedUpload(f"The file is not audio in a format mka reads; {_expected('audio')}.") from exc
    fmt = str(info.format).upper()
    if fmt not in AUDIO_FORMATS:
        raise UnsupportedUpload(f"The audio format {fmt} is not accepted; {_expected('audio')}.")
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError("The audio file holds no samples; upload a file with sound in it.")
    try:
        with sf.SoundFile(str(path)) as handle:
            for block in handle.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    raise InputError("The audio contains NaN or infinite samples; re-export it from its source.")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"The audio file is truncated or corrupt ({_short(exc)}); upload an intact file.") from exc
    return fmt, AUDIO_FORMATS[fmt]


def _identify_video(path: Path) -> tuple[str, str]:
    head = _head(path)
    if head[4:8] == b"ftyp":
        fmt, suffix = ("MOV", ".mov") if head[8:12] == b"qt  " else ("MP4", ".mp4")
    elif head.startswith(b"\x1a\x45\xdf\xa3"):
        fmt, suffix = "WEBM", ".webm"
    elif head[:4] == b"RIFF" and head[8:11] == b"AVI":
        fmt, suffix = "AVI", ".avi"
    else:
        raise UnsupportedUpload(f"The file is not a video container mka accepts; {_expected('video')}.")
    if not _decodes_a_frame(path):
        raise InputError(f"The {fmt} file has no decodable video frame (it may be corrupt, truncated or audio-only).")
    return fmt, suffix


def _decodes_a_frame(path: Path) -> bool:
    """True when PyAV (or decord) decodes the first video frame."""
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    return False
                for _ in container.decode(video=0):
                    return True
        except Exception:  # any FFmpeg failure means the file is unusable
            return False
        return False
    try:
        import decord
    except ImportError as exc:
        raise InputError("Video uploads need PyAV or decord; install them with pip install 'mka[video]'.") from exc
    try:
        return len(decord.VideoReader(str(path))) > 0
    except Exception:
        return False


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(16)


def _expected(kind: str) -> str:
    return {
        "image": "upload a PNG, JPEG, GIF, WebP or BMP image",
        "audio": "upload WAV, FLAC, OGG, MP3 or AIFF audio",
        "video": "upload an MP4, MOV, WebM, MKV or AVI video",
    }[kind]


def _a(kind: str) -> str:
    """"an image", "a video", "audio" (uncountable)."""
    if kind == "audio":
        return "audio"
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else exc.__class__.__name__
