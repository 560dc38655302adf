"""The HTTP layer: a Starlette application over :class:`~mka_core.serve.api.Api`.

Starlette does the routing, the query strings, cookies and bodies, and the file answers
(byte ranges for audio players that seek, HEAD); :mod:`.middleware` applies the access rules
and security headers to every request. The endpoints here only convert between HTTP and the
:class:`Api`'s plain values: anything that blocks (identifying an upload, resolving a job
request, zipping a bundle) runs in Starlette's thread pool, so polls stay quick while a job
is sampling on the queue's worker thread.

:func:`create_app` does not start or stop the job queue: whoever owns the :class:`Api` does
(``mka serve``, or the lifespan of :func:`mka_core.serve.factory.create_app`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from mka_core.errors import MkaError
from mka_core.serve.api import STATIC, STATIC_FILES, Api, FileReply, NotFound, http_status
from mka_core.serve.middleware import SECURITY_HEADERS, AccessGuard, RequestLog, SecurityHeaders, json_error
from mka_core.serve.security import AccessPolicy
from mka_core.serve.upload_body import declared_length, read_body, receive_upload


def create_app(api: Api, policy: AccessPolicy, *, log_requests: bool = False,
               lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None) -> Starlette:
    """The ASGI application serving ``api`` under ``policy`` (the page, its static files, the JSON API)."""
    middleware = [Middleware(RequestLog)] if log_requests else []
    middleware += [Middleware(SecurityHeaders), Middleware(AccessGuard, policy=policy)]
    app = Starlette(
        routes=_routes(),
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, MkaError: _api_error, Exception: _internal_error},
        lifespan=lifespan,
    )
    # "/api/info/" is not "/api/info": no redirects to guess what was meant.
    app.router.redirect_slashes = False
    app.state.api = api
    app.state.policy = policy
    return app


def _routes() -> list[Route]:
    routes = [Route(url, _static(name, media_type), methods=["GET"]) for url, (name, media_type) in STATIC_FILES.items()]
    return routes + [
        Route("/favicon.ico", _favicon, methods=["GET"]),
        Route("/api/info", _info, methods=["GET"]),
        Route("/api/uploads", _upload, methods=["POST"]),
        Route("/api/uploads/{upload_id}/{what}", _upload_file, methods=["GET"]),
        Route("/api/jobs", _jobs, methods=["GET", "POST"]),
        Route("/api/jobs/{job_id}", _job, methods=["GET", "DELETE"]),
        Route("/api/jobs/{job_id}/outputs/{index:int}/{what}", _output_file, methods=["GET"]),
        Route("/api/jobs/{job_id}/frames/{j:int}/{k:int}", _frame_file, methods=["GET"]),
    ]


def _api(request: Request) -> Api:
    return request.app.state.api


# -- the page ---------------------------------------------------------------------------------------------------


def _static(name: str, media_type: str):
    path = STATIC / name

    async def endpoint(request: Request) -> Response:
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    return endpoint


async def _favicon(request: Request) -> Response:
    return Response(status_code=204, media_type="image/x-icon")


# -- the JSON API -----------------------------------------------------------------------------------------------


async def _info(request: Request) -> Response:
    return JSONResponse(await run_in_threadpool(_api(request).info))


async def _upload(request: Request) -> Response:
    api = _api(request)
    pending = await receive_upload(request, api.uploads, request.query_params.get("kind", ""),
                                   request.query_params.get("filename"), api.limits.body_idle_seconds)
    try:
        described = await run_in_threadpool(api.upload, pending)
    except BaseException:
        pending.abort()
        raise
    return JSONResponse(described, status_code=201)


async def _upload_file(request: Request) -> Response:
    params = request.path_params
    return _file(_api(request).upload_file(params["upload_id"], params["what"]))


async def _jobs(request: Request) -> Response:
    api = _api(request)
    if request.method == "POST":
        api.check_json_length(declared_length(request))
        # Within the limit just checked, never more than declared, and refused if it stalls.
        body = await read_body(request, api.limits.body_idle_seconds)
        return JSONResponse(await run_in_threadpool(api.submit, body), status_code=202)
    return JSONResponse(api.list_jobs())


async def _job(request: Request) -> Response:
    api, job_id = _api(request), request.path_params["job_id"]
    return JSONResponse(api.cancel(job_id) if request.method == "DELETE" else api.job(job_id))


async def _output_file(request: Request) -> Response:
    params = request.path_params
    reply = await run_in_threadpool(_api(request).output_file, params["job_id"], params["index"], params["what"],
                                    request.query_params.get("download") == "1")
    return _file(reply)


async def _frame_file(request: Request) -> Response:
    params = request.path_params
    return _file(_api(request).frame_file(params["job_id"], params["j"], params["k"]))


def _file(reply: FileReply) -> Response:
    if isinstance(reply.body, bytes):
        return Response(reply.body, media_type=reply.media_type, headers=reply.headers)
    if not reply.body.is_file():
        raise NotFound("The file is gone.")
    return FileResponse(reply.body, media_type=reply.media_type, headers=reply.headers)


# -- errors: always {"error": "one sentence."} ----------------------------------------------------------------


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return json_error(404, f"Nothing at {request.url.path[:80]}; the API is described in docs/serve.md.")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        named = ", ".join(sorted({m.strip() for m in allowed.split(",") if m.strip() and m.strip() != "HEAD"}))
        return json_error(405, f"{request.url.path[:80]} answers {named}, not {request.method}.",
                          headers={"Allow": allowed})
    detail = str(exc.detail).strip().rstrip(".") or "Bad request"
    return json_error(exc.status_code, f"{detail}.", headers=exc.headers)


async def _api_error(request: Request, exc: MkaError) -> Response:
    return json_error(http_status(exc), str(exc))


async def _internal_error(request: Request, exc: Exception) -> Response:
    # A bug: say so in JSON and keep serving; the ASGI server logs the traceback. This answer is
    # made outside the middleware, so it carries the security headers itself.
    return json_error(500, f"Internal error ({exc.__class__.__name__}); see the server's log.", headers=SECURITY_HEADERS)
