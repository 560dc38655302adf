"""The app's own folders, and the random ids that name everything inside them.

No path that reaches the filesystem is ever built from request text: requests carry ids,
ids are looked up in the server's in-memory tables, and those tables hold paths the server
made itself from ids it generated (:func:`new_id`). :func:`is_id` is a cheap first filter
that lets a handler answer 404 without even a table look-up.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
from pathlib import Path

_ID = re.compile(r"^[0-9a-f]{24}$")


def new_id() -> str:
    """24 random hex characters (96 bits): unguessable, file-name safe."""
    return secrets.token_hex(12)


def is_id(text: str) -> bool:
    return bool(_ID.match(text or ""))


class AppFolders:
    """``root/uploads`` and ``root/jobs/<job id>``; a temporary root is removed by :meth:`cleanup`."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.temporary = root is None
        self.root = Path(tempfile.mkdtemp(prefix="mka-serve-")) if root is None else Path(root).expanduser().resolve()
        self.uploads = self.root / "uploads"
        self.jobs = self.root / "jobs"
        for folder in (self.root, self.uploads, self.jobs):
            folder.mkdir(parents=True, exist_ok=True)

    def job_folder(self, job_id: str) -> Path:
        if not is_id(job_id):  # only ever called with generated ids; refuse anything else loudly
            raise ValueError(f"not a generated id: {job_id!r}")
        folder = self.jobs / job_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def upload_path(self, upload_id: str, suffix: str) -> Path:
        if not is_id(upload_id) or not re.match(r"^\.[a-z0-9]{1,5}$", suffix):
            raise ValueError(f"not a generated upload name: {upload_id!r}{suffix!r}")
        return self.uploads / f"{upload_id}{suffix}"

    def cleanup(self) -> None:
        """Remove the root if the server made it (``--workdir`` folders are kept)."""
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)
