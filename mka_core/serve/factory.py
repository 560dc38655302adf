"""Assembling a server from settings: the flags of ``mka serve``, or environment variables when
another ASGI server runs the app.

``mka serve`` builds :class:`ServeSettings` from its flags and runs uvicorn itself
(:mod:`.server`). Any ASGI server can instead call :func:`create_app`, which reads the same
settings from ``MKA_SERVE_*`` variables (see :data:`ENVIRONMENT`), loads the model, and
returns the Starlette app whose lifespan starts the job queue and, at shutdown, stops it and
removes a temporary work folder::

    MKA_SERVE_MODEL=./my-model uvicorn --factory mka_core.serve.factory:create_app --port 7410

Serve it from ONE worker process: the queue, the uploads and the jobs live in that process.

Nothing here imports Starlette or uvicorn at module level, so ``mka serve`` can say which
extra is missing (:func:`require_serve_extra`) instead of failing on an import.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mka_core.errors import InputError
from mka_core.serve.limits import Limits

#: setting -> the environment variable :func:`create_app` reads it from.
ENVIRONMENT = {
    "model": "MKA_SERVE_MODEL",
    "host": "MKA_SERVE_HOST",
    "token": "MKA_SERVE_TOKEN",
    "workdir": "MKA_SERVE_WORKDIR",
    "max_upload_mb": "MKA_SERVE_MAX_UPLOAD_MB",
    "queue": "MKA_SERVE_QUEUE",
    "device": "MKA_SERVE_DEVICE",
    "dtype": "MKA_SERVE_DTYPE",
    "log_requests": "MKA_SERVE_LOG_REQUESTS",
}
#: setting -> the `mka serve` flag that sets it (named in error sentences).
FLAGS = {name: "--" + name.replace("_", "-") for name in [*ENVIRONMENT, "port"]}
SERVE_EXTRA = 'pip install "mka[serve]"'
#: import name -> what to call it when it is missing.
_SERVE_MODULES = {"starlette": "Starlette", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def require_serve_extra() -> None:
    """An InputError naming the ``serve`` extra unless Starlette, uvicorn and python-multipart import."""
    missing = [label for module, label in _SERVE_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise InputError(f"mka serve runs on Starlette and uvicorn, and {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not installed; install the serve extra: {SERVE_EXTRA}.")


@dataclass
class ServeSettings:
    """Everything a server is built from (the defaults are `mka serve`'s)."""

    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 7410
    token: str | None = None
    workdir: str | None = None
    max_upload_mb: float | None = None
    queue: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    log_requests: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ServeSettings:
        values: dict[str, Any] = {}
        kinds = {f.name: f.type for f in fields(cls)}
        for name, variable in ENVIRONMENT.items():
            text = environ.get(variable, "").strip()
            if not text:
                continue
            kind = kinds[name]
            try:
                if "bool" in kind:
                    values[name] = text.lower() in ("1", "true", "yes", "on")
                elif "float" in kind:
                    values[name] = float(text)
                elif "int" in kind:
                    values[name] = int(text)
                else:
                    values[name] = text
            except ValueError as exc:
                raise InputError(f"{variable} must be a number, got {text!r}.") from exc
        return cls(**values)

    def limits(self, names: Mapping[str, str] = FLAGS) -> Limits:
        """The bounds these settings ask for; a value out of range is an InputError naming ``names[field]``."""
        if not 0 <= self.port <= 65535:
            raise InputError(f"{names.get('port', 'port')} must be between 0 and 65535, got {self.port}.")
        if self.max_upload_mb is not None and not self.max_upload_mb > 0:
            raise InputError(f"{names['max_upload_mb']} must be positive, got {self.max_upload_mb:g}.")
        if self.queue is not None and self.queue < 1:
            raise InputError(f"{names['queue']} must be at least 1, got {self.queue}.")
        limits = Limits().with_upload_megabytes(self.max_upload_mb)
        if self.queue is not None:
            limits = Limits(**{**limits.__dict__, "queue_length": self.queue})
        return limits


@dataclass
class Assembled:
    """A loaded model behind an :class:`~mka_core.serve.api.Api`, and who may reach it."""

    api: Any
    policy: Any
    folders: Any
    model_dir: Path
    device: str


def assemble(settings: ServeSettings, names: Mapping[str, str] = FLAGS) -> Assembled:
    """Check the settings, load the model and build the API over it (the queue is not started)."""
    from mka_core.model_lookup import resolve_model
    from mka_core.pipeline import Pipeline
    from mka_core.serve.api import Api
    from mka_core.serve.folders import AppFolders
    from mka_core.serve.runtime import ModelRuntime
    from mka_core.serve.security import AccessPolicy

    limits = settings.limits(names)
    policy = AccessPolicy.for_binding(settings.host, settings.token)
    model_dir = resolve_model(settings.model)
    pipe = Pipeline.from_pretrained(model_dir, device=settings.device, dtype=settings.dtype)
    folders = AppFolders(settings.workdir)
    return Assembled(Api(ModelRuntime(pipe, model_dir, limits), folders, limits), policy, folders, model_dir,
                     str(pipe.device))


def create_app(environ: Mapping[str, str] | None = None):
    """The app for an ASGI server, configured from ``MKA_SERVE_*`` variables (see the module docstring).

    ``MKA_SERVE_HOST`` must be the address the ASGI server listens on: the access rules
    follow it (a loopback address answers loopback Host names only; any other address needs
    ``MKA_SERVE_TOKEN``, else a random token is made and printed on stderr).
    """
    import os

    from mka_core.serve.app import create_app as app_for

    require_serve_extra()
    settings = ServeSettings.from_environment(os.environ if environ is None else environ)
    built = assemble(settings, ENVIRONMENT)

    @asynccontextmanager
    async def lifespan(app):
        built.api.queue.start()
        try:
            yield
        finally:
            built.api.queue.stop()
            built.folders.cleanup()

    print(f"mka serve: model {built.model_dir} on {built.device}", file=sys.stderr, flush=True)
    print(f"mka serve: files in {built.folders.root}{' (removed at exit)' if built.folders.temporary else ''}",
          file=sys.stderr, flush=True)
    if built.policy.token and not settings.token:
        print(f"mka serve: access token {built.policy.token} (open the page with ?token=..., or send "
              "'Authorization: Bearer TOKEN')", file=sys.stderr, flush=True)
    return app_for(built.api, built.policy, log_requests=settings.log_requests, lifespan=lifespan)
